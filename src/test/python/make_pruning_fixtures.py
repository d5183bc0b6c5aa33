#!/usr/bin/env python3
"""Reference fixture for dive.convert (DIVE sections 1-2): FFN channel statistics, channel scores, structured
pruning, bias compensation and the pruned model's perplexity, computed with transformers + NumPy.

Run (from the repository root; needs torch, transformers 5, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_pruning_fixtures.py

Model: the existing fixture src/test/resources/llama/gqa (hidden 48, FFN 80, 2 layers, vocab 300), in F32.
Calibration: CALIB_WINDOWS windows of CALIB_LEN random ids (numpy seed 1234), run as one batch; a forward
pre-hook on every mlp.down_proj records its input h = silu(gate_proj(x)) * up_proj(x) (N = all tokens).
Per layer, in float64 from the F32 h:
    mean_j, unbiased variance var_j (ddof=1), mean_square_j = E[h_j^2], M2_j = sum (h - mean)^2
    wifv_j  = var_j * ||W_down[:, j]||^2
    ifv_j   = var_j
    wifn_j  = mean_i |W_down[i, j]| * sqrt(E[h_j^2])
    wanda_j = sum_i |W_down[i, j]| * sqrt(sum_n h_nj^2)
    taylor_j = |sum(gate[j,:] * dL/dgate[j,:]) + sum(up[j,:] * dL/dup[j,:]) + sum(down[:,j] * dL/ddown[:,j])|,
               L = transformers' mean causal-LM loss of the calibration batch (labels = ids)
    kept[score] = the round(F * (1 - 0.5)) channels with the highest score, ties to the lower index, ascending
    bias_wifv = W_down[:, removed] @ mean[removed] (removed = channels not kept by WIFV)
Perplexity on EVAL_WINDOWS windows of EVAL_LEN random ids (each window scored alone, labels = ids):
    dense, WIFV-pruned (weights sliced in torch: gate/up rows, down columns), WIFV-pruned + bias compensation
    (a forward hook adds the bias to every mlp output).
Writes src/test/resources/pruning/gqa/expected.json.
"""
import json
import math
import os

import numpy as np
import torch
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "resources", "llama", "gqa")
OUT = os.path.join(HERE, "..", "resources", "pruning", "gqa")
CALIB_WINDOWS, CALIB_LEN, EVAL_WINDOWS, EVAL_LEN, RATIO = 4, 24, 3, 20, 0.5


def kept_channels(score, kept):
    order = np.lexsort((np.arange(len(score)), -score))  # score descending, then index ascending
    return np.sort(order[:kept])


def perplexity(model, windows):
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w])
            loss = model(input_ids=ids, labels=ids).loss.item()
            nll += loss * (len(w) - 1)
            count += len(w) - 1
    return math.exp(nll / count)


def main():
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    cfg = model.config
    rng = np.random.default_rng(1234)
    calib = rng.integers(0, cfg.vocab_size, size=(CALIB_WINDOWS, CALIB_LEN)).tolist()
    evals = rng.integers(0, cfg.vocab_size, size=(EVAL_WINDOWS, EVAL_LEN)).tolist()

    captured = {}
    hooks = []
    for l, layer in enumerate(model.model.layers):
        def hook(module, args, l=l):
            captured[l] = args[0].detach().reshape(-1, args[0].shape[-1]).clone()
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(hook))
    ids = torch.tensor(calib)
    model.zero_grad()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    for h in hooks:
        h.remove()

    F = cfg.intermediate_size
    kept_width = int(math.floor(F * (1 - RATIO) + 0.5))
    layers = []
    kept_wifv = []
    biases = []
    for l, layer in enumerate(model.model.layers):
        h = captured[l].numpy().astype(np.float64)  # (N, F)
        down = layer.mlp.down_proj.weight.detach().numpy().astype(np.float64)  # (d, F)
        gate = layer.mlp.gate_proj.weight
        up = layer.mlp.up_proj.weight
        dp = layer.mlp.down_proj.weight
        taylor = np.abs((gate.detach().double() * gate.grad.double()).sum(1) + (up.detach().double() * up.grad.double()).sum(1)
                        + (dp.detach().double() * dp.grad.double()).sum(0)).numpy()
        mean = h.mean(0)
        var = h.var(0, ddof=1)
        m2 = ((h - mean) ** 2).sum(0)
        mean_square = (h ** 2).mean(0)
        scores = {
            "wifv": var * (down ** 2).sum(0),
            "ifv": var,
            "wifn": np.abs(down).mean(0) * np.sqrt(mean_square),
            "wanda": np.abs(down).sum(0) * np.sqrt((h ** 2).sum(0)),
            "taylor": taylor,
        }
        kept = {name: kept_channels(s, kept_width).tolist() for name, s in scores.items()}
        removed = np.setdiff1d(np.arange(F), kept["wifv"])
        bias = down[:, removed] @ mean[removed]
        kept_wifv.append(kept["wifv"])
        biases.append(bias)
        layers.append({
            "tokens": int(h.shape[0]), "mean": mean.tolist(), "variance": var.tolist(), "m2": m2.tolist(),
            "mean_square": mean_square.tolist(),
            "scores": {k: v.tolist() for k, v in scores.items()},
            "kept": kept, "bias_wifv": bias.tolist(),
        })

    dense_ppl = perplexity(model, evals)
    # the pruned model: same config with intermediate_size = kept width, FFN weights sliced
    cfg2 = type(cfg).from_dict(cfg.to_dict())
    cfg2.intermediate_size = kept_width
    pruned = LlamaForCausalLM(cfg2).eval()
    state = model.state_dict()
    for l, kept in enumerate(kept_wifv):
        p = f"model.layers.{l}.mlp."
        idx = torch.tensor(kept)
        state[p + "gate_proj.weight"] = state[p + "gate_proj.weight"][idx]
        state[p + "up_proj.weight"] = state[p + "up_proj.weight"][idx]
        state[p + "down_proj.weight"] = state[p + "down_proj.weight"][:, idx]
    pruned.load_state_dict(state)
    pruned_ppl = perplexity(pruned, evals)
    for l, layer in enumerate(pruned.model.layers):
        b = torch.tensor(biases[l], dtype=torch.float32)
        layer.mlp.register_forward_hook(lambda m, a, o, b=b: o + b)
    pruned_bias_ppl = perplexity(pruned, evals)

    os.makedirs(OUT, exist_ok=True)
    expected = {
        "model": "src/test/resources/llama/gqa", "ratio": RATIO, "kept_width": kept_width,
        "calibration_ids": calib, "eval_ids": evals, "layers": layers,
        "ppl_dense": dense_ppl, "ppl_pruned_wifv": pruned_ppl, "ppl_pruned_wifv_bias": pruned_bias_ppl,
        "calibration_loss": out.loss.item(),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("kept width", kept_width, "ppl dense", dense_ppl, "pruned", pruned_ppl, "pruned+bias", pruned_bias_ppl)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference gradients for dive.train.TrainableLlama's MoE layers: PyTorch autograd through Hugging Face
MixtralForCausalLM.

Run (from the repository root; needs torch, transformers 5, safetensors, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_moe_grad_fixtures.py

Loads the Mixtral fixtures of make_mixtral_fixtures.py named below in F32 with experts_implementation="eager"
(transformers' per-expert loop), takes a seeded batch of 2 × 12 token ids and computes
loss = model(ids, labels=ids, output_router_logits=...).loss, then backpropagates it in F32:
  - "<model>":          output_router_logits=False: the causal-LM cross-entropy only (mean over 2 × 11 predictions);
  - "<model>_aux<c>":   output_router_logits=True and router_aux_loss_coef=c (0.02, and 1 where the aux loss
                        dominates the router gradients): transformers adds
                        c · load_balancing_loss_func(router logits of all layers) to the loss, i.e.
                        c · E · Σ_e f_e · P_e with f_e = top-k assignments of e / (L·N), P_e = mean softmax prob over
                        the L·N rows of all layers pooled (f has no gradient). Run on input_ids = ids[:, :11] with
                        shift_labels = ids[:, 1:], so the router sees the same N = 2 × 11 rows as dive's batch
                        (B, T + 1) does (the last token is a target only); the LM loss is the same.
transformers 5 keeps the experts fused (mlp.experts.gate_up_proj (E, 2I, d) = [w1; w3], down_proj (E, d, I) = w2);
the gradients are written under the checkpoint's Mixtral names (block_sparse_moe.gate.weight,
block_sparse_moe.experts.{e}.w1/w2/w3.weight) so they line up with the checkpoint's tensors. Writes
src/test/resources/moe_grad/<case>/:
    grads.safetensors   ∂loss/∂p for every parameter (tied embeddings: embed_tokens only)
    expected.json       the model fixture, batch ids, loss, LM loss, aux loss, coefficient
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import MixtralForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "resources", "mixtral")
OUT = os.path.join(HERE, "..", "resources", "moe_grad")


def checkpoint_names(grads):
    out = {}
    for name, g in grads.items():
        if ".mlp.experts.gate_up_proj" in name:
            prefix = name.replace("mlp.experts.gate_up_proj", "block_sparse_moe.experts.")
            inter = g.shape[1] // 2
            for e in range(g.shape[0]):
                out[prefix + f"{e}.w1.weight"] = g[e, :inter].contiguous()
                out[prefix + f"{e}.w3.weight"] = g[e, inter:].contiguous()
        elif ".mlp.experts.down_proj" in name:
            prefix = name.replace("mlp.experts.down_proj", "block_sparse_moe.experts.")
            for e in range(g.shape[0]):
                out[prefix + f"{e}.w2.weight"] = g[e].contiguous()
        elif ".mlp.gate.weight" in name:
            out[name.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = g.contiguous()
        else:
            out[name] = g.contiguous()
    return out


def make(model_name, seed, aux_coef):
    model = MixtralForCausalLM.from_pretrained(os.path.join(MODELS, model_name), dtype=torch.float32,
                                               experts_implementation="eager")
    model.train()  # no dropout, no router jitter in these configs: train and eval compute the same
    assert model.config.router_jitter_noise == 0.0
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=generator)
    if aux_coef is None:
        out = model(ids, labels=ids, output_router_logits=False)
        case, aux = model_name, None
    else:
        model.router_aux_loss_coef = aux_coef
        # the router logits (and so the aux loss) must cover the same rows as dive's: the 11 input positions of each
        # sequence, not the 12th token (a target only). transformers' ForCausalLMLoss takes shift_labels as given.
        targets = ids[:, 1:].contiguous()
        out = model(ids[:, :-1].contiguous(), labels=targets, shift_labels=targets, output_router_logits=True)
        case, aux = f"{model_name}_aux{aux_coef:g}", out.aux_loss.item()
    out.loss.backward()
    grads = checkpoint_names({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    lm_loss = out.loss.item() - (0.0 if aux is None else aux_coef * aux)
    path = os.path.join(OUT, case)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    save_file(grads, os.path.join(path, "grads.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({"model": "mixtral/" + model_name, "batch": ids.tolist(), "loss": out.loss.item(), "lm_loss": lm_loss,
                   "aux_loss": aux, "router_aux_loss_coef": aux_coef, "parameters": sorted(grads.keys())}, f, indent=1)
    print(case, "loss", out.loss.item(), "aux", aux, "tensors", len(grads))


if __name__ == "__main__":
    torch.manual_seed(0)
    make("k2_i40", 21, None)
    make("k2_i40", 21, 0.02)
    make("k2_i40", 21, 1.0)
    make("k1", 22, None)

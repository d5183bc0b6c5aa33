#!/usr/bin/env python3
"""Reference fixtures for dive's Qwen2-MoE support (routed experts plus a sigmoid-gated shared expert): small random
Qwen2MoeForCausalLM models made, saved and run by Hugging Face transformers (the independent reference), and PyTorch
autograd gradients of one of them.

Run (from the repository root; needs torch, transformers 5, safetensors, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_qwen2moe_fixtures.py

Writes src/test/resources/qwen2_moe/<name>/ for each model fixture:
    config.json, model.safetensors   save_pretrained(): transformers' on-disk names (model.layers.{l}.mlp.gate.weight,
                                     mlp.experts.{e}.gate_proj/up_proj/down_proj.weight, mlp.shared_expert.*_proj.weight,
                                     mlp.shared_expert_gate.weight), norm_topk_prob true, qkv_bias false
    logits.npy      float32 (T, vocab)  logits of expected.json "input_ids" (F32 arithmetic)
    expected.json   ids, greedy generation (generate(do_sample=False)), perplexity over windows
and src/test/resources/qwen2_moe_grad/k2/:
    grads.safetensors   ∂loss/∂p for every parameter of qwen2_moe/k2 (F32, train mode, loss = model(ids, labels=ids).loss on
                        a seeded 2 × 12 batch), the fused experts (gate_up_proj (E, 2I, d), down_proj (E, d, I)) split
                        back into the checkpoint's per-expert names
    expected.json       batch ids, loss, parameter names

Every expectation is computed by the checkpoint as saved, loaded back with from_pretrained(dir, dtype=float32,
experts_implementation="eager"); the BF16 fixture's weights are widened exactly, the arithmetic is F32 as dive's.
Fixtures: k2 (top-2 of 4 experts, untied lm_head, moe_intermediate_size 16, shared 24), bf16_k2 (BF16 weights, top-2 of 3,
tied embeddings). Every weight is random (std 0.25; RMSNorm weights 1 + 0.2·N(0,1)), the shared expert gates included.
"""
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

from make_mixtral_fixtures import greedy, ids_for, perplexity  # the same ids, greedy run and perplexity as the Mixtral fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "resources", "qwen2_moe")
GRAD_ROOT = os.path.join(HERE, "..", "resources", "qwen2_moe_grad")


def make_model(seed, **config_kwargs):
    torch.manual_seed(seed)
    config = Qwen2MoeConfig(hidden_act="silu", rms_norm_eps=1e-5, max_position_embeddings=256, norm_topk_prob=True,
                            qkv_bias=False, use_sliding_window=False, decoder_sparse_step=1, mlp_only_layers=[],
                            vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            bos_token_id=1, eos_token_id=2, **config_kwargs)
    model = Qwen2MoeForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.25 * torch.randn_like(p))
    return model.eval()


def load(path):
    return Qwen2MoeForCausalLM.from_pretrained(path, dtype=torch.float32, experts_implementation="eager")


def write_fixture(name, model, seed):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    ref = load(out).eval()
    cfg = ref.config
    vocab = cfg.vocab_size
    input_ids = ids_for(seed, vocab, 9)
    prompt = ids_for(seed + 3, vocab, 5)
    ppl_ids, ppl_window = ids_for(seed + 4, vocab, 45), 16
    with torch.no_grad():
        logits = ref(torch.tensor([input_ids])).logits[0].float().numpy()
    new_ids, margin = greedy(ref, prompt, 12)
    ppl, predicted = perplexity(ref, ppl_ids, ppl_window)
    np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"input_ids": input_ids, "prompt_ids": prompt, "greedy_new_ids": new_ids, "greedy_max_new_tokens": 12,
                   "greedy_min_top2_margin": margin, "perplexity_ids": ppl_ids, "perplexity_window": ppl_window,
                   "perplexity": ppl, "perplexity_predicted_tokens": predicted}, f, indent=1)
    gc = os.path.join(out, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KB, logits |max| {np.abs(logits).max():.3f}, greedy {new_ids}, margin {margin:.4f}, ppl {ppl:.4f}")


def checkpoint_names(grads):
    out = {}
    for name, g in grads.items():
        if name.endswith(".mlp.experts.gate_up_proj"):
            prefix = name[:-len("gate_up_proj")]
            inter = g.shape[1] // 2
            for e in range(g.shape[0]):
                out[f"{prefix}{e}.gate_proj.weight"] = g[e, :inter].contiguous()
                out[f"{prefix}{e}.up_proj.weight"] = g[e, inter:].contiguous()
        elif name.endswith(".mlp.experts.down_proj"):
            prefix = name[:-len("down_proj")]
            for e in range(g.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = g[e].contiguous()
        else:
            out[name] = g.contiguous()
    return out


def write_grads(model_name, seed):
    model = load(os.path.join(ROOT, model_name))
    model.train()  # no dropout in these configs: train and eval compute the same
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(seed))
    out = model(ids, labels=ids)
    out.loss.backward()
    grads = checkpoint_names({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    path = os.path.join(GRAD_ROOT, model_name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    save_file(grads, os.path.join(path, "grads.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({"model": "qwen2_moe/" + model_name, "batch": ids.tolist(), "loss": out.loss.item(),
                   "parameters": sorted(grads.keys())}, f, indent=1)
    print(f"grad {model_name}: loss {out.loss.item():.6f}, {len(grads)} tensors")


def main():
    os.makedirs(ROOT, exist_ok=True)
    m = make_model(31, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                   intermediate_size=24, tie_word_embeddings=False)
    write_fixture("k2", m, 3100)
    m = make_model(32, num_experts=3, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=16,
                   intermediate_size=16, tie_word_embeddings=True)
    m = m.to(torch.bfloat16)
    m.config.dtype = torch.bfloat16
    write_fixture("bf16_k2", m, 3200)
    write_grads("k2", 41)


if __name__ == "__main__":
    main()

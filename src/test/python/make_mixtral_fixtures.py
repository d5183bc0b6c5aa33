#!/usr/bin/env python3
"""Reference fixtures for dive.model's sparse Mixture-of-Experts path: small random Mixtral models made and run by
Hugging Face transformers (MixtralForCausalLM, the independent reference).

Run (from the repository root; needs torch, transformers 5, safetensors, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_mixtral_fixtures.py

Writes src/test/resources/mixtral/<name>/ for each fixture:
    config.json, model.safetensors   save_pretrained(safe_serialization=True): Mixtral's on-disk names
                                     (model.layers.{l}.block_sparse_moe.gate.weight, ...experts.{e}.w1/w2/w3.weight)
    logits.npy              float32 (T, vocab)       logits of expected.json "input_ids", computed in F32
    batch_logits.npy        float32 (2, Tb, vocab)   logits of the two equal-length rows of "batch_input_ids"
    router_logits_layer0.npy float32 (T, E)          layer 0's router logits for "input_ids" (output_router_logits=True)
    expected.json           ids, greedy generation (generate(do_sample=False)), perplexity, layer-0 top-k ids and weights

Every expectation is computed by the checkpoint as saved, loaded back with
from_pretrained(dir, dtype=float32, experts_implementation="eager") (transformers' per-expert loop; the BF16
fixture's weights are widened exactly and the arithmetic is F32, as the engine does).

Perplexity: non-overlapping windows of `window` tokens, each scored with labels = input_ids (HF shifts them);
ppl = exp(total NLL / predicted tokens).

Fixtures: k1 (top-1 of 4 experts, untied lm_head), k2_i40 (top-2 of 4, intermediate_size 40: not a multiple of 16,
tied embeddings; routing weights unequal — "min_top2_weight_gap" records how unequal), bf16_k2 (BF16 weights, top-2).
"""
import json
import math
import os
import shutil

import numpy as np
import torch
from transformers import MixtralConfig, MixtralForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resources", "mixtral")


def make_model(seed, init_std=0.25, **config_kwargs):
    torch.manual_seed(seed)
    config = MixtralConfig(initializer_range=init_std, hidden_act="silu", rms_norm_eps=1e-5,
                           max_position_embeddings=256, sliding_window=None, router_jitter_noise=0.0,
                           **config_kwargs)
    model = MixtralForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # random RMSNorm weights so a misplaced norm changes the logits
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return model.eval()


def perplexity(model, ids, window):
    nll_sum, predicted = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = torch.tensor([ids[start:start + window]])
        n = chunk.shape[1] - 1
        if n <= 0:
            continue
        with torch.no_grad():
            loss = model(chunk, labels=chunk).loss.item()
        nll_sum += loss * n
        predicted += n
    return math.exp(nll_sum / predicted), predicted


def ids_for(seed, vocab, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()


def greedy(ref, prompt, max_new_tokens):
    """generate(do_sample=False) from prompt: the new ids and the smallest top-1/top-2 logit margin along the way"""
    with torch.no_grad():
        gen = ref.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=max_new_tokens,
                           attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=ref.config.eos_token_id)
        full = ref(gen).logits[0, len(prompt) - 1:-1]
        top2 = torch.topk(full, 2, dim=-1).values
    return gen[0, len(prompt):].tolist(), float((top2[:, 0] - top2[:, 1]).min())


def write_fixture(name, model, seed):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    ref = MixtralForCausalLM.from_pretrained(out, dtype=torch.float32, experts_implementation="eager").eval()
    assert ref.model.embed_tokens.weight.dtype == torch.float32
    cfg = ref.config
    vocab, k, experts = cfg.vocab_size, cfg.num_experts_per_tok, cfg.num_local_experts
    input_ids = ids_for(seed, vocab, 9)
    batch_ids = [ids_for(seed + 1, vocab, 7), ids_for(seed + 2, vocab, 7)]
    prompt = ids_for(seed + 3, vocab, 5)
    ppl_ids, ppl_window = ids_for(seed + 4, vocab, 45), 16
    with torch.no_grad():
        o = ref(torch.tensor([input_ids]), output_router_logits=True)
        logits = o.logits[0].float().numpy()                          # (T, vocab)
        router0 = o.router_logits[0].float().reshape(-1, experts)     # (T, E), layer 0
        probs = torch.softmax(router0, dim=-1)
        top_w, top_i = torch.topk(probs, k, dim=-1)
        top_w = top_w / top_w.sum(dim=-1, keepdim=True)              # Mixtral's renormalisation
        batch_logits = ref(torch.tensor(batch_ids)).logits.float().numpy()
        new_ids, margin = greedy(ref, prompt, 20)
    ppl, predicted = perplexity(ref, ppl_ids, ppl_window)
    np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(out, "batch_logits.npy"), batch_logits.astype(np.float32))
    np.save(os.path.join(out, "router_logits_layer0.npy"), router0.numpy().astype(np.float32))
    expected = {
        "vocab_size": vocab, "num_local_experts": experts, "num_experts_per_tok": k,
        "input_ids": input_ids, "batch_input_ids": batch_ids, "prompt_ids": prompt,
        "greedy_new_ids": new_ids, "greedy_max_new_tokens": 20, "greedy_min_top2_margin": margin,
        "perplexity_ids": ppl_ids, "perplexity_window": ppl_window, "perplexity": ppl,
        "perplexity_predicted_tokens": predicted,
        "layer0_topk_ids": top_i.tolist(), "layer0_topk_weights": top_w.tolist(),
    }
    if k >= 2:  # how far the routing weights are from equal (the Jlama bug test needs them unequal)
        expected["min_top2_weight_gap"] = float((top_w[:, 0] - top_w[:, 1]).min())
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    gc = os.path.join(out, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KB, logits |max| {np.abs(logits).max():.3f}, greedy {new_ids}, "
          f"margin {margin:.4f}, ppl {ppl:.4f}, layer-0 experts {top_i.tolist()}")


def main():
    os.makedirs(ROOT, exist_ok=True)
    common = dict(vocab_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  num_local_experts=4, bos_token_id=1, eos_token_id=2)
    m = make_model(11, hidden_size=48, intermediate_size=32, num_experts_per_tok=1, tie_word_embeddings=False,
                   rope_theta=10000.0, **common)
    write_fixture("k1", m, 1100)
    m = make_model(12, hidden_size=48, intermediate_size=40, num_experts_per_tok=2, tie_word_embeddings=True,
                   **common)  # Mixtral's default rope_theta 1e6
    write_fixture("k2_i40", m, 1200)
    m = make_model(13, hidden_size=64, intermediate_size=48, num_experts_per_tok=2, tie_word_embeddings=True,
                   rope_theta=10000.0, **common)
    m = m.to(torch.bfloat16)
    m.config.dtype = torch.bfloat16
    write_fixture("bf16_k2", m, 1300)


if __name__ == "__main__":
    main()

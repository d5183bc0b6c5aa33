"""Writes a HF Llama checkpoint (config.json + model.safetensors, F32/BF16/F16) as a llama2.c checkpoint
(the "version 0" format that llama2.c's run.c reads), so run.c and the engine decode with the same weights.
Needs only numpy (the safetensors file is parsed here: an 8-byte header length, a JSON header, raw data).

  python llama2c_export.py MODEL_DIR OUT.bin

The format (llama2.c export.py, legacy_export): a header of 7 int32 — dim, hidden_dim, n_layers, n_heads,
n_kv_heads, vocab_size (negative: the classifier is not shared with the embedding), seq_len — then float32
weights in this order: token embedding (vocab, dim); per layer stacked: attention norm (L, dim), wq (L, dim,
dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), FFN norm (L, dim), w1 = gate (L, hidden,
dim), w2 = down (L, dim, hidden), w3 = up (L, hidden, dim); the final norm (dim); two unused RoPE tables
(seq_len * head_size / 2 floats each); the classifier (vocab, dim) when not shared.

RoPE: run.c rotates interleaved pairs (2j, 2j+1) of each head, HF rotates (j, j + head_size/2)
(rotate_half), both with frequency theta^(-2j/head_size); so the rows of wq and wk are permuted per head as
llama2.c's export.py does for HF checkpoints (row 2j + h of a head takes HF row h * head_size/2 + j).
run.c hard-codes theta 10000 and head_size = dim / n_heads; checkpoints that differ are refused.

Token ids 0 and 1 are swapped (embedding rows and, tied or not, classifier rows): run.c starts from token 1
(its BOS) and stops when it samples token 1; after the swap it starts from this model's BOS (id 0 here) and
stops only if it samples that BOS again, not at the model's end-of-text (id 1 here). Decode speed does not
depend on which ids are sampled; the swap only keeps generation running for the requested number of steps.
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        buf = raw[base + a: base + b]
        dt = meta["dtype"]
        if dt == "F32":
            t = buf.view("<f4")
        elif dt == "BF16":
            t = (buf.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            t = buf.view("<f2").astype(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {dt}, expected F32, BF16 or F16")
        out[name] = np.asarray(t, dtype=np.float32).reshape(meta["shape"])
    return out


def main(model_dir, out_path):
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = read_safetensors(f"{model_dir}/model.safetensors")
    dim, hidden, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    vocab, seq_len = cfg["vocab_size"], cfg["max_position_embeddings"]
    head_size = cfg.get("head_dim") or dim // heads
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    if head_size * heads != dim:
        raise SystemExit(f"run.c needs head_dim * heads = hidden ({head_size} * {heads} != {dim})")
    if float(theta) != 10000.0:
        raise SystemExit(f"run.c hard-codes rope theta 10000, this model has {theta}")
    if abs(cfg.get("rms_norm_eps", 1e-5) - 1e-5) > 1e-12:
        raise SystemExit("run.c hard-codes rms_norm_eps 1e-5")
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in w

    def permute(t, n):  # HF rotate_half rows -> llama2.c interleaved pairs, per head
        rows, cols = t.shape
        return t.reshape(n, 2, rows // n // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)

    def swap01(t):
        t = t.copy()
        t[[0, 1]] = t[[1, 0]]
        return t

    def layer(name):
        return [w[f"model.layers.{l}.{name}"] for l in range(layers)]

    parts = [swap01(w["model.embed_tokens.weight"])]
    parts += layer("input_layernorm.weight")
    parts += [permute(t, heads) for t in layer("self_attn.q_proj.weight")]
    parts += [permute(t, kv_heads) for t in layer("self_attn.k_proj.weight")]
    parts += layer("self_attn.v_proj.weight")
    parts += layer("self_attn.o_proj.weight")
    parts += layer("post_attention_layernorm.weight")
    parts += layer("mlp.gate_proj.weight")
    parts += layer("mlp.down_proj.weight")
    parts += layer("mlp.up_proj.weight")
    parts += [w["model.norm.weight"]]
    parts += [np.zeros(seq_len * head_size // 2 * 2, dtype=np.float32)]  # the unused RoPE tables
    if not tied:
        parts += [swap01(w["lm_head.weight"])]
    with open(out_path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if tied else -vocab, seq_len))
        for p in parts:
            f.write(np.ascontiguousarray(p, dtype="<f4").tobytes())
    print(f"{out_path}: dim {dim}, hidden {hidden}, {layers} layers, {heads}/{kv_heads} heads, vocab {vocab}"
          f" ({'shared' if tied else 'own'} classifier), seq_len {seq_len}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])

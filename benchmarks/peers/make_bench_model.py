"""Writes the benchmark model: a random-weight HF LlamaForCausalLM (hidden 256, 4 layers, FFN 1024,
8 heads / 4 KV heads, vocab 4096, F32) with save_pretrained, so the engine and transformers run
identical weights. Usage: python make_bench_model.py OUT_DIR"""
import sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=4096, max_position_embeddings=2048,
                  rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
model = LlamaForCausalLM(cfg).to(torch.float32).eval()
model.save_pretrained(out, safe_serialization=True)
print(out)

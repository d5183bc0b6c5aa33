"""Peer benchmark for TrainStepBenchmark: one training step of HF transformers LlamaForCausalLM on PyTorch CPU
(F32, 2 threads) = forward with labels, backward, torch.optim.AdamW step (lr 1e-4, weight decay 0.01), on the
issue's benchmark shape (hidden 256, 4 layers, FFN 1024, 8 / 4 KV heads, vocab 4096, untied; random init as
transformers does) and a batch of 8 x 128 predicted tokens (8 x 129 ids). Prints JSON: median step time, tokens/s.
Usage: OMP_WAIT_POLICY=PASSIVE python hf_train_step.py [--batch 8] [--seq-len 128] [--steps 10] [--threads 2]"""
import argparse, json, os, statistics, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(42)
config = LlamaConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
                     num_key_value_heads=4, vocab_size=4096, max_position_embeddings=2048, rms_norm_eps=1e-5,
                     rope_theta=10000.0, tie_word_embeddings=False, hidden_act="silu", attention_dropout=0.0)
model = LlamaForCausalLM(config).float().train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
g = torch.Generator().manual_seed(7)
ids = torch.randint(0, config.vocab_size, (a.batch, a.seq_len + 1), generator=g)

def step():
    opt.zero_grad(set_to_none=True)
    loss = model(ids, labels=ids).loss  # predicts tokens 1..seq_len of each row: batch x seq_len targets
    loss.backward()
    opt.step()
    return loss.item()

for _ in range(2):
    step()  # warm-up
times = []
for _ in range(a.steps):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
median = statistics.median(times)
print(json.dumps({"peer": "transformers " + __import__("transformers").__version__ + " / torch " + torch.__version__,
                  "threads": a.threads, "batch": a.batch, "seq_len": a.seq_len, "attn": model.config._attn_implementation,
                  "median_step_s": median, "tokens_per_s": a.batch * a.seq_len / median}))

"""Peer benchmark: HF transformers LlamaForCausalLM on PyTorch CPU, 2 threads, same weights as the
engine. Prefill = one forward over batch x prompt_len tokens keeping only the last position's logits
(logits_to_keep=1, as generate does and as dive's prefill does); decode = generate(max_new_tokens=gen,
greedy, KV cache) after the prompt, tokens/s counts only the new tokens. Prints JSON with medians.
Usage: python hf_llama.py MODEL_DIR --batch B --prompt-len T --gen N --repeats R"""
import argparse, json, os, statistics, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
from transformers import LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--prompt-len", type=int, default=128)
ap.add_argument("--gen", type=int, default=64)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = LlamaForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
g = torch.Generator().manual_seed(0)
ids = torch.randint(3, model.config.vocab_size, (a.batch, a.prompt_len), generator=g)

def timed(fn):
    fn()  # warm-up
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)

with torch.inference_mode():
    prefill_s = timed(lambda: model(ids, use_cache=False, logits_to_keep=1))
    gen_s = timed(lambda: model.generate(ids, max_new_tokens=a.gen, min_new_tokens=a.gen, do_sample=False,
                                         pad_token_id=0, eos_token_id=None))
# generate also runs the prompt once: subtract a cached-prefill's time to count decode steps only
decode_s = max(gen_s - prefill_s, 1e-9)
print(json.dumps({"peer": "transformers " + __import__("transformers").__version__ + " / torch " + torch.__version__,
                  "threads": a.threads, "batch": a.batch, "prompt_len": a.prompt_len, "gen": a.gen,
                  "prefill_tokens_per_s": a.batch * a.prompt_len / prefill_s,
                  "generate_total_s": gen_s,
                  "decode_tokens_per_s": a.batch * a.gen / decode_s}))

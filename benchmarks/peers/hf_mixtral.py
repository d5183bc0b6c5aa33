"""Peer benchmark: HF transformers MixtralForCausalLM on PyTorch CPU, same weights as the engine.

  python hf_mixtral.py --make MODEL_DIR      writes the benchmark MoE model: a random-init MixtralForCausalLM of
                                             DIVE's 2/8 shape for the dense bench model (hidden 256, 4 layers,
                                             8 heads / 4 KV heads, vocab 4096, E = 8 experts of width 256, top-2,
                                             F32), with save_pretrained, so both sides read identical weights
  python hf_mixtral.py MODEL_DIR --batch B --prompt-len T --gen N --repeats R [--threads 2] [--experts-impl I]

Prefill = one forward over batch x prompt_len tokens that keeps only the last position's logits (logits_to_keep=1, as
generate does and as dive's MixtralBenchmark.prefill does with forwardLast); decode = generate(max_new_tokens=gen, greedy, KV cache)
after the prompt, tokens/s counts only the new tokens (generate time minus one prefill). One warm-up, then
medians of the repeats. Prints JSON. --experts-impl picks transformers' expert kernel (default: its own default,
grouped_mm in transformers 5)."""
import argparse, json, os, statistics, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
from transformers import MixtralConfig, MixtralForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--make", action="store_true", help="write the random-init benchmark model into MODEL and exit")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--prompt-len", type=int, default=128)
ap.add_argument("--gen", type=int, default=64)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--experts-impl", default=None)
a = ap.parse_args()

if a.make:
    torch.manual_seed(0)
    cfg = MixtralConfig(hidden_size=256, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8,
                        num_key_value_heads=4, vocab_size=4096, max_position_embeddings=2048, num_local_experts=8,
                        num_experts_per_tok=2, rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1,
                        eos_token_id=2, sliding_window=None, router_aux_loss_coef=0.0)
    model = MixtralForCausalLM(cfg).to(torch.float32).eval()
    model.save_pretrained(a.model, safe_serialization=True)
    print(a.model)
    raise SystemExit(0)

torch.set_num_threads(a.threads)
kwargs = {"dtype": torch.float32}
if a.experts_impl:
    kwargs["experts_implementation"] = a.experts_impl
model = MixtralForCausalLM.from_pretrained(a.model, **kwargs).eval()
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
decode_s = max(gen_s - prefill_s, 1e-9)
print(json.dumps({"peer": "transformers " + __import__("transformers").__version__ + " / torch " + torch.__version__,
                  "experts_implementation": a.experts_impl or "default",
                  "threads": a.threads, "batch": a.batch, "prompt_len": a.prompt_len, "gen": a.gen,
                  "prefill_tokens_per_s": a.batch * a.prompt_len / prefill_s,
                  "generate_total_s": gen_s,
                  "decode_tokens_per_s": a.batch * a.gen / decode_s}))

"""Peer of dive.bench.gpu.ScaleGpuBenchmark: the same prefill, decode and LoRA training-step measurements with HF
transformers LlamaForCausalLM on the GPU (BF16 weights, SDPA attention), same checkpoint, same shapes, same output lines.

  prefill   one forward of B x T tokens (default 8 x 128), last position's logits only (logits_to_keep=1), the logits
            copied to the host as the engine's are: tokens/s
  decode    batch 1: a T-token prompt (not timed), then S greedy steps (default 64) with the KV cache (DynamicCache),
            argmax on the GPU (as generate does): tokens/s and the fraction of HBM bandwidth, weight bytes read per
            token (every weight in its dtype but the embedding table, of which one row) x tokens/s / peak bandwidth
  LoRA step rank r (default 16, alpha 2r, no dropout) on q,k,v,o,gate,up,down, base frozen (BF16), adapters F32 as PEFT
            keeps them, B x T tokens (default 4 x 512): zero_grad, forward, cross-entropy on F32 logits, backward,
            clip to norm 1, torch.optim.AdamW; tokens/s and MFU with the engine's FLOP count per token
            4 N_lin + 6 N_lora + 6 L T d_q (frozen base forward + backward to the input, the adapters' forward, backward
            and weight gradient, causal attention), and the 6 (N_lin + N_lora) convention
Warm-up runs (default 1), then the median of R timed runs (default 3), each ended by torch.cuda.synchronize().
Prints `RESULT key=value unit # what` per metric and `INFO key=value` facts; where torch, transformers or a CUDA device
is missing, one line `SKIPPED hf_gpu_speed: <reason>` and exit status 0.
Usage: python hf_gpu_speed.py MODEL_DIR [--gpu-name NAME] [--prefill-batch 8] [--prompt 128] [--decode 64]
       [--train-batch 4] [--train-seq 512] [--rank 16] [--warmup 1] [--runs 3] [--budget-s 60] [--no-train]
       [--device cuda]   (--device cpu runs the same code on the CPU, for a check of the script on a small checkpoint)"""
import argparse
import math
import os
import re
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--gpu-name")
ap.add_argument("--device", default="cuda")
ap.add_argument("--prefill-batch", type=int, default=8)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--decode", type=int, default=64)
ap.add_argument("--train-batch", type=int, default=4)
ap.add_argument("--train-seq", type=int, default=512)
ap.add_argument("--rank", type=int, default=16)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--budget-s", type=float, default=60)
ap.add_argument("--no-train", action="store_true")
a = ap.parse_args()
T0 = time.perf_counter()


def skip(reason):
    print("SKIPPED hf_gpu_speed: " + " ".join(str(reason).split()))
    sys.exit(0)


try:
    import torch
except Exception as e:  # noqa: BLE001 - any import failure is a reason to skip
    skip(f"no torch in {sys.executable} ({type(e).__name__}: {e})")
try:
    import transformers
    from transformers import LlamaForCausalLM
except Exception as e:  # noqa: BLE001
    skip(f"no transformers in {sys.executable} ({type(e).__name__}: {e})")
if a.device == "cuda" and not torch.cuda.is_available():
    skip(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)")
if not os.path.isfile(os.path.join(a.model, "config.json")):
    print(f"hf_gpu_speed: no checkpoint at {a.model} (config.json missing)")
    sys.exit(1)

# peak HBM bandwidth (TB/s) and dense BF16 throughput (TFLOP/s) by device name: the engine's table
PEAKS = [(r"\bH100\b.*\bNVL\b", "H100 NVL", 3.9, 835), (r"\bH100\b.*\bPCIe\b", "H100 PCIe", 2.0, 756),
         (r"\bH100\b", "H100 SXM", 3.35, 989), (r"\bH200\b.*\bNVL\b", "H200 NVL", 4.8, 835),
         (r"\bH200\b", "H200 SXM", 4.8, 989),
         (r"\bA100\b.*\b80GB\b.*\bPCIe\b|\bA100\b.*\bPCIe\b.*\b80GB\b", "A100 80GB PCIe", 1.935, 312),
         (r"\bA100\b.*\b80GB\b", "A100 SXM 80GB", 2.039, 312), (r"\bA100\b", "A100 40GB", 1.555, 312)]
dev = torch.device(a.device)
gpu = a.gpu_name or (torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu")
peak = next(((label, bw, fl) for rx, label, bw, fl in PEAKS if re.search(rx, gpu, re.I)), None)


def sync():
    if a.device == "cuda":
        torch.cuda.synchronize()


def left():
    return a.budget_s - (time.perf_counter() - T0)


def measure(what, fn):
    """warm-up runs, then up to a.runs timed ones as the time budget allows (at least one); None if none fit"""
    last = 0.0
    for _ in range(a.warmup):
        if left() <= 0:
            print(f"INFO {what} not measured: the time budget of {a.budget_s:.0f} s is spent")
            return None
        s = time.perf_counter(); fn(); last = time.perf_counter() - s
    times = []
    for r in range(a.runs):
        if r > 0 and left() < 1.5 * last:
            print(f"INFO {what}: {r} of {a.runs} timed runs (the time budget of {a.budget_s:.0f} s)")
            break
        s = time.perf_counter(); t = fn(); last = time.perf_counter() - s
        times.append(t)
    return times


def result(key, value, unit, what):
    v = str(int(value)) if float(value).is_integer() else f"{value:.4g}"
    print(f"RESULT {key}={v} {unit} # {what}", flush=True)


def secs(ts):
    return ", ".join(f"{t:.4f}" for t in ts) + " s"


print(f"INFO peer=transformers {transformers.__version__} + torch {torch.__version__} (BF16, SDPA)")
print(f"INFO gpu={gpu}")
print(f"INFO peak={peak[0]} hbm_tb_s={peak[1]:.3f} bf16_tflops={peak[2]:.0f}" if peak
      else f"INFO peak=unknown ({gpu} is not in the peak table: no bandwidth or MFU fractions)")

# transformers renamed torch_dtype to dtype in 4.56; the .to() makes sure of BF16 either way
tf_version = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
dtype_kw = "dtype" if tf_version >= (4, 56) else "torch_dtype"
model = LlamaForCausalLM.from_pretrained(a.model, attn_implementation="sdpa", **{dtype_kw: torch.bfloat16})
model = model.to(device=dev, dtype=torch.bfloat16).eval()


def last_logits(ids, **kw):
    """a forward keeping only the last position's logits where this transformers can (logits_to_keep, 4.50+)"""
    try:
        return model(ids, logits_to_keep=1, **kw)
    except TypeError:
        return model(ids, **kw)


cfg = model.config
d, f, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
dq, dkv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
n_lin = L * (2 * dq * d + 2 * dkv * d + 3 * f * d) + V * d
weight_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
weight_bytes += d * model.model.embed_tokens.weight.element_size()
print(f"INFO weight_bytes_per_token={weight_bytes} linear_params={n_lin}")
g = torch.Generator().manual_seed(1)

# ------------------------------------------------------------------ prefill
ids = torch.randint(3, V, (a.prefill_batch, a.prompt), generator=g).to(dev)


def prefill():
    sync(); s = time.perf_counter()
    with torch.inference_mode():
        logits = last_logits(ids, use_cache=False).logits[:, -1]
    logits.float().cpu()
    sync()
    return time.perf_counter() - s


ts = measure("prefill", prefill)
if ts:
    result("prefill_tok_s", a.prefill_batch * a.prompt / statistics.median(ts), "tok/s",
           f"{a.prefill_batch} x {a.prompt} tokens, one forward, last logits; median of {len(ts)} ({secs(ts)})")

# ------------------------------------------------------------------ decode, batch 1
prompt = ids[:1]


def decode():
    with torch.inference_mode():
        out = last_logits(prompt, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync(); s = time.perf_counter()
        for _ in range(a.decode):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        return time.perf_counter() - s


ts = measure("decode", decode)
if ts:
    tok_s = a.decode / statistics.median(ts)
    result("decode_tok_s", tok_s, "tok/s", f"batch 1, {a.decode} greedy steps after a {a.prompt}-token prompt; "
                                           f"median of {len(ts)} ({secs(ts)})")
    if peak:
        result("decode_hbm_fraction", weight_bytes * tok_s / (peak[1] * 1e12), "of peak",
               f"{weight_bytes / 1e9:.4g} GB of weights per token x tok/s / {peak[1]:.2f} TB/s ({peak[0]})")

# ------------------------------------------------------------------ LoRA training step
if a.no_train:
    print("INFO training step not measured (--no-train)")
elif left() <= 0:
    print(f"INFO LoRA training step not measured: the time budget of {a.budget_s:.0f} s is spent")
else:
    targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    r, scale = a.rank, 2.0

    class LoraLinear(torch.nn.Module):
        """y = base(x) + (alpha/r) x A^T B^T with A ~ kaiming-uniform, B = 0, the adapters F32 (PEFT's layout)"""
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.A = torch.nn.Parameter(torch.empty(r, base.in_features, device=dev))
            torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = torch.nn.Parameter(torch.zeros(base.out_features, r, device=dev))

        def forward(self, x):
            return self.base(x) + ((x.float() @ self.A.t() @ self.B.t()) * scale).to(x.dtype)

    model.requires_grad_(False)
    for module in list(model.modules()):
        for child, sub in list(module.named_children()):
            if child in targets and isinstance(sub, torch.nn.Linear):
                setattr(module, child, LoraLinear(sub))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in params)
    T = a.train_seq
    flops_tok = 4.0 * n_lin + 6.0 * n_lora + 6.0 * L * T * dq
    flops_6n = 6.0 * (n_lin + n_lora)
    print(f"INFO lora_rank={r} lora_params={n_lora} flops_per_token={flops_tok:.4e} flops_per_token_6n={flops_6n:.4e}")
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    batch = torch.randint(3, V, (a.train_batch, T + 1), generator=g).to(dev)
    inputs, labels = batch[:, :-1], batch[:, 1:]

    def step():
        sync(); s = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        logits = model(inputs, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, V), labels.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()
        sync()
        return time.perf_counter() - s

    ts = measure("LoRA training step", step)
    if ts:
        t = statistics.median(ts)
        tokens = a.train_batch * T
        result("lora_step_tok_s", tokens / t, "tok/s", f"LoRA r {r} on q,k,v,o,gate,up,down, {a.train_batch} x {T} "
                                                       f"tokens, AdamW + clipping; median of {len(ts)} ({secs(ts)})")
        if peak:
            result("lora_step_mfu", flops_tok * tokens / t / (peak[2] * 1e12), "of peak",
                   f"(4 N_lin + 6 N_lora + 6 L T d_q) x tokens / time / {peak[2]} TFLOP/s ({peak[0]})")
            result("lora_step_mfu_6n", flops_6n * tokens / t / (peak[2] * 1e12), "of peak",
                   f"6 (N_lin + N_lora) x tokens / time / {peak[2]} TFLOP/s (full-finetune convention)")
print(f"INFO total_s={time.perf_counter() - T0:.1f}")

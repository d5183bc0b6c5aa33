"""Peer benchmark for `./dive train` with LoRA on a Llama checkpoint: one training step of HF transformers
LlamaForCausalLM on PyTorch CPU (F32 weights, 2 threads) with LoRA adapters as PEFT makes them (y += (alpha/r) *
dropout(x) A^T B^T, A ~ kaiming-uniform, B = 0; base weights frozen), AdamW over the adapters and every RMSNorm weight.
Forward with labels, backward, optimizer step; batch x seq_len predicted tokens. Prints JSON: median step time, tokens/s.
Usage: OMP_WAIT_POLICY=PASSIVE python hf_lora_step.py MODEL_DIR [--batch 2] [--seq-len 128] [--steps 3] [--r 8]
       [--targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj] [--threads 2]"""
import argparse, json, math, os, statistics, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
from transformers import LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=2)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--r", type=int, default=8)
ap.add_argument("--alpha", type=float, default=16)
ap.add_argument("--dropout", type=float, default=0.1)
ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = LlamaForCausalLM.from_pretrained(a.model, dtype=torch.float32)
model.requires_grad_(False)
targets = set(a.targets.split(","))


class LoraLinear(torch.nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base
        self.A = torch.nn.Parameter(torch.empty(a.r, base.in_features))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, a.r))
        self.drop = torch.nn.Dropout(a.dropout)

    def forward(self, x):
        return self.base(x) + (self.drop(x) @ self.A.t() @ self.B.t()) * (a.alpha / a.r)


for name, module in list(model.named_modules()):
    for child, sub in list(module.named_children()):
        if child in targets and isinstance(sub, torch.nn.Linear):
            setattr(module, child, LoraLinear(sub))
for name, p in model.named_parameters():
    if name.endswith("norm.weight"):
        p.requires_grad_(True)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
g = torch.Generator().manual_seed(7)
ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq_len + 1), generator=g)


def step():
    opt.zero_grad(set_to_none=True)
    loss = model(ids, labels=ids).loss
    loss.backward()
    opt.step()


step()  # warm-up
times = []
for _ in range(a.steps):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
t = statistics.median(times)
print(json.dumps({"peer": f"transformers {__import__('transformers').__version__} + torch {torch.__version__} (F32, LoRA r {a.r})",
                  "batch": a.batch, "seq_len": a.seq_len, "trainable": sum(p.numel() for p in params),
                  "step_seconds": t, "tokens_per_s": a.batch * a.seq_len / t}))

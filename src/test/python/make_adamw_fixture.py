"""torch.optim.AdamW reference for AdamWTest: a 2-D parameter (weight decay) and a 1-D one (no decay,
its own param group as dive skips decay for 1-D params), 5 steps with given gradients and a changing lr.
Run: OMP_WAIT_POLICY=PASSIVE .venv-ref/bin/python src/test/python/make_adamw_fixture.py"""
import json, torch

torch.manual_seed(0)
w = torch.randn(3, 4, dtype=torch.float32)
b = torch.randn(4, dtype=torch.float32)
grads = [(torch.randn(3, 4), torch.randn(4) * 0.1) for _ in range(5)]
lrs = [1e-2, 2e-2, 3e-2, 2e-2, 1e-3]
out = {"betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "lrs": lrs,
       "w0": w.flatten().tolist(), "b0": b.tolist(),
       "grads_w": [g[0].flatten().tolist() for g in grads], "grads_b": [g[1].tolist() for g in grads]}
pw, pb = torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())
opt = torch.optim.AdamW([{"params": [pw], "weight_decay": 0.1}, {"params": [pb], "weight_decay": 0.0}],
                        lr=lrs[0], betas=(0.9, 0.95), eps=1e-8, foreach=False)
for lr, (gw, gb) in zip(lrs, grads):
    for group in opt.param_groups:
        group["lr"] = lr
    pw.grad, pb.grad = gw.clone(), gb.clone()
    opt.step()
out["w_final"] = pw.detach().flatten().tolist()
out["b_final"] = pb.detach().tolist()
out["w_exp_avg_sq_final"] = opt.state[pw]["exp_avg_sq"].flatten().tolist()
out["torch"] = torch.__version__
with open("src/test/resources/train/adamw_torch.json", "w") as f:
    json.dump(out, f, indent=1)

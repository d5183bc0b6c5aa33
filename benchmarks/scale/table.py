"""Turns the scale benchmark's measurements (OUT/results.jsonl and the commands' outputs) into OUT/scale.md: per command
the wall time and peak RSS of dive and of transformers where it has an equivalent, the speed rows side by side, and the
paper-recipe extrapolation. Usage: python table.py OUT_DIR"""
import json, os, sys

out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
by = {(r["command"], r["who"]): r for r in rows}


def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None


def gb(b):
    return f"{b / 1e9:.1f} GB"


lines = ["| command | dive wall | dive peak RSS | transformers wall | transformers peak RSS | exit |", "|---|---:|---:|---:|---:|---|"]
for cmd in dict.fromkeys(r["command"] for r in rows):
    d, h = by.get((cmd, "dive")), by.get((cmd, "transformers"))
    lines.append(f"| {cmd} | {d['wall_s']:.0f} s | {gb(d['peak_rss_bytes'])} | "
                 + (f"{h['wall_s']:.0f} s | {gb(h['peak_rss_bytes'])}" if h else "— | —") + f" | {d['exit']} |")

speed = ["", "| speed (2 threads) | dive | transformers (F32) | ratio |", "|---|---:|---:|---:|"]
bench_d, bench_h = load("bench-dive.out"), load("bench-transformers.out")
if bench_d and bench_h:
    for name, dk, hk in (("prefill 1 × 128 tokens, tok/s", "prefillTokensPerSecond", "prefill_tokens_per_s"),
                         ("decode, tok/s", "decodeTokensPerSecond", "decode_tokens_per_s")):
        speed.append(f"| {name} | {bench_d[dk]:.1f} | {bench_h[hk]:.1f} | {bench_d[dk] / bench_h[hk]:.2f} |")
train_h = load("train-transformers.out")
log = os.path.join(out, "train", "train-log.jsonl")
if train_h and os.path.exists(log):
    rates = sorted(json.loads(l)["tokens_per_second"] for l in open(log) if '"tokens_per_second"' in l)
    if len(rates) > 1:
        rates = rates[1:] if len(rates) > 2 else rates  # the first step includes the JIT warm-up
    median = rates[len(rates) // 2]
    speed.append(f"| LoRA training step 2 × 128 tokens, tok/s (dive: median of its steps) | {median:.1f} | "
                 f"{train_h['tokens_per_s']:.1f} | {median / train_h['tokens_per_s']:.2f} |")

extra = []
timings = load(os.path.join("convert", "timings.json"))
if timings:
    extra += ["", "convert phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    calib = timings.get("grouping", 0) + timings.get("reconstruction", 0)
    extra.append(f"calibration + affinity mining + expert reconstruction: {calib / 60:.1f} min")
open(os.path.join(out, "scale.md"), "w").write("\n".join(lines + speed + extra) + "\n")
print("\n".join(lines + speed + extra))

#!/usr/bin/env bash
# Dense Llama prefill and decode: dive (./dive bench) against HF transformers on PyTorch CPU
# (benchmarks/peers/hf_llama.py), same weights (a random-init LlamaForCausalLM, hidden 256, 4 layers,
# written by peers/make_bench_model.py), same shapes, both on 2 threads, one after the other.
#   benchmarks/llama-vs-transformers.sh [--batch B] [--prompt-len T] [--gen N] [--repeats R]
# PYTHON selects an interpreter with torch + transformers (default: the venv of src/test/python/setup-venv.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BATCH=1 PROMPT=128 GEN=64 REPEATS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) BATCH="$2"; shift 2 ;; --prompt-len) PROMPT="$2"; shift 2 ;;
    --gen) GEN="$2"; shift 2 ;; --repeats) REPEATS="$2"; shift 2 ;;
    *) echo "llama-vs-transformers.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
PYTHON="${PYTHON:-$("$ROOT/src/test/python/setup-venv.sh")/bin/python}"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
MODEL="$ROOT/target/bench-model"
[ -f "$MODEL/model.safetensors" ] || "$PYTHON" "$ROOT/benchmarks/peers/make_bench_model.py" "$MODEL" >&2
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
ARGS=(--batch "$BATCH" --prompt-len "$PROMPT" --gen "$GEN" --repeats "$REPEATS")
"$ROOT/dive" bench "$MODEL" "${ARGS[@]}" --threads 2 --json -q > "$OUT/dive.json"
"$PYTHON" "$ROOT/benchmarks/peers/hf_llama.py" "$MODEL" "${ARGS[@]}" --threads 2 > "$OUT/hf.json"
"$PYTHON" - "$OUT/dive.json" "$OUT/hf.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); h = json.load(open(sys.argv[2]))
print(f"# {h['peer']}; batch {h['batch']}, prompt {h['prompt_len']}, gen {h['gen']}, 2 threads, medians")
print(f"{'':8} {'dive tok/s':>11} {'HF tok/s':>10} {'ratio':>6}")
for name, dk, hk in (("prefill", "prefillTokensPerSecond", "prefill_tokens_per_s"),
                     ("decode", "decodeTokensPerSecond", "decode_tokens_per_s")):
    print(f"{name:8} {d[dk]:11.1f} {h[hk]:10.1f} {d[dk] / h[hk]:6.2f}")
PY

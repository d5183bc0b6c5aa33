#!/usr/bin/env bash
# Batch-1 decode: dive against llama2.c's run.c (C, OpenMP) on the same weights, 1 and 2 threads.
#   benchmarks/peers/llama2c-decode.sh LLAMA2C_DIR [--model DIR] [--steps N] [--rounds R]
# LLAMA2C_DIR: a checkout of https://github.com/karpathy/llama2.c (fetch it yourself:
#   git clone https://github.com/karpathy/llama2.c); measured with commit 350e04fe35433e6d2941dce5a1f53308f87058eb.
# run.c is built with gcc -Ofast -fopenmp -march=native into target/llama2c/; the model (default: the bundled
# src/main/resources/dive/default) is written in llama2.c's checkpoint format by llama2c_export.py (numpy only;
# PYTHON picks the interpreter, default: python3, else the reference venv). run.c reads the checkout's
# tokenizer.bin (its first vocab_size entries; the text it prints is meaningless, the speed is not).
# Each round runs, one after the other: run.c 2 threads, dive 2 threads, run.c 1 thread, dive 1 thread; the table
# gives the medians over rounds. run.c: its own "achieved tok/s" (steps − 1 tokens after the first);
# dive: `dive bench --prompt-len 1 --gen N` (decode tokens/s, median of its repeats, after a warm-up).
# OpenMP settings come from the environment (OMP_WAIT_POLICY etc.); with libgomp's default spinning, run.c at 2 threads
# collapses to tens of tokens/s when the machine has more runnable threads than cores: report the load average.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ $# -ge 1 ] || { sed -n 2,12p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
SRC="$(cd "$1" && pwd)"; shift
MODEL="$ROOT/src/main/resources/dive/default" STEPS=256 ROUNDS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;; --steps) STEPS="$2"; shift 2 ;; --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "llama2c-decode.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$SRC/run.c" ] && [ -f "$SRC/tokenizer.bin" ] || { echo "llama2c-decode.sh: $SRC has no run.c / tokenizer.bin (a llama2.c checkout?)" >&2; exit 2; }
if [ -z "${PYTHON:-}" ]; then
  if python3 -c "import numpy" 2>/dev/null; then PYTHON=python3
  else PYTHON="$("$ROOT/src/test/python/setup-venv.sh")/bin/python"; fi
fi
WORK="$ROOT/target/llama2c"; mkdir -p "$WORK"
echo "llama2.c: $(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo 'commit unknown (not a git checkout)')" >&2
gcc -Ofast -fopenmp -march=native -o "$WORK/run" "$SRC/run.c" -lm
"$PYTHON" "$ROOT/benchmarks/peers/llama2c_export.py" "$MODEL" "$WORK/model.bin"

runc() { # $1 threads → tok/s
  OMP_NUM_THREADS="$1" OMP_PROC_BIND=false "$WORK/run" "$WORK/model.bin" -z "$SRC/tokenizer.bin" -n "$STEPS" -s 42 -i "" \
    2>&1 >/dev/null | sed -n 's/^achieved tok\/s: //p'
}
dive_tps() { # $1 threads → decode tok/s
  "$ROOT/dive" bench "$MODEL" --prompt-len 1 --gen "$STEPS" --repeats 3 --threads "$1" --json -q 2>/dev/null \
    | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['decodeTokensPerSecond'])"
}
declare -a C2 D2 C1 D1
for ((r = 0; r < ROUNDS; r++)); do
  C2+=("$(runc 2)"); D2+=("$(dive_tps 2)"); C1+=("$(runc 1)"); D1+=("$(dive_tps 1)")
  echo "round $((r + 1)): run.c 2t ${C2[-1]}  dive 2t ${D2[-1]}  run.c 1t ${C1[-1]}  dive 1t ${D1[-1]}" >&2
done
"$PYTHON" - "${C2[*]}" "${D2[*]}" "${C1[*]}" "${D1[*]}" "$STEPS" "$ROUNDS" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" <<'PY'
import statistics as st, sys
c2, d2, c1, d1 = ([float(v) for v in a.split()] for a in sys.argv[1:5])
print(f"# batch-1 decode, {sys.argv[5]} steps, medians of {sys.argv[6]} alternating rounds; load average {sys.argv[7]}")
print(f"{'threads':>7} {'run.c tok/s':>12} {'dive tok/s':>11} {'dive/run.c':>10}")
for t, c, d in ((1, c1, d1), (2, c2, d2)):
    print(f"{t:>7} {st.median(c):>12.1f} {st.median(d):>11.1f} {st.median(d) / st.median(c):>10.2f}")
print(f"dive 2 threads / 1 thread: {st.median(d2) / st.median(d1):.2f}")
PY

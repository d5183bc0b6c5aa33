#!/usr/bin/env bash
# GEMM of dive's vector backend against NumPy/OpenBLAS sgemm, both on 2 threads, at GemmBenchmark's
# F32 shapes, one after the other (never at the same time). Prints GFLOP/s of each and the ratio.
#   benchmarks/gemm-vs-openblas.sh [JMH args, default: -f 1 -wi 3 -i 5 -w 1s -r 1s]
# PYTHON selects the interpreter with NumPy (default python3).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
JMH_ARGS=("$@")
[ ${#JMH_ARGS[@]} -gt 0 ] || JMH_ARGS=(-f 1 -wi 3 -i 5 -w 1s -r 1s)

echo "== dive VectorBackend (JMH, 2 threads, F32) ==" >&2
"$HERE/../dive" jmh GemmBenchmark -p dtype=F32 -p threads=2 -p backend=vector "${JMH_ARGS[@]}" \
  -rf json -rff "$OUT/jmh.json" >&2
echo "== NumPy sgemm (OpenBLAS, 2 threads) ==" >&2
"$PYTHON" "$HERE/peers/numpy_sgemm.py" > "$OUT/numpy.json"

"$PYTHON" - "$OUT/jmh.json" "$OUT/numpy.json" <<'PY'
import json, sys
jmh = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))
print(f"# peer: numpy {peer['numpy']}, {peer['blas']}, {peer['threads']} threads")
print(f"{'shape MxNxK':>16} {'dive GFLOP/s':>13} {'OpenBLAS GFLOP/s':>17} {'ratio':>6}")
for r in jmh:
    shape = r["params"]["shape"]
    m, n, k = (int(v) for v in shape.split("x"))
    dive = r["primaryMetric"]["score"] * 2.0 * m * n * k / 1e9
    ob = peer["results"].get(shape, {}).get("gflops")
    ratio = f"{dive / ob:6.2f}" if ob else "   n/a"
    obs = f"{ob:17.1f}" if ob else f"{'n/a':>17}"
    print(f"{shape:>16} {dive:13.1f} {obs} {ratio}")
PY

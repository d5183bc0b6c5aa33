#!/usr/bin/env bash
# GEMM of dive's vector backend against NumPy/OpenBLAS sgemm, both on 2 threads, F32, at GemmBenchmark's square and
# small-model shapes, interleaved (dive.bench.GemmVsPeer: rounds of ~200 ms of dive's calls, then as many of each peer,
# so a machine whose speed drifts slows both alike). Prints median GFLOP/s of each and the median per-round ratio.
#   benchmarks/gemm-vs-openblas.sh [--rounds 15] [SHAPE ...]
# PYTHON selects the interpreter with NumPy (default: the venv of src/test/python/setup-venv.sh).
# The peer runs twice: OpenBLAS's own CPU detection, and, on an AVX-512 CPU, OPENBLAS_CORETYPE=SKYLAKEX (OpenBLAS
# 0.3.31 may take an AVX-512 CPU such as AMD Zen 4/5 for an AVX2 one); dive is compared with the faster.
# JMH alone: ./dive jmh GemmBenchmark -p dtype=F32 -p threads=2
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$("$ROOT/src/test/python/setup-venv.sh")/bin/python}"
ROUNDS=15
if [ "${1:-}" = "--rounds" ]; then ROUNDS="$2"; shift 2; fi
SHAPES=("$@")
[ ${#SHAPES[@]} -gt 0 ] || SHAPES=(512x512x512 1024x1024x1024 2048x2048x2048 512x1024x256 512x256x1024 512x2048x256)
CORES=(--coretype auto)
grep -qw avx512f /proc/cpuinfo 2>/dev/null && CORES+=(--coretype SKYLAKEX)
"$ROOT/dive" --help >/dev/null  # builds target/dive.jar when the sources changed
JAVA=""
for c in "${DIVE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25* /usr/lib/jvm/java-25* /usr/lib/jvm/jdk-25*; do
  [ -n "$c" ] && [ -x "$c/bin/java" ] && "$c/bin/java" -version 2>&1 | grep -q 'version "2[5-9]' && { JAVA="$c/bin/java"; break; }
done
[ -n "$JAVA" ] || { echo "gemm-vs-openblas.sh: no JDK 25 found (set JAVA_HOME to one)" >&2; exit 1; }
exec "$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp "$ROOT/target/dive.jar" \
  dive.bench.GemmVsPeer --python "$PYTHON" --script "$ROOT/benchmarks/peers/numpy_sgemm.py" --rounds "$ROUNDS" \
  "${CORES[@]}" "${SHAPES[@]}" 2> >(grep -v "incubat" >&2)

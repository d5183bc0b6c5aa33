#!/usr/bin/env bash
# The one script the GPU machine runs (≤ 8 minutes), from the repository root of a copy of the working tree, with
# the bundle made by benchmarks/gpu/prepare.sh carried in target/gpu-bundle (the machine has nvcc, the driver,
# Python with nvidia-cublas, but no JDK, no Maven, no network). Phases, each under its own timeout, each run even
# when an earlier one failed:
#   1. environment: nvidia-smi, nvcc, the bundle's JDK unpacked to /tmp
#   2. native: make -C native (sm_90 only, to save time), then make -C native test when the Makefile has that target
#   3. tests: JUnit console launcher, the tests tagged gpu, then the dive.bindings tests
#   4. 1.1B shape (TinyLlama: hidden 2048, 22 layers, 32 / 4 KV heads, FFN 5632, vocab 32000, BF16), about 3 minutes:
#      a random-init checkpoint in /tmp (benchmarks/scale/make_checkpoint.py when Python has torch + transformers +
#      CUDA, else the engine's dive.bench.gpu.ScaleCheckpoint), then dive.bench.gpu.ScaleGpuBenchmark (prefill, decode
#      at batch 1 and its share of HBM bandwidth, LoRA training step and its MFU, host<->device transfers per step) and
#      its transformers peer benchmarks/peers/hf_gpu_speed.py on the same GPU, same shapes
#   5. benchmarks: the GPU JMH benchmarks (dive.bench.gpu), short settings, JSON results
#   6. report: $OUT/gpu-results.md (device, versions, phase results, the 1.1B table engine vs transformers with its
#      targets, the benchmark table with the target ratios)
# Everything lands in $OUT (default target/gpu-out): gpu-results.md, run.log, native.log, junit.log, scale.log,
# scale-engine.log, scale-peer.log, jmh.log, jmh-results.json.
#
# DIVE_GPU_DRY_RUN=1 proves the plumbing on a machine without a GPU: the bundle's java -version, the native build
# (nvcc only) and the test targets listed, the tests and benchmarks listed, the 1.1B checkpoint skipped (it is made
# only on a GPU machine), ScaleGpuBenchmark, hf_gpu_speed.py and every GPU benchmark run once for a moment (each prints
# its SKIPPED line), and a results file that says "no GPU".
# DIVE_GPU_BUDGET_S (default 465) is the whole run's time budget; DIVE_GPU_JMH (a regex) runs only those benchmarks;
# DIVE_GPU_PYTHON chooses the Python of the checkpoint and the peer (default /opt/torch/.venv/bin/python, else python3);
# DIVE_GPU_SCALE=0 leaves the 1.1B phase out.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUNDLE="${DIVE_GPU_BUNDLE:-$ROOT/target/gpu-bundle}"
OUT="${OUT:-$ROOT/target/gpu-out}"
DRY="${DIVE_GPU_DRY_RUN:-0}"
BUDGET_S="${DIVE_GPU_BUDGET_S:-465}"
START_S=$(date +%s)
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/dive-gpu.XXXXXX)"
exec > >(tee -a "$OUT/run.log") 2>&1

declare -a PHASES=()
note() { echo "[run.sh +$(( $(date +%s) - START_S ))s] $*"; }
left() { echo $(( START_S + BUDGET_S - $(date +%s) )); }
# phase_timeout MAX RESERVE: at most MAX seconds, leaving RESERVE seconds for the phases after this one (≥ 5)
phase_timeout() { local t; t=$(( $(left) - $2 )); [ "$t" -gt "$1" ] && t=$1; [ "$t" -lt 5 ] && t=5; echo "$t"; }
# record NAME STATUS SECONDS DETAIL
record() { PHASES+=("| ${1//|/\\|} | $2 | $3 | ${4//|/\\|} |"); note "$1: $2 ($3 s) $4"; }
# run_phase NAME LOG MAX RESERVE CMD...: runs CMD under timeout, appending to LOG; prints its exit status
run_phase() {
  local name="$1" log="$2" max="$3" reserve="$4"; shift 4
  local t; t=$(phase_timeout "$max" "$reserve")
  local t0; t0=$(date +%s)
  echo "===== $name (timeout ${t}s)" >> "$log"
  echo "\$ $*" >> "$log"
  timeout -k 10 "$t" "$@" >> "$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local status="ok"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="TIMED OUT after ${t}s"
  [ "$rc" -ne 0 ] && [ "$status" = ok ] && status="FAILED (exit $rc)"
  LAST_RC=$rc LAST_NAME="$name" LAST_DT=$dt
  record "$name" "$status" "$dt" "see $(basename "$log")"
}
# skipped_phase LOG [NAME_REGEX]: when the phase just recorded ended well but LOG holds a SKIPPED line (of a program
# whose name matches NAME_REGEX), the phase is "skipped", with that line as its detail
skipped_phase() {
  local line; line="$(grep -m1 -oE "SKIPPED ${2:-[A-Za-z_]+}: .*" "$1" 2>/dev/null)"
  [ -n "$line" ] && [ "${LAST_RC:-1}" = 0 ] || return 0
  PHASES[${#PHASES[@]} - 1]="| ${LAST_NAME//|/\\|} | skipped | $LAST_DT | ${line//|/\\|} |"
}

note "dive GPU run in $ROOT, bundle $BUNDLE, out $OUT, budget ${BUDGET_S}s$([ "$DRY" = 1 ] && echo ', DRY RUN')"
[ -f "$BUNDLE/BUNDLE.txt" ] && cat "$BUNDLE/BUNDLE.txt"

# ---------------------------------------------------------------- 1. environment
GPU_LINE="$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader 2>/dev/null | head -1)"
[ -n "$GPU_LINE" ] || GPU_LINE="no GPU (nvidia-smi absent or failed)"
NVCC_LINE="$(nvcc --version 2>/dev/null | grep -i release | head -1)"
[ -n "$NVCC_LINE" ] || NVCC_LINE="nvcc not found"
note "GPU: $GPU_LINE"
note "nvcc: $NVCC_LINE"
for site in "${DIVE_PYTHON_SITE:-}" /opt/torch/.venv/lib/python3.12/site-packages; do
  if [ -n "$site" ] && [ -d "$site/nvidia" ]; then export DIVE_PYTHON_SITE="$site"; break; fi
done
note "cuBLAS search root: ${DIVE_PYTHON_SITE:-(default places)}"
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
NO_GPU=0
[[ "$GPU_LINE" == "no GPU"* ]] && NO_GPU=1
PYTHON=""
for py in "${DIVE_GPU_PYTHON:-}" /opt/torch/.venv/bin/python python3; do
  if [ -n "$py" ] && command -v "$py" >/dev/null 2>&1; then PYTHON="$(command -v "$py")"; break; fi
done
note "Python: ${PYTHON:-none}"

JAVA=""
t0=$(date +%s)
if [ -f "$BUNDLE/jdk.tar.xz" ]; then
  if tar -C "$WORK" -xJf "$BUNDLE/jdk.tar.xz" 2>"$WORK/untar.err" \
     || python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$BUNDLE/jdk.tar.xz" "$WORK"; then
    JAVA="$WORK/jdk/bin/java"
  fi
fi
if [ -n "$JAVA" ] && JAVA_VERSION="$("$JAVA" -version 2>&1 | head -1)"; then
  record "JDK from the bundle" ok $(( $(date +%s) - t0 )) "$JAVA_VERSION"
else
  JAVA=""
  JAVA_VERSION="none"
  record "JDK from the bundle" "FAILED" $(( $(date +%s) - t0 )) "no $BUNDLE/jdk.tar.xz or it did not unpack: run benchmarks/gpu/prepare.sh and carry target/gpu-bundle"
fi
JVM_FLAGS=(--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss8m -Xmx16g)
CP="$BUNDLE/classes:$ROOT/src/main/resources:$(ls "$BUNDLE"/lib/*.jar 2>/dev/null | grep -v console-standalone | tr '\n' ':')"
TEST_CP="$BUNDLE/test-classes:$ROOT/src/test/resources:$CP$(ls "$BUNDLE"/lib/junit-platform-console-standalone-*.jar 2>/dev/null | head -1)"

# ---------------------------------------------------------------- 2. native
NATIVE_LOG="$OUT/native.log"
: > "$NATIVE_LOG"
ARCH_FLAGS="${DIVE_GPU_ARCH:--gencode=arch=compute_90,code=sm_90}"   # the H200 only: a third of the full build's time
if command -v nvcc >/dev/null; then
  make -C native clean >> "$NATIVE_LOG" 2>&1
  run_phase "native build (make -C native)" "$NATIVE_LOG" 100 330 make -C native -j16 "ARCH=$ARCH_FLAGS"
  if make -C native -n test >/dev/null 2>&1; then
    if [ "$DRY" = 1 ]; then
      run_phase "native test (dry run: make -n test)" "$NATIVE_LOG" 30 300 make -C native -n test
    else
      run_phase "native test (make -C native test)" "$NATIVE_LOG" 45 300 make -C native test "ARCH=$ARCH_FLAGS"
    fi
  else
    record "native test" "not run" 0 "native/Makefile has no 'test' target"
  fi
else
  record "native build" "not run" 0 "nvcc not found"
fi
[ -f native/build/libdive.so ] && note "libdive.so: $(ls -la native/build/libdive.so)"

# ---------------------------------------------------------------- 3. tests
JUNIT_LOG="$OUT/junit.log"
: > "$JUNIT_LOG"
if [ -n "$JAVA" ]; then
  LAUNCH=("$JAVA" "${JVM_FLAGS[@]}" -cp "$TEST_CP" org.junit.platform.console.ConsoleLauncher)
  if [ "$DRY" = 1 ]; then
    run_phase "JUnit: list gpu-tagged tests" "$JUNIT_LOG" 60 250 "${LAUNCH[@]}" discover --disable-banner --details tree \
      --disable-ansi-colors --scan-class-path "$BUNDLE/test-classes" --include-tag gpu
    run_phase "JUnit: list dive.bindings tests" "$JUNIT_LOG" 60 230 "${LAUNCH[@]}" discover --disable-banner --details tree \
      --disable-ansi-colors --select-package dive.bindings
  else
    run_phase "JUnit: tests tagged gpu" "$JUNIT_LOG" 100 250 "${LAUNCH[@]}" execute --disable-banner --details tree \
      --disable-ansi-colors --scan-class-path "$BUNDLE/test-classes" --include-tag gpu
    run_phase "JUnit: dive.bindings tests" "$JUNIT_LOG" 30 230 "${LAUNCH[@]}" execute --disable-banner --details tree \
      --disable-ansi-colors --select-package dive.bindings
  fi
else
  record "JUnit" "not run" 0 "no JDK"
fi

# ---------------------------------------------------------------- 4. 1.1B shape
# A TinyLlama-1.1B-shaped checkpoint (random init, BF16, 2.2 GB) made here in /tmp (too large to carry), then the
# engine and transformers on it: ScaleGpuBenchmark and hf_gpu_speed.py each print RESULT lines, tabled in the report
# by dive.bench.gpu.ScaleReport. Each step has its own timeout; each program also keeps to a time budget of its own
# (--budget-s, a little under its timeout) and prints every result as soon as it is measured.
SCALE_LOG="$OUT/scale.log"          # the checkpoint
ENGINE_LOG="$OUT/scale-engine.log"  # ScaleGpuBenchmark
PEER_LOG="$OUT/scale-peer.log"      # hf_gpu_speed.py
: > "$SCALE_LOG"; : > "$ENGINE_LOG"; : > "$PEER_LOG"
CKPT="$WORK/scale-1b"
SCALE_NOTES=()
if [ "${DIVE_GPU_SCALE:-1}" = 0 ]; then
  record "1.1B shape" "not run" 0 "DIVE_GPU_SCALE=0"
  SCALE_NOTES+=("not run: DIVE_GPU_SCALE=0")
else
  # the checkpoint: only where a GPU can use it
  if [ "$DRY" = 1 ] || [ "$NO_GPU" = 1 ]; then
    why="$([ "$DRY" = 1 ] && echo "dry run" || echo "no GPU"): the 2.2 GB checkpoint is made only where a GPU measures it"
    record "1.1B checkpoint" "skipped" 0 "$why"
    SCALE_NOTES+=("checkpoint: skipped ($why)")
  else
    t0=$(date +%s)
    made=""
    if [ -n "$PYTHON" ] && timeout 45 "$PYTHON" -c "import sys, torch, transformers, safetensors; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')" >> "$SCALE_LOG" 2>&1; then
      run_phase "1.1B checkpoint (transformers, make_checkpoint.py)" "$SCALE_LOG" 70 180 "$PYTHON" \
        benchmarks/scale/make_checkpoint.py "$CKPT" --no-tokenizer --device cuda --shard-size 5GB
      [ "$LAST_RC" = 0 ] && [ -f "$CKPT/config.json" ] && made="written by transformers (benchmarks/scale/make_checkpoint.py, random init, BF16)"
    else
      echo "Python ${PYTHON:-(none)} has no torch + transformers + CUDA: the engine writes the checkpoint" >> "$SCALE_LOG"
    fi
    if [ -z "$made" ] && [ -n "$JAVA" ]; then
      rm -rf "$CKPT"
      run_phase "1.1B checkpoint (engine, ScaleCheckpoint)" "$SCALE_LOG" 60 170 "$JAVA" "${JVM_FLAGS[@]}" -cp "$CP" \
        dive.bench.gpu.ScaleCheckpoint "$CKPT"
      [ "$LAST_RC" = 0 ] && [ -f "$CKPT/config.json" ] && made="written by the engine (dive.bench.gpu.ScaleCheckpoint, random init, BF16)"
    fi
    SCALE_NOTES+=("checkpoint: ${made:-not made (see scale.log)}; $(( $(date +%s) - t0 )) s")
    note "1.1B checkpoint: ${made:-none} ($(du -sh "$CKPT" 2>/dev/null | cut -f1))"
  fi
  # the engine (in a dry run, without a GPU: its SKIPPED line)
  if [ -n "$JAVA" ]; then
    t=$(phase_timeout 110 100)
    run_phase "1.1B shape: engine (ScaleGpuBenchmark)" "$ENGINE_LOG" 110 100 "$JAVA" "${JVM_FLAGS[@]}" -cp "$CP" \
      dive.bench.gpu.ScaleGpuBenchmark "$CKPT" --gpu-name "${GPU_NAME:-unknown}" --budget-s $(( t > 30 ? t - 15 : 15 ))
    skipped_phase "$ENGINE_LOG"
  else
    record "1.1B shape: engine" "not run" 0 "no JDK"
    SCALE_NOTES+=("engine: not run (no JDK)")
  fi
  # the transformers peer (in a dry run: its SKIPPED line)
  if [ -n "$PYTHON" ]; then
    t=$(phase_timeout 70 80)
    run_phase "1.1B shape: transformers (hf_gpu_speed.py)" "$PEER_LOG" 70 80 "$PYTHON" benchmarks/peers/hf_gpu_speed.py \
      "$CKPT" --gpu-name "${GPU_NAME:-unknown}" --budget-s $(( t > 30 ? t - 15 : 15 ))
    skipped_phase "$PEER_LOG"
  else
    record "1.1B shape: transformers" "not run" 0 "no Python"
    SCALE_NOTES+=("transformers: not run (no Python)")
  fi
  grep -h '^SKIPPED \|^ERROR ' "$ENGINE_LOG" "$PEER_LOG" 2>/dev/null | while read -r line; do note "$line"; done
fi
rm -rf "$CKPT"

# ---------------------------------------------------------------- 5. benchmarks
# In groups, most important first, each under its own timeout and with its own JSON (JMH writes JSON only at the
# end of a run): when time runs short the later groups are cut, not the results already measured.
JMH_LOG="$OUT/jmh.log"
JMH_JSON="$OUT/jmh-results.json"
: > "$JMH_LOG"
rm -f "$JMH_JSON"
if [ -n "${DIVE_GPU_JMH:-}" ]; then
  JMH_GROUPS=("$DIVE_GPU_JMH 330 25")
else
  #       regex                                                     max s  reserve s (for the groups after it)
  JMH_GROUPS=("dive.bench.gpu.(GroupedMatmul|CublasGemm)GpuBenchmark    80     40"
          "dive.bench.gpu.MoeLayerGpuBenchmark                       40     25"
          "dive.bench.gpu.RoutingGpuBenchmark                        40     10"
          "dive.bench.gpu.CalibrationGpuBenchmark                    25      5")
fi
JSONS=()
if [ -n "$JAVA" ]; then
  JMH=("$JAVA" "${JVM_FLAGS[@]}" -cp "$CP" org.openjdk.jmh.Main)
  run_phase "JMH: list" "$JMH_LOG" 20 75 "${JMH[@]}" -l "dive.bench.gpu."
  g=0
  for group in "${JMH_GROUPS[@]}"; do
    read -r regex max reserve <<< "$group"
    g=$((g + 1))
    json="$WORK/jmh-$g.json"
    if [ "$DRY" = 1 ]; then
      # one short fork per benchmark (first parameter values only): each must print SKIPPED and exit cleanly
      run_phase "JMH dry run: $regex" "$JMH_LOG" "$max" "$reserve" "${JMH[@]}" "$regex" -f 1 -wi 0 -i 1 -r 100ms \
        -p rows=8192 -p expertWidth=1024 -p routing=balanced -p tokens=8192 -foe true -jvm "$JAVA" -rf json -rff "$json"
    else
      # a failing benchmark must not stop the others (-foe false): the JSON holds every result that completed
      run_phase "JMH: $regex" "$JMH_LOG" "$max" "$reserve" "${JMH[@]}" "$regex" -f 1 -wi 2 -w 500ms -i 3 -r 500ms \
        -foe false -jvm "$JAVA" -rf json -rff "$json"
    fi
    skipped_phase "$JMH_LOG" "${regex#dive.bench.gpu.}"
    [ -s "$json" ] && JSONS+=("$json")
  done
  grep -ho 'SKIPPED [A-Za-z]*: .*' "$JMH_LOG" | sort -u | head -8 | while read -r line; do note "$line"; done
else
  record "JMH" "not run" 0 "no JDK"
fi

# ---------------------------------------------------------------- 6. report
REPORT="$WORK/gpu-results.md"
# the JMH table (and the merged JSON the 1.1B table reads), then the 1.1B table
BENCH_MD=""
if [ -n "$JAVA" ] && [ "${#JSONS[@]}" -gt 0 ]; then
  if timeout 60 "$JAVA" "${JVM_FLAGS[@]}" -cp "$CP" dive.bench.gpu.GpuBenchReport --out "$WORK/bench.md" \
       --merged "$JMH_JSON" "${JSONS[@]}" 2>"$WORK/report.err"; then
    BENCH_MD="$(cat "$WORK/bench.md")"
  else
    BENCH_MD="The report generator failed: $(tail -3 "$WORK/report.err")"
  fi
else
  BENCH_MD="No JMH results (see jmh.log)."
fi
SCALE_MD=""
if [ "${DIVE_GPU_SCALE:-1}" = 0 ]; then
  SCALE_MD="Not run (DIVE_GPU_SCALE=0)."
elif [ -n "$JAVA" ]; then
  SCALE_ARGS=(--engine "$ENGINE_LOG" --peer "$PEER_LOG" --out "$WORK/scale.md")
  [ -s "$JMH_JSON" ] && SCALE_ARGS+=(--jmh "$JMH_JSON")
  for n in "${SCALE_NOTES[@]}"; do SCALE_ARGS+=(--note "$n"); done
  if timeout 60 "$JAVA" "${JVM_FLAGS[@]}" -cp "$CP" dive.bench.gpu.ScaleReport "${SCALE_ARGS[@]}" 2>"$WORK/scale-report.err"; then
    SCALE_MD="$(cat "$WORK/scale.md")"
  else
    SCALE_MD="The 1.1B table generator failed: $(tail -3 "$WORK/scale-report.err")"
  fi
else
  SCALE_MD="Not measured: no JDK."
fi
{
  echo "# dive GPU run — $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ "$DRY" = 1 ] && echo ' (DRY RUN: plumbing only, no GPU)')"
  echo
  echo "- GPU: $GPU_LINE"
  echo "- nvcc: $NVCC_LINE"
  echo "- JDK: $JAVA_VERSION"
  grep -h -m1 '^GPU: ' "$JMH_LOG" 2>/dev/null | sed 's/^GPU: /- device (from the benchmarks): /'
  [ -f "$BUNDLE/BUNDLE.txt" ] && echo "- bundle: $(head -1 "$BUNDLE/BUNDLE.txt")"
  echo
  echo "## Phases"
  echo
  echo "| phase | result | seconds | detail |"
  echo "|---|---|---:|---|"
  printf '%s\n' "${PHASES[@]}"
  echo
  echo "## Tests"
  echo
  if grep -q 'tests successful\|tests found' "$JUNIT_LOG" 2>/dev/null; then
    echo '```'
    grep -E '^=====|tests (found|successful|failed|aborted|skipped)|containers (failed|aborted)' "$JUNIT_LOG"
    echo '```'
    grep -E '✘|■|=> ' "$JUNIT_LOG" | head -40 | sed 's/^/    /'
  else
    echo "No JUnit summary (see junit.log)."
  fi
  echo
  echo "## 1.1B shape (TinyLlama): engine vs transformers"
  echo
  if [ "$DRY" = 1 ] || [ "$NO_GPU" = 1 ]; then
    echo "**no GPU**: nothing was measured at this shape; the engine and the peer only proved that they skip cleanly."
    echo
  fi
  echo "$SCALE_MD"
  echo
  echo "## Benchmarks"
  echo
  if [ "$DRY" = 1 ] || [ -z "$GPU_LINE" ] || [[ "$GPU_LINE" == "no GPU"* ]]; then
    echo "**no GPU**: the benchmarks only proved that they skip cleanly; their numbers are not measurements."
    echo
  fi
  grep -ho 'SKIPPED [A-Za-z]*: .*' "$JMH_LOG" 2>/dev/null | sort -u | sed 's/^/- /'
  grep -h '^MoE routing: ' "$JMH_LOG" 2>/dev/null | sort -u | sed 's/^/- /'
  # with -foe false JMH goes on after a failing benchmark and exits 0: list the failures here
  if grep -q '<failure>' "$JMH_LOG" 2>/dev/null; then
    echo
    echo "**Benchmark failures** (details in jmh.log):"
    echo
    grep -h -B1 -A4 '<failure>\|^# Benchmark: ' "$JMH_LOG" | grep -E '^# Benchmark: |^# Parameters: |Exception|Error' \
      | grep -B2 -E 'Exception|Error' | grep -v '^--$' | head -30 | sed 's/^/    /'
  fi
  echo
  echo "$BENCH_MD"
  echo
  echo "Total: $(( $(date +%s) - START_S )) s of the ${BUDGET_S} s budget."
} > "$REPORT"
mv -f "$REPORT" "$OUT/gpu-results.md.tmp" && mv -f "$OUT/gpu-results.md.tmp" "$OUT/gpu-results.md"
note "wrote $OUT/gpu-results.md"
rm -rf "$WORK"
exit 0

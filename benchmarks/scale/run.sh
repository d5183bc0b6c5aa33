#!/usr/bin/env bash
# The scale benchmark: every command on a checkpoint of the paper's size (TinyLlama-1.1B's shape, BF16, random init,
# written by make_checkpoint.py with transformers: no download), each timed with /usr/bin/time -v (wall, peak RSS),
# beside transformers (F32, 2 threads) where it has an equivalent; writes OUT/scale.md and OUT/scale.json.
#   benchmarks/scale/run.sh [--out DIR] [--only "inspect ppl ..."]      (default DIR: target/scale)
# Commands, in order: inspect ppl generate bench eval affinity train convert compare. Budgets are the smallest that run
# every step (benchmarks/scale/tiny.yaml); the convert row runs all eight methods. Takes about 1.7 h on 2 cores.
# PYTHON selects an interpreter with torch + transformers + tokenizers (default: src/test/python/setup-venv.sh's venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/target/scale"; ONLY="inspect ppl generate bench eval affinity train convert compare"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;; --only) ONLY="$2"; shift 2 ;;
    *) echo "scale/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "scale/run.sh: /usr/bin/time is missing (Debian: apt-get install time)" >&2; exit 1; }
PYTHON="${PYTHON:-$("$ROOT/src/test/python/setup-venv.sh")/bin/python}"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
MODEL="$OUT/model"
[ -f "$MODEL/config.json" ] || "$PYTHON" "$ROOT/benchmarks/scale/make_checkpoint.py" "$MODEL" >&2
"$ROOT/dive" build
DATASETS="java-base,python-core,man2,bible-nt,spdx-osi,pari-manual,gcide,linux-docs-core"
SAMPLE="$ROOT/src/main/resources/dive/default/sample.txt"
RESULTS="$OUT/results.jsonl"; touch "$RESULTS"
for cmd in $ONLY; do  # a rerun of some commands replaces their rows and keeps the others
  grep -v "\"command\": \"$cmd\"" "$RESULTS" > "$RESULTS.tmp" || true; mv "$RESULTS.tmp" "$RESULTS"
done

# measure NAME WHO CMD...: runs CMD under /usr/bin/time -v, records wall seconds and peak RSS (and the exit status)
measure() {
  local name="$1" who="$2"; shift 2
  echo "scale: $name ($who) ..." >&2
  local rc=0
  /usr/bin/time -v -o "$OUT/$name-$who.time" "$@" > "$OUT/$name-$who.out" 2> "$OUT/$name-$who.err" || rc=$?
  "$PYTHON" - "$OUT/$name-$who.time" "$name" "$who" "$rc" >> "$RESULTS" <<'PY'
import json, re, sys
t = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.*)", t).group(1).split(":")
seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
print(json.dumps({"command": sys.argv[2], "who": sys.argv[3], "exit": int(sys.argv[4]), "wall_s": round(seconds, 1), "peak_rss_bytes": rss}))
PY
  [ "$rc" = 0 ] || echo "scale: $name ($who) exited $rc: $(tail -1 "$OUT/$name-$who.err")" >&2
}

for cmd in $ONLY; do
  case "$cmd" in
    inspect) measure inspect dive "$ROOT/dive" inspect "$MODEL" ;;
    ppl)
      measure ppl dive "$ROOT/dive" ppl "$MODEL" --text "$SAMPLE" --window 128 --json -q
      measure ppl transformers "$PYTHON" "$ROOT/src/test/python/check_llama_ppl.py" "$MODEL" "$SAMPLE" 128 ;;
    generate)
      measure generate dive "$ROOT/dive" generate "$MODEL" --prompt "The quick brown fox" --max-tokens 32 -q ;;
    bench)
      measure bench dive "$ROOT/dive" bench "$MODEL" --prompt-len 128 --gen 16 --repeats 3 --threads 2 --json -q
      measure bench transformers "$PYTHON" "$ROOT/benchmarks/peers/hf_llama.py" "$MODEL" --prompt-len 128 --gen 16 --repeats 3 --threads 2 ;;
    eval) measure eval dive "$ROOT/dive" eval "$MODEL" --datasets "$DATASETS" --window 128 --max-windows 2 --json -q ;;
    affinity)
      rm -rf "$OUT/affinity"
      measure affinity dive "$ROOT/dive" affinity "$MODEL" --datasets "$DATASETS" --experts 4 --windows 2 --eval-windows 1 --seqlen 128 --out "$OUT/affinity" -q ;;
    train)
      cat > "$OUT/lora.yaml" <<YAML
# ./dive train on the 1.1B-shaped checkpoint: LoRA r 8 on every projection + RMSNorms, batch 2 x 128, 4 steps
model: {checkpoint: $MODEL}
tokenizer: $MODEL/tokenizer.json
data: {corpus: bundled, datasets: [${DATASETS//,/, }], eval_windows: 1}
schedule: {kind: constant, lr: 1.0e-4}
optimizer: {weight_decay: 0.0}
batch_size: 2
seq_len: 128
max_steps: 4
lora: {r: 8, alpha: 16, dropout: 0.1, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
train: ["*.lora_*", "*norm.weight"]
YAML
      rm -rf "$OUT/train"
      measure train dive "$ROOT/dive" train --recipe "$OUT/lora.yaml" --out "$OUT/train"
      measure train transformers "$PYTHON" "$ROOT/benchmarks/peers/hf_lora_step.py" "$MODEL" --batch 2 --seq-len 128 --steps 3 ;;
    convert)
      rm -rf "$OUT/convert"
      measure convert dive "$ROOT/dive" convert "$MODEL" --experts 4 --top-k 1 --ratio 0.5 --recipe "$ROOT/benchmarks/scale/tiny.yaml" --out "$OUT/convert" ;;
    compare)
      sed 's/^methods:.*/methods: [dive, llm_pruner]/; /^seed:/d; s/^/  /' "$ROOT/benchmarks/scale/tiny.yaml" | grep -v '^  #' > "$OUT/convert-indented.yaml"
      { echo "settings:"; echo "  - {experts: 4, top_k: 1, ratio: 0.5}"; echo "seeds: [0]"; echo "convert:"; cat "$OUT/convert-indented.yaml"; } > "$OUT/plan.yaml"
      rm -rf "$OUT/compare"
      measure compare dive "$ROOT/dive" compare "$MODEL" --plan "$OUT/plan.yaml" --out "$OUT/compare" ;;
    *) echo "scale/run.sh: unknown command $cmd" >&2; exit 2 ;;
  esac
done
"$PYTHON" "$ROOT/benchmarks/scale/table.py" "$OUT"

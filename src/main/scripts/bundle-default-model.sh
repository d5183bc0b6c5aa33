#!/usr/bin/env bash
# Bundles the base model of a training run (src/main/recipes/base-model.yaml) as the embedded default:
# exports the run's latest checkpoint (BF16 HF folder), copies it with the training log and loss curve into
# src/main/resources/dive/default/, and scores it per dataset on the held-out EVAL splits (eval.json).
#   src/main/scripts/bundle-default-model.sh RUN_DIR [CORPUS_DIR (default target/corpus)]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
RUN="${1:?usage: bundle-default-model.sh RUN_DIR [CORPUS_DIR]}"
CORPUS="${2:-$ROOT/target/corpus}"
DEST="$ROOT/src/main/resources/dive/default"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
"$ROOT/dive" train --recipe "$ROOT/src/main/recipes/base-model.yaml" --out "$RUN" --export-latest "$TMP/model" -q
"$ROOT/dive" eval "$TMP/model" --data "$CORPUS" --json -q > "$TMP/eval.json"
for f in config.json model.safetensors tokenizer.json; do cp "$TMP/model/$f" "$DEST/$f"; done
cp "$RUN/train-log.jsonl" "$DEST/train-log.jsonl"
cp "$RUN/loss.png" "$DEST/loss.png"
cp "$TMP/eval.json" "$DEST/eval.json"
python3 - "$DEST/eval.json" "$RUN/checkpoints/latest" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))
print("checkpoint:", open(sys.argv[2]).read().strip())
print("| dataset | held-out ppl |\n|---|---:|")
for name, r in ev.items():
    print(f"| {name} | {r['ppl']:.2f} |")
PY

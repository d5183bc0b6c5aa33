#!/usr/bin/env bash
# Serving load: starts `./dive serve MODEL_DIR` on a free port, drives it with 1, 4, 16 and 64 concurrent streaming
# clients (dive.bench.ServeLoad: fixed prompt, greedy, MAX_TOKENS new tokens, REQUESTS per client), prints the table
# (aggregate tokens/s, its ratio to one client, p50/p99 time to first token and inter-token latency) and JSON lines.
#   benchmarks/serve/run.sh MODEL_DIR [--clients 1,4,16,64] [--requests 2] [--max-tokens 64] [--max-batch 64]
# e.g. the bundled model: benchmarks/serve/run.sh src/main/resources/dive/default
#      its converted Mixtral: ./dive demo --out OUT, then benchmarks/serve/run.sh OUT/model
#      the 1.1B shape: python benchmarks/scale/make_checkpoint.py DIR, then benchmarks/serve/run.sh DIR --max-tokens 16
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ $# -ge 1 ] || { echo "usage: benchmarks/serve/run.sh MODEL_DIR [--clients LIST] [--requests N] [--max-tokens N] [--max-batch N]" >&2; exit 2; }
MODEL="$1"; shift
CLIENTS=1,4,16,64; REQUESTS=2; MAX_TOKENS=64; MAX_BATCH=64
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;; --requests) REQUESTS="$2"; shift 2 ;;
    --max-tokens) MAX_TOKENS="$2"; shift 2 ;; --max-batch) MAX_BATCH="$2"; shift 2 ;;
    *) echo "serve/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
"$ROOT/dive" build
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOG="$(mktemp)"
"$ROOT/dive" serve "$MODEL" --port "$PORT" --model-name bench --max-batch "$MAX_BATCH" --max-queue 1024 -q 2> "$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "serve/run.sh: the server did not start:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.5
done
JAVA=""
for c in "${DIVE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25* /usr/lib/jvm/java-25* /usr/lib/jvm/jdk-25*; do
  [ -n "$c" ] && [ -x "$c/bin/java" ] && "$c/bin/java" -version 2>&1 | grep -q 'version "2[5-9]' && { JAVA="$c/bin/java"; break; }
done
[ -n "$JAVA" ] || { echo "serve/run.sh: no JDK 25 found (set JAVA_HOME to one)" >&2; exit 1; }
echo "model $MODEL, $(date -u +%FT%TZ), clients $CLIENTS × $REQUESTS requests, $MAX_TOKENS new tokens, max batch $MAX_BATCH"
"$JAVA" -cp "$ROOT/target/dive.jar" dive.bench.ServeLoad --url "http://127.0.0.1:$PORT" --model bench --clients "$CLIENTS" \
  --requests "$REQUESTS" --max-tokens "$MAX_TOKENS"

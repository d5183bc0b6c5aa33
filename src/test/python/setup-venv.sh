#!/usr/bin/env bash
# Creates the Python reference environment (fixtures and peer benchmarks only; never product code)
# from the machine's local wheels. Usage: src/test/python/setup-venv.sh [DIR]  (default: .venv-ref)
# Offline: pip reads the local wheel folders; --retries 0 avoids waiting on an unreachable index.
set -euo pipefail
DIR="${1:-$(cd "$(dirname "$0")/../../.." && pwd)/.venv-ref}"
if [ -x "$DIR/bin/python" ] && "$DIR/bin/python" -c "import torch, transformers, safetensors, tokenizers, numpy" 2>/dev/null; then
  echo "$DIR"; exit 0
fi
python3 -m venv "$DIR"
"$DIR/bin/pip" install -q --retries 0 torch==2.13.0+cpu safetensors transformers==5.17.0 numpy tokenizers >&2
echo "$DIR"

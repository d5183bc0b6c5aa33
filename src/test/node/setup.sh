#!/usr/bin/env bash
# Installs the official openai client (the version pinned in package.json / package-lock.json) for the client test
# (openai-client-check.mjs, run by OpenAiNodeClientTest). Prints this folder on success; fails with a one-line reason.
set -euo pipefail
DIR="$(cd "$(dirname "$0")" && pwd)"
command -v node >/dev/null || { echo "node not found on PATH" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found on PATH" >&2; exit 1; }
export DIR
pinned="$(node -p 'require(process.env.DIR + "/package.json").dependencies.openai')"
installed="$(node -p 'try { require(process.env.DIR + "/node_modules/openai/package.json").version } catch { "" }')"
if [ "$installed" != "$pinned" ]; then
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || { echo "npm ci failed in $DIR (openai $pinned)" >&2; exit 1; }
fi
echo "$DIR"

#!/usr/bin/env bash
# Installs every source the corpus builder (./dive corpus build) reads: Debian packages and one npm package.
# Idempotent: packages already present are left as they are; safe to run again.
# Usage: sudo src/main/scripts/install-corpus-sources.sh [NPM_CACHE_DIR]
#   NPM_CACHE_DIR  where spdx-license-list is installed (default: $DIVE_CORPUS_NPM or ~/.cache/dive/npm);
#                  pass the same directory to `dive corpus build --npm-dir`.
set -euo pipefail

NPM_DIR="${1:-${DIVE_CORPUS_NPM:-$HOME/.cache/dive/npm}}"
SPDX_VERSION=6.12.0

# Pinned where Debian 12 keeps the version stable; python3.11-doc and linux-doc-6.1 follow security
# updates (old builds leave the mirror), so they are unpinned and the builder records the installed version.
PACKAGES=(
  bible-kjv-text=4.38
  bible-kjv=4.38
  manpages=6.03-2
  manpages-dev=6.03-2
  pari-doc=2.15.2-1
  dict-foldoc=20230119-1
  dict-gcide=0.48.5+nmu2
  fortunes=1:1.99.1-7.3
  fortunes-min=1:1.99.1-7.3
  python3.11-doc
  linux-doc-6.1
  libpython3.11-stdlib
  libpython3.11-minimal
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for spec in "${PACKAGES[@]}"; do
  name="${spec%%=*}"
  if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$spec")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-corpus-sources: installing ${missing[*]}"
  $SUDO apt-get update -q
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    echo "install-corpus-sources: pinned versions not available, retrying unpinned" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]%%=*}"
  fi
else
  echo "install-corpus-sources: Debian packages already installed"
fi

if [ -f "$NPM_DIR/node_modules/spdx-license-list/package.json" ] &&
   grep -q "\"version\": \"$SPDX_VERSION\"" "$NPM_DIR/node_modules/spdx-license-list/package.json"; then
  echo "install-corpus-sources: spdx-license-list@$SPDX_VERSION already in $NPM_DIR"
else
  mkdir -p "$NPM_DIR"
  npm install --no-audit --no-fund --prefix "$NPM_DIR" "spdx-license-list@$SPDX_VERSION"
fi

echo "install-corpus-sources: done (npm dir: $NPM_DIR)"

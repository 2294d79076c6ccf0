#!/usr/bin/env bash
# One command from a fresh clone to a running proxy: checks Node, installs
# xdelta3 through the system package manager when it is missing, installs the
# npm dependencies, builds, and starts the proxy on 127.0.0.1:9000 with the
# filesystem backend in ./data. Extra arguments go to the proxy (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
if ! command -v xdelta3 >/dev/null 2>&1; then
  echo "setup: installing xdelta3"
  if command -v apt-get >/dev/null 2>&1; then
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq xdelta3
  elif command -v dnf >/dev/null 2>&1; then
    "${sudo_cmd[@]}" dnf install -y xdelta
  elif command -v brew >/dev/null 2>&1; then
    brew install xdelta
  else
    echo "setup: install xdelta3 with your package manager, then run this again." >&2
    exit 1
  fi
fi

npm ci --no-audit --no-fund
exec npm start -- "$@"

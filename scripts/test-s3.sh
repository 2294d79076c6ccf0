#!/usr/bin/env bash
# The end-to-end tests again, on the S3 backend against moto_server (an
# independent S3 server, Python package moto). Without moto_server they are
# skipped with a message, except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! moto_server --help >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "test:s3: moto_server is required under CI=true" >&2
    exit 1
  fi
  echo "test:s3: skipped: moto_server is not installed (pip install 'moto[server]')"
  exit 0
fi
DGP_TEST_BACKEND=s3 exec npx tap --disable-coverage test/e2e-*.test.ts

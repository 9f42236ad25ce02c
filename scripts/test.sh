#!/usr/bin/env bash
# Every test: the Rust suite (unit, integration, CLI), the cohort workflow (Snakemake, set up
# once in workflow/.venv), then the browser client in headless chromium (WebGPU on SwiftShader
# and the wasm CPU fallback). Uses only the repository's own fixtures. Screenshots land in
# target/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

cargo test --release

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if root_with_apt; then
    apt-get install -y python3-venv
  else
    echo "test: the workflow test needs python3 with venv (Debian: sudo apt-get install python3-venv)" >&2
    exit 1
  fi
fi
tests/workflow/run.sh
scripts/build-web.sh

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if root_with_apt; then
    apt-get install -y chromium
  else
    echo "test: the browser tests need chromium; install it (Debian: sudo apt-get install chromium)" \
      "or point CHROMIUM at a Chromium binary" >&2
    exit 1
  fi
fi
CHROMIUM=$chromium node --test --test-concurrency=1 tests/browser/

#!/usr/bin/env bash
# Every test: the Rust suite (unit, integration, CLI), then the browser client in headless
# chromium (WebGPU on SwiftShader and the wasm CPU fallback). Uses only the repository's own
# fixtures. Screenshots land in target/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --release
scripts/build-web.sh

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y chromium
  else
    echo "test: the browser tests need chromium; install it (Debian: sudo apt-get install chromium)" \
      "or point CHROMIUM at a Chromium binary" >&2
    exit 1
  fi
fi
CHROMIUM=$chromium node --test --test-concurrency=1 tests/browser/

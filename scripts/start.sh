#!/usr/bin/env bash
# From a fresh clone to the running app: builds the native binary and the browser client, then
# serves the page (with the default weights, weights/celnet-pcam.bpk) on http://127.0.0.1:${PORT:-8080}/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
scripts/build-web.sh
exec target/release/celnet serve --port "${PORT:-8080}" "$@"

#!/usr/bin/env bash
# Builds the browser client's WebAssembly into pkg/: the crate for wasm32 (profile `web`, SIMD),
# JavaScript bindings with wasm-bindgen (--target web), wasm-opt, and compressed copies of both
# and of the default weights.
# Installs what it needs once: the wasm32 target, the wasm-bindgen CLI matching Cargo.lock,
# npm's binaryen.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# The CLI must be exactly the wasm-bindgen version in Cargo.lock.
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "build-web: installing wasm-bindgen-cli $want (once, a few minutes)"
  # Not --locked: one of its locked dependencies is no longer on crates.io.
  cargo install wasm-bindgen-cli --version "$want"
fi

# binaryen from npm: Debian's wasm-opt (108) breaks wasm-bindgen output.
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi

# The `web` profile (Cargo.toml): release, with the WebGPU kernel generators optimised for size.
cargo build --profile web --lib --target wasm32-unknown-unknown
raw=${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/web/celnet.wasm
out=target/pkg-staging
rm -rf "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" "$raw"
# WASM_OPT=-Oz (or -O3, ...) picks another level; WASM_OPT=none skips it (quicker builds).
level=${WASM_OPT:--O2}
if [ "$level" != none ]; then
  node_modules/.bin/wasm-opt "$level" "$out/celnet_bg.wasm" -o "$out/celnet_bg.opt.wasm"
  mv "$out/celnet_bg.opt.wasm" "$out/celnet_bg.wasm"
fi
# Compressed copies beside each file (and beside the default weights, which the page fetches),
# which `celnet serve` sends to browsers that accept them.
node -e '
  const fs = require("fs"), zlib = require("zlib");
  for (const file of process.argv.slice(1)) {
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file + ".gz", zlib.gzipSync(bytes, { level: 9 }));
    fs.writeFileSync(file + ".br", zlib.brotliCompressSync(bytes, { params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
    } }));
  }' "$out/celnet_bg.wasm" "$out/celnet.js" weights/celnet-pcam.bpk
rm -rf pkg
mv "$out" pkg
printf 'build-web: pkg/celnet_bg.wasm %s bytes (%s gzipped, %s brotli)\n' \
  "$(stat -c %s pkg/celnet_bg.wasm)" "$(stat -c %s pkg/celnet_bg.wasm.gz)" \
  "$(stat -c %s pkg/celnet_bg.wasm.br)"

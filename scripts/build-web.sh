#!/usr/bin/env bash
# Builds the browser client's WebAssembly into pkg/: the crate for wasm32 (release, SIMD),
# JavaScript bindings with wasm-bindgen (--target web), then wasm-opt. Installs what it needs
# once: the wasm32 target, the wasm-bindgen CLI matching Cargo.lock, npm's binaryen.
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

cargo build --release --lib --target wasm32-unknown-unknown
raw=target/wasm32-unknown-unknown/release/celnet.wasm
out=target/pkg-staging
rm -rf "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" "$raw"
node_modules/.bin/wasm-opt -O2 "$out/celnet_bg.wasm" -o "$out/celnet_bg.opt.wasm"
mv "$out/celnet_bg.opt.wasm" "$out/celnet_bg.wasm"
rm -rf pkg
mv "$out" pkg
printf 'build-web: pkg/celnet_bg.wasm %s bytes (%s gzipped)\n' \
  "$(stat -c %s pkg/celnet_bg.wasm)" "$(gzip -9 -c pkg/celnet_bg.wasm | wc -c)"

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
# Built twice: for every browser with WebAssembly SIMD, and with the `relaxed-simd` feature,
# whose CPU kernels use relaxed SIMD's fused multiply-add; the page loads the second where the
# browser validates it. The dependencies are shared (only this crate is compiled twice), and so
# is the JavaScript binding.
target=${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/web
out=target/pkg-staging
rm -rf "$out" "$out-relaxed"
cargo build --profile web --lib --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir "$out" "$target/celnet.wasm"
cargo build --profile web --lib --target wasm32-unknown-unknown --features relaxed-simd
wasm-bindgen --target web --no-typescript --out-dir "$out-relaxed" "$target/celnet.wasm"
# Equal but for wasm-bindgen's comments, which name each closure's index in the function table.
code() { grep -v '^ *// Cast intrinsic for' "$1"; }
if ! cmp -s <(code "$out/celnet.js") <(code "$out-relaxed/celnet.js"); then
  echo "build-web: the two builds' JavaScript bindings differ; the page needs them equal" >&2
  exit 1
fi
mv "$out-relaxed/celnet_bg.wasm" "$out/celnet_relaxed_bg.wasm"
rm -rf "$out-relaxed"
# WASM_OPT=-Oz (or -O3, ...) picks another level; WASM_OPT=none skips it (quicker builds).
level=${WASM_OPT:--O2}
if [ "$level" != none ]; then
  for wasm in celnet_bg celnet_relaxed_bg; do
    node_modules/.bin/wasm-opt "$level" --enable-relaxed-simd "$out/$wasm.wasm" -o "$out/$wasm.opt.wasm"
    mv "$out/$wasm.opt.wasm" "$out/$wasm.wasm"
  done
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
  }' "$out/celnet_bg.wasm" "$out/celnet_relaxed_bg.wasm" "$out/celnet.js" weights/celnet-pcam.bpk
rm -rf pkg
mv "$out" pkg
for wasm in celnet_bg celnet_relaxed_bg; do
  printf 'build-web: pkg/%s.wasm %s bytes (%s gzipped, %s brotli)\n' "$wasm" \
    "$(stat -c %s pkg/$wasm.wasm)" "$(stat -c %s pkg/$wasm.wasm.gz)" "$(stat -c %s pkg/$wasm.wasm.br)"
done

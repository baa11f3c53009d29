#!/usr/bin/env bash
# Builds the mxfed-wasm JS package into host-wasm/pkg/ (package name `mxfed-wasm`):
#   1. `mxfed-wasm` (this crate) and `mxfed-wasm-abi` (tests/wasm-abi, for the wasmtime
#      conformance test) for wasm32-unknown-unknown, with the Debian toolchain and
#      -Zbuild-std as in scripts/wasm-core.sh (see DEVELOPERS.md, "Building for wasm32");
#   2. the wasm-bindgen CLI of exactly the wasm-bindgen version in Cargo.lock, installed once
#      with `cargo install` into ~/.cache/mxfed/tools;
#   3. wasm-opt (npm package binaryen, a devDependency here) on the module;
#   4. the hand-written JS entries, types and package.json from host-wasm/js/.
# Idempotent: cargo rebuilds nothing when nothing changed, and steps 2-4 are skipped when
# their inputs' hash matches the stamp in pkg/.
#
# Outputs:
#   host-wasm/pkg/                          the package (`npm pack` it, or depend on the folder)
#   host-wasm/target/mxfed_wasm_abi.wasm    the C-ABI module (env MXFED_WASM_ABI in the tests)
#
# Env (optional): MXFED_WASM_RUSTC, MXFED_WASM_CARGO, MXFED_WASM_LINKER,
# MXFED_WASM_TARGET_DIR (as in scripts/wasm-core.sh); MXFED_TOOLS (default
# ~/.cache/mxfed/tools); MXFED_WASM_OPT_LEVEL (default -O3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

log() { printf 'host-wasm/build: %s\n' "$*"; }
die() { printf 'host-wasm/build: ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mxfed"
TOOLS="${MXFED_TOOLS:-$CACHE/tools}"
TARGET=wasm32-unknown-unknown
OPT_LEVEL="${MXFED_WASM_OPT_LEVEL:--O3}"

# ------------------------------------------------------------------ toolchain
WASM_RUSTC="${MXFED_WASM_RUSTC:-/usr/bin/rustc}"
WASM_CARGO="${MXFED_WASM_CARGO:-/usr/bin/cargo}"
[[ -x "$WASM_RUSTC" ]] || die "$WASM_RUSTC not found: run scripts/setup-deps.sh (Debian rustc-web) or set MXFED_WASM_RUSTC"
[[ -x "$WASM_CARGO" ]] || die "$WASM_CARGO not found: run scripts/setup-deps.sh (Debian cargo-web) or set MXFED_WASM_CARGO"
find_linker() {
    if [[ -n "${MXFED_WASM_LINKER:-}" ]]; then printf '%s\n' "$MXFED_WASM_LINKER"; return; fi
    if command -v wasm-ld >/dev/null 2>&1; then command -v wasm-ld; return; fi
    local c
    c="$(compgen -c wasm-ld- 2>/dev/null | grep -E '^wasm-ld-[0-9]+$' | sort -t- -k3 -n | tail -n1 || true)"
    if [[ -n "$c" ]]; then command -v "$c"; return; fi
    c="$(shopt -s nullglob; printf '%s\n' /usr/lib/llvm-*/bin/wasm-ld | sort -V | tail -n1)"
    [[ -n "$c" ]] && printf '%s\n' "$c"
}
WASM_LINKER="$(find_linker || true)"
[[ -n "$WASM_LINKER" ]] || die "no wasm-ld: run scripts/setup-deps.sh (Debian lld) or set MXFED_WASM_LINKER"
WASM_TARGET_DIR="${MXFED_WASM_TARGET_DIR:-$CACHE/wasm-target}"
mkdir -p "$WASM_TARGET_DIR"

# ------------------------------------------------------------- 1. cargo build
# Rustup's cargo brings Cargo.lock up to date first (it owns the file); the Debian cargo then
# only reads it (--locked), as scripts/wasm-core.sh does.
cargo metadata --format-version 1 >/dev/null || die "cargo metadata failed"
lock_before="$(sha256sum Cargo.lock)"
log "building mxfed-wasm and mxfed-wasm-abi for $TARGET ($("$WASM_RUSTC" -V))"
env RUSTC="$WASM_RUSTC" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$WASM_TARGET_DIR" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$WASM_LINKER" \
    CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_OPT_LEVEL=3 \
    "$WASM_CARGO" build --locked --release -p mxfed-wasm -p mxfed-wasm-abi \
    -Zbuild-std=std,panic_abort --target "$TARGET" \
    || die "wasm32 build failed"
[[ "$lock_before" == "$(sha256sum Cargo.lock)" ]] || die "the Debian cargo modified Cargo.lock"
OUT="$WASM_TARGET_DIR/$TARGET/release"
RAW="$OUT/mxfed_wasm.wasm"
[[ -f "$RAW" ]] || die "missing $RAW"
mkdir -p "$HERE/target"
cp -f "$OUT/mxfed_wasm_abi.wasm" "$HERE/target/mxfed_wasm_abi.wasm"
log "C-ABI module: host-wasm/target/mxfed_wasm_abi.wasm ($(stat -c %s "$HERE/target/mxfed_wasm_abi.wasm") bytes)"

# ------------------------------------------------------- 2. wasm-bindgen CLI
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[[ -n "$WB_VERSION" ]] || die "no wasm-bindgen in Cargo.lock"
WB="$TOOLS/wasm-bindgen-$WB_VERSION/bin/wasm-bindgen"
if [[ ! -x "$WB" ]] || [[ "$("$WB" --version 2>/dev/null)" != "wasm-bindgen $WB_VERSION" ]]; then
    log "installing wasm-bindgen-cli $WB_VERSION into $TOOLS (once; a few minutes)"
    cargo install --quiet wasm-bindgen-cli --version "=$WB_VERSION" --root "$TOOLS/wasm-bindgen-$WB_VERSION" \
        || die "cargo install wasm-bindgen-cli $WB_VERSION failed"
fi

# ------------------------------------------------------------- 3. npm tools
if [[ ! -x "$HERE/node_modules/.bin/wasm-opt" ]]; then
    log "npm ci in host-wasm (wasm-opt from binaryen, workerd)"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi
WASM_OPT="$HERE/node_modules/.bin/wasm-opt"

# ------------------------------------------------- 4. bindgen, opt, package
PKG="$HERE/pkg"
stamp_now="$( { sha256sum "$RAW"; echo "$WB_VERSION $OPT_LEVEL"; cat "$HERE"/js/*; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$PKG/.build-stamp" && "$(cat "$PKG/.build-stamp")" == "$stamp_now" && -f "$PKG/mxfed_wasm_bg.wasm" ]]; then
    log "pkg/ is up to date"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$WB" --target web --out-dir "$tmp" --out-name mxfed_wasm "$RAW" || die "wasm-bindgen failed"
    log "wasm-opt $OPT_LEVEL"
    "$WASM_OPT" "$OPT_LEVEL" --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
        --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
        "$tmp/mxfed_wasm_bg.wasm" -o "$tmp/opt.wasm" || die "wasm-opt failed"
    mv "$tmp/opt.wasm" "$tmp/mxfed_wasm_bg.wasm"
    rm -rf "$PKG"
    mkdir -p "$PKG"
    cp "$tmp/mxfed_wasm.js" "$tmp/mxfed_wasm.d.ts" "$tmp/mxfed_wasm_bg.wasm" "$PKG/"
    cp "$HERE"/js/* "$PKG/"
    printf '%s\n' "$stamp_now" > "$PKG/.build-stamp"
fi
raw_size="$(stat -c %s "$PKG/mxfed_wasm_bg.wasm")"
gz_size="$(gzip -9 -c "$PKG/mxfed_wasm_bg.wasm" | wc -c)"
log "module: $raw_size bytes, $gz_size bytes gzip -9 (budget 1048576)"
((gz_size <= 1048576)) || die "gzip-compressed module is over the 1 MiB budget"
log "OK: host-wasm/pkg (mxfed-wasm)"

#!/usr/bin/env bash
# Checks that mxfed-core stays a pure, portable crate:
#   1. `cargo tree -p mxfed-core -e normal` (rustup cargo; host and wasm32
#      targets) must not contain any io/runtime/FFI crate (see FORBIDDEN);
#   2. mxfed-core must build for wasm32-unknown-unknown.
#
# rustup here has only the x86_64 target and cannot download others, so the
# wasm32 build uses Debian's rustc-web/cargo-web with -Zbuild-std (std is
# compiled from the rust-web-src sources in rustc's sysroot) and lld's wasm-ld
# as the linker. scripts/setup-deps.sh installs those packages.
#
# Env (all optional):
#   MXFED_WASM_RUSTC       rustc to build with        (default: /usr/bin/rustc)
#   MXFED_WASM_CARGO       cargo to build with        (default: /usr/bin/cargo)
#   MXFED_WASM_LINKER      wasm linker                (default: wasm-ld on PATH,
#                          else the newest wasm-ld-NN, else /usr/lib/llvm-*/bin/wasm-ld)
#   MXFED_WASM_TARGET_DIR  cargo target dir           (default: ~/.cache/mxfed/wasm-target)
#   MXFED_WASM_PROFILE     cargo profile              (default: release)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET=wasm32-unknown-unknown
CRATE=mxfed-core
FORBIDDEN='tokio|axum|hyper|pyo3|wasm-bindgen|getrandom|reqwest|rusqlite|mio'

log() { printf 'wasm-core: %s\n' "$*"; }
die() { printf 'wasm-core: ERROR: %s\n' "$*" >&2; exit 1; }

# rustup's cargo first on PATH (Debian's lives in /usr/bin too).
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# ------------------------------------------------ 1. dependency purity check
# Runs first with rustup's cargo, which also brings Cargo.lock up to date, so
# that the Debian cargo below can use it with --locked and never rewrites it.
check_tree() {
    local label="$1"; shift
    local tree bad
    tree="$(cargo tree -p "$CRATE" -e normal --prefix none --format '{p}' "$@")" \
        || die "cargo tree ($label) failed"
    # "name vX.Y.Z ..." -> "name@X.Y.Z" for the forbidden names
    bad="$(awk -v re="^($FORBIDDEN)(-.*)?\$" '$1 ~ re { sub(/^v/, "", $2); print $1 "@" $2 }' <<<"$tree" | sort -u)"
    if [[ -n "$bad" ]]; then
        printf 'wasm-core: ERROR: %s normal dependencies (%s) include forbidden crates:\n' "$CRATE" "$label" >&2
        while read -r c; do printf '    %s\n' "$c"; done <<<"$bad" >&2
        printf 'wasm-core: the core must stay sans-io and portable; paths to them:\n' >&2
        while read -r c; do
            cargo tree -p "$CRATE" -e normal "$@" -i "$c" >&2 || true
        done <<<"$bad"
        exit 1
    fi
    log "dependency check ($label): OK, $(awk '{print $1}' <<<"$tree" | sort -u | wc -l) crates, none of: ${FORBIDDEN//|/ }"
}
check_tree host
check_tree "$TARGET" --target "$TARGET"

# ------------------------------------------------------- 2. toolchain lookup
WASM_RUSTC="${MXFED_WASM_RUSTC:-/usr/bin/rustc}"
WASM_CARGO="${MXFED_WASM_CARGO:-/usr/bin/cargo}"
[[ -x "$WASM_RUSTC" ]] || die "$WASM_RUSTC not found: run scripts/setup-deps.sh (Debian package rustc-web) or set MXFED_WASM_RUSTC"
[[ -x "$WASM_CARGO" ]] || die "$WASM_CARGO not found: run scripts/setup-deps.sh (Debian package cargo-web) or set MXFED_WASM_CARGO"

find_linker() {
    if [[ -n "${MXFED_WASM_LINKER:-}" ]]; then
        printf '%s\n' "$MXFED_WASM_LINKER"; return
    fi
    if command -v wasm-ld >/dev/null 2>&1; then
        command -v wasm-ld; return
    fi
    local c
    c="$(compgen -c wasm-ld- 2>/dev/null | grep -E '^wasm-ld-[0-9]+$' | sort -t- -k3 -n | tail -n1 || true)"
    if [[ -n "$c" ]]; then
        command -v "$c"; return
    fi
    c="$(shopt -s nullglob; printf '%s\n' /usr/lib/llvm-*/bin/wasm-ld | sort -V | tail -n1)"
    [[ -n "$c" ]] && printf '%s\n' "$c"
}
WASM_LINKER="$(find_linker || true)"
if [[ -z "$WASM_LINKER" ]] || ! command -v "$WASM_LINKER" >/dev/null 2>&1; then
    die "no wasm-ld found: run scripts/setup-deps.sh (Debian package lld) or set MXFED_WASM_LINKER"
fi

SYSROOT="$("$WASM_RUSTC" --print sysroot)" || die "$WASM_RUSTC --print sysroot failed"
RUST_SRC="$SYSROOT/lib/rustlib/src/rust/library"
[[ -f "$RUST_SRC/std/Cargo.toml" ]] \
    || die "no std sources at $RUST_SRC (needed by -Zbuild-std): install Debian package rust-web-src"

WASM_TARGET_DIR="${MXFED_WASM_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mxfed/wasm-target}"
PROFILE="${MXFED_WASM_PROFILE:-release}"
mkdir -p "$WASM_TARGET_DIR"

log "rustc:  $WASM_RUSTC ($("$WASM_RUSTC" -V))"
log "cargo:  $WASM_CARGO ($("$WASM_CARGO" -V))"
log "linker: $WASM_LINKER ($("$WASM_LINKER" --version 2>&1 | head -n1))"
log "std:    $RUST_SRC"
log "target dir: $WASM_TARGET_DIR"

# ------------------------------------------------------------- 3. the build
# RUSTC_BOOTSTRAP=1 unlocks -Zbuild-std on this stable toolchain. --locked keeps
# the Debian cargo from rewriting the workspace's Cargo.lock (rustup's cargo
# owns it). Nothing else is needed: rustc-web's sysroot is /usr, where
# rust-web-src links lib/rustlib/src/rust to the sources.
lock_before="$(sha256sum Cargo.lock 2>/dev/null || true)"
build=(
    env
    RUSTC="$WASM_RUSTC"
    RUSTC_BOOTSTRAP=1
    CARGO_TARGET_DIR="$WASM_TARGET_DIR"
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$WASM_LINKER"
    "$WASM_CARGO" build --locked --profile "$PROFILE" -p "$CRATE"
    "-Zbuild-std=std,panic_abort" --target "$TARGET"
)
log "running: ${build[*]}"
"${build[@]}" || die "wasm32 build of $CRATE failed"
lock_after="$(sha256sum Cargo.lock 2>/dev/null || true)"
[[ "$lock_before" == "$lock_after" ]] || die "the Debian cargo modified Cargo.lock"

profile_dir="$PROFILE"
[[ "$PROFILE" == dev ]] && profile_dir=debug
rlib="$WASM_TARGET_DIR/$TARGET/$profile_dir/lib${CRATE//-/_}.rlib"
[[ -f "$rlib" ]] || die "build reported success but $rlib is missing"
log "OK: $CRATE builds for $TARGET ($rlib)"

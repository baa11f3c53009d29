#!/usr/bin/env bash
# Idempotent installer for everything scripts/test.sh needs:
#   1. Debian's wasm-capable Rust toolchain (rustc-web, cargo-web, rust-web-src)
#      and lld (wasm-ld), used by scripts/wasm-core.sh;
#   2. the rustup components rustfmt and clippy;
#   3. a project-local Python venv at .venv with scripts/requirements-test.txt.
# Fast on a warm machine: apt is skipped when the packages are installed, and
# pip is skipped while the requirements file is unchanged.
#
# Env:
#   MXFED_SKIP_APT=1   do not touch apt (bring your own wasm toolchain; see
#                      the MXFED_WASM_* variables in scripts/wasm-core.sh)
#   MXFED_VENV         venv location (default: <repo>/.venv)
#   PYTHON             interpreter used to create the venv (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf 'setup-deps: %s\n' "$*"; }
die() { printf 'setup-deps: ERROR: %s\n' "$*" >&2; exit 1; }

# Prefer rustup's cargo/rustc over Debian's /usr/bin ones.
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# ---------------------------------------------------------------- 1. apt
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld)

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

if [[ "${MXFED_SKIP_APT:-0}" == 1 ]]; then
    log "apt: skipped (MXFED_SKIP_APT=1)"
else
    command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script installs the wasm toolchain from Debian packages; set MXFED_SKIP_APT=1 to skip"
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "apt: ${APT_PACKAGES[*]} already installed"
    else
        SUDO=()
        if [[ "$(id -u)" != 0 ]]; then
            command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install ${missing[*]}"
            SUDO=(sudo)
        fi
        log "apt: missing ${missing[*]}; running apt-get update"
        # Wait for a dpkg lock held by another apt run instead of failing.
        APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
        "${SUDO[@]}" "${APT[@]}" update -q
        log "apt: installing ${APT_PACKAGES[*]}"
        "${SUDO[@]}" "${APT[@]}" install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
        for p in "${APT_PACKAGES[@]}"; do
            pkg_installed "$p" || die "apt: $p still not installed"
        done
    fi
fi

# ------------------------------------------------------ 2. rustup components
command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH"
need_components=()
cargo fmt --version >/dev/null 2>&1 || need_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || need_components+=(clippy)
if ((${#need_components[@]} == 0)); then
    log "rustup: rustfmt and clippy present ($(cargo fmt --version 2>/dev/null); $(cargo clippy --version 2>/dev/null))"
else
    command -v rustup >/dev/null 2>&1 || die "missing ${need_components[*]} and no rustup to add them"
    log "rustup: adding ${need_components[*]}"
    rustup component add "${need_components[@]}" \
        || die "rustup component add ${need_components[*]} failed (offline?); install them by other means"
fi

# ------------------------------------------------------------ 3. Python venv
VENV="${MXFED_VENV:-$ROOT/.venv}"
REQ="$ROOT/scripts/requirements-test.txt"
STAMP="$VENV/.mxfed-requirements.sha256"
PY_BOOT="${PYTHON:-python3}"

[[ -f "$REQ" ]] || die "$REQ not found"
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "venv: $VENV is broken; recreating"
    rm -rf "$VENV"
fi
if [[ ! -d "$VENV" ]]; then
    command -v "$PY_BOOT" >/dev/null 2>&1 || die "$PY_BOOT not found"
    log "venv: creating $VENV with $("$PY_BOOT" --version 2>&1)"
    "$PY_BOOT" -m venv "$VENV"
fi

# The stamp covers the requirements file and the venv's interpreter version.
want="$( { sha256sum <"$REQ"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" == "$have" ]]; then
    log "venv: requirements up to date ($VENV)"
else
    log "venv: pip install -r scripts/requirements-test.txt"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ"
    printf '%s\n' "$want" >"$STAMP"
fi
log "venv: $("$VENV/bin/python" --version) at $VENV/bin/python"
log "done"

#!/usr/bin/env bash
# The mxfed test command: ./scripts/test.sh (from anywhere; it cds to the repo).
#
# Stages:
#   setup-deps  scripts/setup-deps.sh (apt wasm toolchain, rustfmt/clippy, .venv)
#   fmt         cargo fmt --all -- --check
#   clippy      cargo clippy --workspace --all-targets -- -D warnings
#   test        cargo test --workspace            (MXFED_PYTHON exported)
#   wasm-core   scripts/wasm-core.sh              (dependency check + wasm32 build)
#   test.d/*    every executable scripts/test.d/*.sh, in sorted order
#
# Env:
#   CARGO_TARGET_DIR  cargo target dir (default: ~/.cache/mxfed/target)
#   MXFED_PYTHON      Python for differential tests (default: .venv/bin/python)
#   MXFED_FAIL_FAST=1 stop at the first failing stage (default: run them all)
#   CARGO_INCREMENTAL incremental compilation (default: 0; its caches doubled the target dir)
#   MXFED_MIN_FREE_GB free disk wanted before building (default: 12); below it the target
#                     dir's stale parts are removed, then the whole target dir (it is a cache)
#   MXFED_STAGE_TIMEOUT seconds one stage may run before it is stopped and failed (default: 2400)
#   MXFED_DEADLINE    seconds the whole run may take (default: 5000, under CI's 5400): a stage
#                     gets at most what is left, so a hang fails its stage and the run still
#                     prints its summary instead of being cut off
# A failing setup-deps always stops the run. Exits non-zero if any stage failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# rustup's cargo/rustc first on PATH: Debian's (installed for the wasm build)
# live in /usr/bin and lack rustfmt/clippy.
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

export MXFED_ROOT="$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mxfed/target}"
export MXFED_PYTHON="${MXFED_PYTHON:-${MXFED_VENV:-$ROOT/.venv}/bin/python}"
FAIL_FAST="${MXFED_FAIL_FAST:-0}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
MIN_FREE_GB="${MXFED_MIN_FREE_GB:-12}"
STAGE_TIMEOUT="${MXFED_STAGE_TIMEOUT:-2400}"
DEADLINE="${MXFED_DEADLINE:-5000}"

# free_gb DIR: free space, in whole GiB, on the file system holding DIR (or its parent).
free_gb() {
    local d="$1"
    while [[ ! -e "$d" ]]; do d="$(dirname "$d")"; done
    df -Pk "$d" | awk 'NR == 2 { print int($4 / 1048576) }'
}

# A warm target dir keeps every build it ever made; a run that starts short of disk clears
# the parts a fresh build recreates (incremental caches, then everything) instead of failing
# mid-build with "No space left on device".
ensure_disk() {
    local free
    free="$(free_gb "$CARGO_TARGET_DIR")"
    printf 'test.sh: %s GiB free for %s (want %s)\n' "$free" "$CARGO_TARGET_DIR" "$MIN_FREE_GB"
    ((free >= MIN_FREE_GB)) && return 0
    local p
    for p in debug/incremental release/incremental; do
        [[ -d "$CARGO_TARGET_DIR/$p" ]] || continue
        printf 'test.sh: low on disk: removing %s/%s\n' "$CARGO_TARGET_DIR" "$p"
        rm -rf "${CARGO_TARGET_DIR:?}/$p"
    done
    free="$(free_gb "$CARGO_TARGET_DIR")"
    ((free >= MIN_FREE_GB)) && return 0
    if [[ -d "$CARGO_TARGET_DIR" ]]; then
        printf 'test.sh: low on disk (%s GiB): removing the target dir %s\n' "$free" "$CARGO_TARGET_DIR"
        rm -rf "${CARGO_TARGET_DIR:?}"
        free="$(free_gb "$CARGO_TARGET_DIR")"
    fi
    if ((free < MIN_FREE_GB)); then
        printf 'test.sh: WARNING: only %s GiB free; a cold build needs about %s\n' "$free" "$MIN_FREE_GB" >&2
    fi
}

# Extra stages, sorted bytewise.
extra=()
while IFS= read -r f; do
    [[ -n "$f" ]] || continue
    if [[ -x "$f" ]]; then
        extra+=("$f")
    else
        printf 'test.sh: WARNING: %s is not executable; skipping it (chmod +x to enable)\n' "$f" >&2
    fi
done < <(shopt -s nullglob; for f in scripts/test.d/*.sh; do printf '%s\n' "$f"; done | LC_ALL=C sort)

TOTAL=$((5 + ${#extra[@]}))
n=0
names=()
statuses=()
times=()
failed=()
T0=$SECONDS

# stage NAME COMMAND...: run one stage with a header, record status and time.
stage() {
    local name="$1"; shift
    n=$((n + 1))
    printf '\n==> [%d/%d] %s: %s\n' "$n" "$TOTAL" "$name" "$*"
    local t=$SECONDS rc=0
    local limit=$((DEADLINE - (SECONDS - T0)))
    ((limit < STAGE_TIMEOUT)) || limit=$STAGE_TIMEOUT
    if ((limit <= 0)); then
        printf '==> [%d/%d] %s: not run: the run is past its deadline of %ds\n' "$n" "$TOTAL" "$name" "$DEADLINE"
        rc=124
    else
        # timeout signals the stage's whole process group (servers it started included). That
        # group is not the terminal's, so Ctrl-C is passed on to it by hand, and ends the run.
        timeout -k 30 "$limit" "$@" &
        local pid=$!
        trap 'kill -TERM -- "-$pid" 2>/dev/null; wait "$pid" || true; printf "\ntest.sh: interrupted in %s\n" "$name" >&2; exit 130' INT
        wait "$pid" || rc=$?
        trap - INT
        if ((rc == 124 || rc == 137)); then
            printf '==> [%d/%d] %s: stopped after %ds (its time limit)\n' "$n" "$TOTAL" "$name" "$limit"
        fi
    fi
    local dt=$((SECONDS - t))
    names+=("$name"); times+=("$dt")
    if ((rc == 0)); then
        statuses+=(ok)
        printf '==> [%d/%d] %s: ok (%ds)\n' "$n" "$TOTAL" "$name" "$dt"
    else
        statuses+=("FAILED (exit $rc)")
        failed+=("$name")
        printf '==> [%d/%d] %s: FAILED with exit code %d (%ds)\n' "$n" "$TOTAL" "$name" "$rc" "$dt"
    fi
    return "$rc"
}

summary() {
    printf '\n==> summary\n'
    local i
    for i in "${!names[@]}"; do
        printf '    %-28s %-18s %5ds\n' "${names[$i]}" "${statuses[$i]}" "${times[$i]}"
    done
    local total=$((SECONDS - T0))
    if ((${#failed[@]} == 0)); then
        printf 'test.sh: OK: all %d stages succeeded in %ds\n' "${#names[@]}" "$total"
    else
        printf 'test.sh: FAILED: %d of %d stages failed (%s); %d of %d stages run; %ds\n' \
            "${#failed[@]}" "${#names[@]}" "${failed[*]}" "${#names[@]}" "$TOTAL" "$total"
    fi
}

# run NAME COMMAND...: a stage that may be followed by others even if it fails.
run() {
    if ! stage "$@" && [[ "$FAIL_FAST" == 1 ]]; then
        summary
        exit 1
    fi
}

printf 'test.sh: repo %s\n' "$ROOT"
printf 'test.sh: CARGO_TARGET_DIR=%s\n' "$CARGO_TARGET_DIR"
printf 'test.sh: MXFED_PYTHON=%s\n' "$MXFED_PYTHON"
ensure_disk

if ! stage setup-deps ./scripts/setup-deps.sh; then
    summary
    exit 1
fi
if [[ ! -x "$MXFED_PYTHON" ]]; then
    printf 'test.sh: ERROR: MXFED_PYTHON=%s is not executable\n' "$MXFED_PYTHON" >&2
    exit 1
fi
printf 'test.sh: %s; %s\n' "$(cargo --version)" "$(rustc --version)"

run fmt cargo fmt --all -- --check
run clippy cargo clippy --locked --workspace --all-targets -- -D warnings
run test cargo test --locked --workspace
run wasm-core ./scripts/wasm-core.sh
for f in "${extra[@]}"; do
    run "${f#scripts/}" "$f"
done

summary
((${#failed[@]} == 0))

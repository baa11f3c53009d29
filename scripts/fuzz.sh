#!/usr/bin/env bash
# Coverage-guided fuzzing of the core with libFuzzer (cargo-fuzz), the targets of
# tests/fuzz-harness (see its src/lib.rs): canonical, xmatrix, pdu, transaction, edus_and_keys,
# room.
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]     (default: 60 s each, every target; 2 at a time)
#
# Installs cargo-fuzz (pinned) into ~/.cache/mxfed/tools once. Each target starts from the seeds
# the harness derives from tests/vectors, the committed corpus fuzz/corpus/<target>/, and the
# working corpus of earlier runs (~/.cache/mxfed/fuzz-corpus/<target>/, kept between runs).
# Built without a sanitizer (the core forbids unsafe code), with debug assertions and overflow
# checks. A crash is written to fuzz/artifacts/<target>/; the script then fails. To keep a
# crash as a test, fix it and copy the input into fuzz/corpus/<target>/ (the harness's replay
# test, run by scripts/test.sh, runs every file there).
#
# The fuzzing itself is not part of scripts/test.sh (its length is a choice, not a test); the
# replay of the seeds, the committed corpus and a fixed series of mutations is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mxfed"
CARGO_FUZZ_VERSION=0.13.2
TOOLS="$CACHE/tools/cargo-fuzz-$CARGO_FUZZ_VERSION"
FUZZ_TARGET_DIR="$CACHE/fuzz-target"
WORK="$CACHE/fuzz-corpus"

SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    TARGETS=(canonical xmatrix pdu transaction edus_and_keys room)
fi
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number" >&2; exit 2; }

log() { printf 'fuzz.sh: %s\n' "$*"; }

if [[ ! -x "$TOOLS/bin/cargo-fuzz" ]]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS (once)"
    CARGO_TARGET_DIR="$CACHE/tools-build" cargo install --quiet --locked cargo-fuzz \
        --version "=$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"

# libFuzzer's instrumentation needs nightly flags; the stable compiler accepts them with
# RUSTC_BOOTSTRAP (as the wasm build does).
export RUSTC_BOOTSTRAP=1
log "building the targets"
cargo fuzz build --sanitizer none --target-dir "$FUZZ_TARGET_DIR"
CARGO_TARGET_DIR="$CACHE/target" cargo run --quiet -p mxfed-fuzz-harness --bin mxfed-fuzz-seeds -- "$WORK/.seeds"

BIN="$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release"
run_one() {
    local t="$1"
    mkdir -p "$WORK/$t" "fuzz/artifacts/$t"
    local max_len=()
    [[ "$t" == room ]] && max_len=(-max_len=2048 -len_control=0)
    "$BIN/$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 "${max_len[@]}" \
        -artifact_prefix="fuzz/artifacts/$t/" -close_fd_mask=1 \
        "$WORK/$t" "$WORK/.seeds/$t" fuzz/corpus/"$t" > "$WORK/$t.log" 2>&1
}

failed=()
pids=()
names=()
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log "$t: ${SECONDS_EACH}s"
    run_one "$t" &
    pids+=($!)
    names+=("$t")
    if [[ ${#pids[@]} -ge 2 ]]; then
        wait "${pids[0]}" || failed+=("${names[0]}")
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
done
for t in "${TARGETS[@]}"; do
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$WORK/$t.log" \
        | sed "s/^/fuzz.sh: $t: /" || true
done
if [[ ${#failed[@]} -gt 0 ]]; then
    for t in "${failed[@]}"; do
        log "$t FAILED; last lines of $WORK/$t.log:"
        tail -40 "$WORK/$t.log" >&2
    done
    exit 1
fi
log "OK: no crash in ${TARGETS[*]}"

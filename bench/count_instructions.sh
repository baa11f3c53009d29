#!/usr/bin/env bash
# Instructions per operation for benchmarks of bench/benches/core.rs, counted by valgrind
# (cachegrind, no cache simulation). Unlike times, counts do not move with other load on the
# machine, so they show small differences (mxfed vs raw dalek) and the effect of an optimisation
# reliably. They are not times: a cache miss or a slow instruction counts as one.
#
#   bench/count_instructions.sh [N] [GROUP/NAME ...]
#
# N (default 200) operations are counted, minus a run of 0 (fixture setup and parity checks).
# Without names, the rows of BENCHMARKS.md's instruction table are counted.
# Needs valgrind (Debian: apt-get install valgrind).
#
# MXFED_COUNT_BENCH=validation counts benches/validation.rs instead, whose names are
# pdu/check_pdu, pdu/check_pdus (per run: all 1,000 PDUs) and state_res/<v> <kind>/<mxfed|ruma>:
#
#   MXFED_COUNT_BENCH=validation bench/count_instructions.sh 2 pdu/check_pdu pdu/check_pdus
#   MXFED_COUNT_BENCH=validation bench/count_instructions.sh 2 "state_res/v10 power/mxfed"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v valgrind >/dev/null || { echo "count_instructions: valgrind not found" >&2; exit 1; }

n=200
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then n=$1; shift; fi
names=("$@")
bench="${MXFED_COUNT_BENCH:-core}"
if [[ "$bench" != core ]] && ((${#names[@]} == 0)); then
    echo "count_instructions: name the $bench benchmarks to count" >&2
    exit 1
fi
if ((${#names[@]} == 0)); then
    names=(
        01_parse/mxfed 01_parse/ruma
        02_encode/mxfed 02_encode/ruma
        05_content_hash/mxfed 05_content_hash/ruma
        08_event_id/mxfed 08_event_id/ruma
        09_parse_and_hashes/mxfed 09_parse_and_hashes/ruma
        09b_parts/mxfed_parse 09b_parts/mxfed_encode_content_hash_bytes
        09b_parts/mxfed_encode_redacted_bytes 09b_parts/sha256_content_hash_bytes
        09b_parts/sha256_redacted_bytes
        10_event_signature/dalek_verify_strict 10_event_signature/dalek_verify
        10_event_signature/mxfed 10_event_signature/ruma
    )
fi

bin="$(cargo bench -p mxfed-bench --bench "$bench" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)"
[[ -x "$bin" ]] || { echo "count_instructions: bench binary not found" >&2; exit 1; }

irefs() {
    MXFED_BENCH_COUNT="$1:$2" valgrind --tool=cachegrind --cache-sim=no \
        --cachegrind-out-file=/dev/null "$bin" 2>&1 >/dev/null |
        sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}

printf '%-48s %14s\n' "benchmark" "instr/op"
for name in "${names[@]}"; do
    base="$(irefs "$name" 0)"
    total="$(irefs "$name" "$n")"
    printf '%-48s %14s\n' "$name" "$(( (total - base) / n ))"
done

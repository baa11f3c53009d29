#!/usr/bin/env bash
# User-space instructions `mxfed serve` executes per PDU of the ingest benchmark, counted by
# valgrind (cachegrind, no cache simulation). The server runs under valgrind as the benchmark's
# MXFED_BIN; two streams are sent (SHORT and LONG transactions of 50 PDUs) and the difference
# of the two counts, divided by the difference in PDUs, is the cost per PDU without start-up.
# Unlike the CPU times of scripts/bench-ingest.sh, the counts do not move with other load, so
# two builds of the server compare within a percent. They leave out the kernel's work (storage
# and network syscalls) and what a cache miss costs: a faster count is not always a faster
# server, and a slower server can have the same count.
#
#   bench/count_ingest_instructions.sh [MXFED_BINARY ...]
#
# Without arguments, this checkout's release build. Env: SHORT (default 10), LONG (default 50)
# transactions; SYNAPSE_PY as for scripts/bench-ingest.sh (any Python 3 will do here: Synapse
# is not started). Needs valgrind (Debian: apt-get install valgrind).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "count_ingest_instructions: valgrind not found" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mxfed/target}"
SHORT="${SHORT:-10}"
LONG="${LONG:-50}"
export SYNAPSE_PY="${SYNAPSE_PY:-$(command -v python3)}"

bins=("$@")
if [[ ${#bins[@]} -eq 0 ]]; then
    cargo build --release -p mxfed-native
    bins=("$CARGO_TARGET_DIR/release/mxfed")
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Instructions of the server process of one benchmark run of $2 transactions with binary $1.
count() {
    local bin="$1" txns="$2" out="$WORK/cg"
    rm -rf "$out" && mkdir -p "$out"
    cat >"$WORK/server.sh" <<EOF
#!/bin/sh
exec valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=$out/cg.%p "$bin" "\$@"
EOF
    chmod +x "$WORK/server.sh"
    MXFED_BIN="$WORK/server.sh" SKIP_SYNAPSE=1 SKIP_E2E=1 TXNS="$txns" ROUNDS=1 \
        scripts/bench-ingest.sh >"$WORK/run.log" 2>&1 \
        || { tail -20 "$WORK/run.log" >&2; return 1; }
    # Every `mxfed` the benchmark starts runs under valgrind; the server's profile is the one
    # whose command is `serve`.
    local server
    server="$(grep -l '^cmd: .* serve ' "$out"/cg.* | head -1)"
    awk '/^summary:/ {print $2}' "$server"
}

echo "binary | instructions, $SHORT txns | instructions, $LONG txns | per PDU"
for bin in "${bins[@]}"; do
    short="$(count "$bin" "$SHORT")"
    long="$(count "$bin" "$LONG")"
    per=$(( (long - short) / ((LONG - SHORT) * 50) ))
    echo "$bin | $short | $long | $per"
done

#!/usr/bin/env bash
# Stage: mxfed serve against real Synapse servers. Runs after 20-python.sh, which installs the
# pinned Synapse into the venv: two throwaway Synapse servers and `mxfed serve --dev` federate on
# loopback through the interop scenarios of host-native/tests/interop/ (README.md there: the
# scenarios, every Synapse setting and why, the differences found). Needs openssl for Synapse's
# certificates. Arguments are passed on: scenario numbers run a subset (e.g. `... 40-server-synapse.sh 7 9`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
log() { printf '40-server-synapse: %s\n' "$*"; }

PY="${MXFED_PYTHON:-$ROOT/.venv/bin/python}"
if ! (cd "${TMPDIR:-/tmp}" && "$PY" -c 'import synapse.app.homeserver') 2>/dev/null; then
    log "ERROR: $PY has no matrix-synapse (scripts/test.d/20-python.sh installs it)"
    exit 1
fi
command -v openssl >/dev/null || { log "ERROR: openssl is not installed"; exit 1; }

log "cargo build -p mxfed-native"
cargo build -q -p mxfed-native
# A private copy: the target directory may be shared, and another build must not swap the binary
# under a running stage (the outage scenario restarts it).
BINDIR="$(mktemp -d)"
trap 'rm -rf "$BINDIR"' EXIT
cp "${CARGO_TARGET_DIR:-$ROOT/target}/debug/mxfed" "$BINDIR/mxfed"

log "synapse_interop.py"
start=$(date +%s)
status=0
(cd "${TMPDIR:-/tmp}" && "$PY" "$ROOT/host-native/tests/interop/synapse_interop.py" "$BINDIR/mxfed" "$@") || status=$?
log "finished in $(( $(date +%s) - start )) s (exit $status)"
exit "$status"

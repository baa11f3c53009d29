#!/usr/bin/env bash
# Stage: mxfed serve against a real Synapse. Runs after 20-python.sh, which installs the pinned
# Synapse into the venv: a throwaway Synapse and `mxfed serve --dev` federate on loopback in both
# directions (host-native/tests/interop/synapse_interop.py). Needs openssl for Synapse's
# certificate.
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
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mxfed"

log "synapse_interop.py"
(cd "${TMPDIR:-/tmp}" && "$PY" "$ROOT/host-native/tests/interop/synapse_interop.py" "$BIN")

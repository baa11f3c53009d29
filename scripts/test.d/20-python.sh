#!/usr/bin/env bash
# Python bindings stage (run by scripts/test.sh after the built-in stages):
#   1. matrix-synapse (pinned) into the venv, once (it is big: ~1-2 min the first time);
#   2. build and install the bindings: pip install ./bindings-python (maturin, release build,
#      abi3 wheel), with the venv's pinned maturin (no build isolation, no download);
#   3. pytest bindings-python/tests (vectors vs the native CLI, API, bad input, hypothesis
#      differential tests vs canonicaljson/signedjson, Synapse's event signing, the client);
#   4. mypy.stubtest on the installed package, and mypy --strict on its sources;
#   5. the upstream test suites of signedjson 1.1.4 and canonicaljson 2.0.0, unmodified,
#      against mxfed.compat (sdists from PyPI, cached);
#   6. the cross-host conformance run through the Python host (tests/tests/host_python.rs).
# The crate is a workspace member, so fmt and clippy cover it in the workspace stages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mxfed/target}"
PY="${MXFED_PYTHON:-${MXFED_VENV:-$ROOT/.venv}/bin/python}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mxfed"
SYNAPSE_VERSION=1.163.2

log() { printf '20-python: %s\n' "$*"; }
step() { printf '\n20-python: --- %s\n' "$*"; }

[[ -x "$PY" ]] || { echo "20-python: ERROR: $PY not found (run scripts/setup-deps.sh)" >&2; exit 1; }
VENV="$("$PY" -c 'import sys; print(sys.prefix)')"

step "1/6 matrix-synapse $SYNAPSE_VERSION"
STAMP="$VENV/.mxfed-synapse-$SYNAPSE_VERSION"
if [[ -f "$STAMP" ]] && "$PY" -c 'import synapse.crypto.event_signing' 2>/dev/null; then
    log "already installed"
else
    t=$SECONDS
    # Constrained by the test requirements, so canonicaljson/signedjson/PyNaCl stay as pinned.
    "$PY" -m pip install --disable-pip-version-check --no-input -q \
        -c scripts/requirements-test.txt "matrix-synapse==$SYNAPSE_VERSION"
    touch "$STAMP"
    log "installed in $((SECONDS - t))s"
fi

step "2/6 build and install the bindings (pip install ./bindings-python)"
t=$SECONDS
# The venv's bin first: maturin's PEP 517 hooks run the `maturin` binary found on PATH.
PATH="$VENV/bin:$PATH" "$PY" -m pip install --disable-pip-version-check --no-input -q \
    --no-build-isolation --no-deps --force-reinstall ./bindings-python
log "built and installed in $((SECONDS - t))s: $("$PY" -c 'import mxfed, os; print(os.path.dirname(mxfed.__file__))')"
# The native CLI, for the byte-for-byte comparisons (already built by the test stage).
cargo build -q --locked -p mxfed-native
export MXFED_CLI="$CARGO_TARGET_DIR/debug/mxfed"

step "3/6 pytest bindings-python/tests"
(cd bindings-python && MXFED_REQUIRE_SYNAPSE=1 "$PY" -m pytest -q -p no:cacheprovider tests)

step "4/6 mypy.stubtest mxfed; mypy --strict"
(cd "$(mktemp -d)" && "$PY" -m mypy.stubtest mxfed)
"$PY" -m mypy --strict --no-incremental bindings-python/python/mxfed

step "5/6 upstream suites of signedjson and canonicaljson against mxfed.compat"
"$PY" bindings-python/tests/run_upstream.py "$CACHE"

step "6/6 conformance: every vector through the Python host"
MXFED_PYTHON="$PY" cargo test -q --locked -p mxfed-conformance --test host_python -- --ignored --nocapture 2>&1 \
    | grep -v '^$'

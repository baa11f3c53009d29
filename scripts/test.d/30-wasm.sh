#!/usr/bin/env bash
# Stage: host-wasm. Builds the wasm package (host-wasm/build.sh: Debian toolchain, pinned
# wasm-bindgen CLI cached under ~/.cache/mxfed/tools, wasm-opt),
# installs the npm dev dependencies (npm ci), runs the JS API tests in Node and the edge worker
# tests in workerd, then the cross-host conformance runs: the vectors through the JS package in
# Node (host_wasm) and through the core compiled to wasm32 in wasmtime (wasmtime_host).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
log() { printf '30-wasm: %s\n' "$*"; }

command -v node >/dev/null || { log "ERROR: node is not installed (Node 18+ is needed for host-wasm)"; exit 1; }
log "node $(node --version), npm $(npm --version)"

log "npm ci (host-wasm)"
(cd host-wasm && npm ci --no-audit --no-fund --loglevel=error)

log "host-wasm/build.sh"
./host-wasm/build.sh

export MXFED_WASM_PKG="$ROOT/host-wasm/pkg"
export MXFED_WASM_ABI="$ROOT/host-wasm/target/mxfed_wasm_abi.wasm"

log "node --test (120 s per test): JS API (Node), generated untrusted input, and edge worker (workerd)"
(cd host-wasm && node --test --test-timeout=120000 tests/api.test.mjs tests/untrusted.test.mjs tests/worker.test.mjs tests/worker-logic.test.mjs)

log "cargo test: conformance through node (host_wasm) and wasmtime (wasmtime_host)"
cargo test --locked -p mxfed-conformance --test host_wasm --test wasmtime_host -- --include-ignored

#!/usr/bin/env bash
# Runs the core benchmarks: criterion (mxfed vs ruma vs raw ed25519-dalek, bench/benches/core.rs)
# and the Python baseline (bench/python_bench.py), after printing what machine they ran on.
#
#   scripts/bench.sh                      # the BENCHMARKS.md run (~6-10 min on 2 cores)
#   scripts/bench.sh 08_event_id          # criterion filter and options go to criterion
#   scripts/bench.sh -- --measurement-time 10 --warm-up-time 3
#
# Env:
#   MXFED_BENCH_SKIP_PYTHON=1   skip the Python baseline
#   PYTHON                      interpreter for it (default: .venv/bin/python, else python3)
# With no criterion options given, `--measurement-time 3 --warm-up-time 1` is used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

args=("$@")
[[ "${args[0]:-}" == "--" ]] && args=("${args[@]:1}")
if ! printf '%s\n' "${args[@]}" | grep -q -- '--measurement-time'; then
    args+=(--measurement-time 3 --warm-up-time 1)
fi

echo "== machine"
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
cpuinfo() { grep -m1 -E "^$1[[:space:]]*:" /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//'; }
echo "cpu:    $(cpuinfo 'model name') (family $(cpuinfo 'cpu family'), model $(cpuinfo 'model'), $(cpuinfo 'cpu MHz') MHz)"
echo "cores:  $(nproc) (nproc)"
echo "kernel: $(uname -sr)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo "rust:   $(rustc --version)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"

echo
echo "== criterion: cargo bench -p mxfed-bench -- ${args[*]}"
cargo bench -p mxfed-bench --bench core -- "${args[@]}"

if [[ "${MXFED_BENCH_SKIP_PYTHON:-0}" == 1 ]]; then
    echo "== python: skipped (MXFED_BENCH_SKIP_PYTHON=1)"
    exit 0
fi
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
echo
echo "== python: $py bench/python_bench.py"
if ! "$py" -c 'import canonicaljson, signedjson' 2>/dev/null; then
    echo "bench.sh: $py lacks canonicaljson/signedjson; run scripts/setup-deps.sh (or pip install" \
        "canonicaljson==2.0.0 signedjson==1.1.4) or set PYTHON" >&2
    exit 1
fi
"$py" bench/python_bench.py

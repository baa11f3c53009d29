#!/usr/bin/env bash
# Federation ingest benchmark (issues 5 and 6): mxfed serve --dev and a throwaway Synapse on
# loopback, the same stream of signed transactions (mxfed-loadgen ingest) against both in one
# run, interleaved; then the end-to-end run between two mxfed servers (mxfed-loadgen e2e).
#
#   scripts/bench-ingest.sh
#
# Env:
#   SYNAPSE_PY         a Python with matrix-synapse (default: $MXFED_PYTHON, else .venv/bin/python)
#   TXNS               transactions per ingest run (default 40, of 50 PDUs each)
#   PDUS_PER_TXN       PDUs per transaction of the ingest runs (default 50, the protocol's most)
#   CONCURRENCY        space-separated transactions-in-flight settings (default 1: both servers
#                      answer a second concurrent transaction of one origin with 429)
#   ROUNDS             interleaved rounds, mxfed then Synapse each round (default 2)
#   ROOM_VERSION       room version of both rooms (default 10)
#   MEMBERS            users the loadgen joins to the room (untimed) before each stream
#                      (default 0); each round's loadgen adds its own
#   E2E_MESSAGES       messages in the end-to-end run (default 4000), E2E_SENDERS (default 8)
#   E2E_BATCH          space-separated messages-per-admin-request settings (default "1 50": the
#                      per-message /send and the /send_batch path)
#   READ_PROBE_MS      when set, the mxfed and Synapse streams also read an event from the target
#                      meanwhile (mxfed-loadgen ingest --read-probe-ms), one GET every this
#                      many ms (20 or more: mxfed allows an origin 50 requests/s besides its
#                      transactions), and report the reads' latency
#   ORIGINS            also run this many loadgens (origins) at once against mxfed, each into a
#                      room of its own (default 1: no such run)
#   MXFED_BIN          the mxfed binary to measure (default: this checkout's release build)
#   SLOW_FSYNC_US      when set, every mxfed server sleeps this many µs before each fsync and
#                      fdatasync (scripts/slow-fsync.c, built with cc and preloaded): a disk
#                      whose flush is slower than this machine's
#   E2E_INBOUND        during each end-to-end run, this many other servers (mxfed-loadgen ingest)
#                      each stream E2E_INBOUND_TXNS one-PDU transactions (default 1000) into a
#                      room of its own on A, so that A commits received events and its users'
#                      messages at the same time (default 0: none)
#   SKIP_SYNAPSE=1, SKIP_E2E=1, SKIP_INGEST=1
#   KEEP=1             keep the scratch directory (server logs)
# Every server is started by this script and stopped by its own pid at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mxfed/target}"
PY="${SYNAPSE_PY:-${MXFED_PYTHON:-$ROOT/.venv/bin/python}}"
TXNS="${TXNS:-40}"
CONCURRENCY="${CONCURRENCY:-1}"
ROUNDS="${ROUNDS:-2}"
ROOM_VERSION="${ROOM_VERSION:-10}"
MEMBERS="${MEMBERS:-0}"
E2E_MESSAGES="${E2E_MESSAGES:-4000}"
E2E_SENDERS="${E2E_SENDERS:-8}"
E2E_BATCH="${E2E_BATCH:-1 50}"
ORIGINS="${ORIGINS:-1}"
PDUS_PER_TXN="${PDUS_PER_TXN:-50}"
PROBE=()
if [[ -n "${READ_PROBE_MS:-}" ]]; then PROBE=(--read-probe-ms "$READ_PROBE_MS"); fi

echo "== build: cargo build --release -p mxfed-native -p mxfed-loadgen"
cargo build --release -p mxfed-native -p mxfed-loadgen
# MXFED_BIN: the mxfed binary under test (default: the one just built), e.g. an older build for
# a before/after comparison; the loadgen is always this checkout's.
MXFED="${MXFED_BIN:-$CARGO_TARGET_DIR/release/mxfed}"
LOADGEN="$CARGO_TARGET_DIR/release/mxfed-loadgen"

WORK="$(mktemp -d)"   # a fresh scratch directory under $TMPDIR (default /tmp)
# Servers are started inside $(...) subshells, so their pids go to a file, not a variable.
PIDFILE="$WORK/pids"
: >"$PIDFILE"
cleanup() {
    local p PIDS=()
    mapfile -t PIDS <"$PIDFILE"
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [[ "${KEEP:-0}" == 1 ]]; then echo "scratch kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== machine"
cpuinfo() { grep -m1 -E "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; }
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:    $(cpuinfo 'model name'), $(nproc) cores (nproc)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
echo "synapse: $("$PY" -c 'import synapse; print(synapse.__version__)' 2>/dev/null || echo none)"

PRELOAD=()
if [[ -n "${SLOW_FSYNC_US:-}" ]]; then
    cc -shared -fPIC -O2 -o "$WORK/slow-fsync.so" scripts/slow-fsync.c -ldl
    PRELOAD=(env LD_PRELOAD="$WORK/slow-fsync.so" SLOW_FSYNC_US="$SLOW_FSYNC_US")
    echo "fsync:  mxfed servers sleep ${SLOW_FSYNC_US} µs before each fsync (SLOW_FSYNC_US)"
fi

# start_mxfed NAME PORT: starts `mxfed serve --dev`, waits for "mxfed: ready", prints its pid.
start_mxfed() {
    local name=$1 port=$2 dir="$WORK/$1"
    mkdir -p "$dir"
    "${PRELOAD[@]}" "$MXFED" serve --dev --data-dir "$dir/data" --server-name "localhost:$port" \
        --listen "127.0.0.1:$port" >"$dir/stdout" 2>"$dir/stderr" &
    local pid=$!
    echo "$pid" >>"$PIDFILE"
    for _ in $(seq 1 300); do
        grep -qx 'mxfed: ready' "$dir/stdout" 2>/dev/null && { echo "$pid"; return 0; }
        kill -0 "$pid" 2>/dev/null || { cat "$dir/stderr" >&2; return 1; }
        sleep 0.1
    done
    echo "mxfed $name did not start" >&2
    return 1
}
madmin() { local d=$1; shift; "$MXFED" admin --data-dir "$WORK/$d/data" "$@"; }

# start_synapse PORT: a throwaway Synapse (SQLite, self-signed TLS, loopback only, no notary,
# certificate checks off, generous rate limits; the same settings as
# host-native/tests/interop/README.md explains); prints its pid.
start_synapse() {
    local port=$1 d="$WORK/synapse"
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -keyout "$d/tls.key" \
        -out "$d/tls.crt" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
    (cd "$d" && "$PY" -m synapse._scripts.generate_signing_key -o "$d/signing.key")
    openssl rand -hex 32 >"$d/secret"
    local lim='{per_second: 100000, burst_count: 100000}'
    cat >"$d/log.config" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
EOF
    cat >"$d/homeserver.yaml" <<EOF
server_name: "localhost:$port"
pid_file: "$d/homeserver.pid"
report_stats: false
listeners:
  - port: $port
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [client, federation]
        compress: false
tls_certificate_path: "$d/tls.crt"
tls_private_key_path: "$d/tls.key"
federation_verify_certificates: false
ip_range_blacklist: ['0.0.0.0/0', '::/0']
ip_range_whitelist: ['127.0.0.0/8', '::1/128']
trusted_key_servers: []
suppress_key_server_warning: true
database:
  name: sqlite3
  args:
    database: "$d/homeserver.db"
log_config: "$d/log.config"
media_store_path: "$d/media_store"
signing_key_path: "$d/signing.key"
enable_registration: false
registration_shared_secret: "$(cat "$d/secret")"
macaroon_secret_key: "$(openssl rand -hex 32)"
form_secret: "$(openssl rand -hex 32)"
url_preview_enabled: false
enable_metrics: false
presence:
  enabled: false
rc_message: $lim
rc_joins:
  local: $lim
  remote: $lim
rc_joins_per_room: $lim
rc_invites:
  per_room: $lim
  per_user: $lim
  per_issuer: $lim
rc_room_creation: $lim
rc_federation:
  window_size: 1000
  sleep_limit: 100000
  sleep_delay: 1
  reject_limit: 1000000
  concurrent: 1000
federation_rr_transactions_per_room_per_second: 100000
EOF
    (cd "${TMPDIR:-/tmp}" && exec env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
        -u all_proxy -u ALL_PROXY no_proxy=localhost,127.0.0.1 \
        "$PY" -m synapse.app.homeserver -c "$d/homeserver.yaml" >"$d/log" 2>&1) &
    local pid=$!
    echo "$pid" >>"$PIDFILE"
    for _ in $(seq 1 600); do
        curl -sk --max-time 2 "https://127.0.0.1:$port/health" 2>/dev/null | grep -q OK && { echo "$pid"; return 0; }
        kill -0 "$pid" 2>/dev/null || { tail -30 "$d/log" >&2; return 1; }
        sleep 0.2
    done
    echo "synapse did not start" >&2
    return 1
}

# synapse_api PORT METHOD PATH [TOKEN] [BODY]
synapse_api() {
    local args=(-sk --fail-with-body -X "$2" "https://127.0.0.1:$1$3")
    [[ -n "${4:-}" ]] && args+=(-H "Authorization: Bearer $4")
    [[ -n "${5:-}" ]] && args+=(-H 'Content-Type: application/json' -d "$5")
    curl "${args[@]}"
}

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

if [[ "${SKIP_INGEST:-0}" != 1 ]]; then
    P_MX=$(free_port)
    MX_PID=$(start_mxfed mx "$P_MX")
    madmin mx user create alice >/dev/null
    MX_ROOM=$(madmin mx room create --as alice --version "$ROOM_VERSION")
    madmin mx room state-set "$MX_ROOM" m.room.join_rules "" '{"join_rule":"public"}' --as alice >/dev/null
    echo "mxfed:   localhost:$P_MX pid $MX_PID room $MX_ROOM"

    SY_PID=""
    if [[ "${SKIP_SYNAPSE:-0}" != 1 ]]; then
        P_SY=$(free_port)
        SY_PID=$(start_synapse "$P_SY")
        secret=$(cat "$WORK/synapse/secret")
        nonce=$(synapse_api "$P_SY" GET /_synapse/admin/v1/register | jq -r .nonce)
        mac=$(printf '%s\0%s\0%s\0%s' "$nonce" alice pw-alice notadmin \
            | openssl dgst -sha1 -hmac "$secret" | awk '{print $NF}')
        token=$(synapse_api "$P_SY" POST /_synapse/admin/v1/register "" \
            "$(jq -cn --arg n "$nonce" --arg m "$mac" '{nonce:$n,username:"alice",password:"pw-alice",admin:false,mac:$m}')" \
            | jq -r .access_token)
        SY_ROOM=$(synapse_api "$P_SY" POST /_matrix/client/v3/createRoom "$token" \
            "{\"preset\":\"public_chat\",\"room_version\":\"$ROOM_VERSION\"}" | jq -r .room_id)
        echo "synapse: localhost:$P_SY pid $SY_PID room $SY_ROOM"
    fi

    for round in $(seq 1 "$ROUNDS"); do
        for k in $CONCURRENCY; do
            echo
            echo "== round $round, concurrency $k: mxfed"
            "$LOADGEN" ingest --target "localhost:$P_MX" --room "$MX_ROOM" --txns "$TXNS" \
                --pdus-per-txn "$PDUS_PER_TXN" --concurrency "$k" --members "$MEMBERS" --target-pid "$MX_PID" --label mxfed "${PROBE[@]}" | tee "$WORK/out"
            grep '^RESULT ' "$WORK/out" | cut -c8- | jq -c ". + {round: $round}" >>"$RESULTS"
            if [[ -n "$SY_PID" ]]; then
                echo
                echo "== round $round, concurrency $k: synapse"
                "$LOADGEN" ingest --target "localhost:$P_SY" --room "$SY_ROOM" --txns "$TXNS" \
                    --pdus-per-txn "$PDUS_PER_TXN" --concurrency "$k" --members "$MEMBERS" --target-pid "$SY_PID" --label synapse "${PROBE[@]}" | tee "$WORK/out"
                grep '^RESULT ' "$WORK/out" | cut -c8- | jq -c ". + {round: $round}" >>"$RESULTS"
            fi
        done
    done

    # Several origins at once (ORIGINS > 1), each a loadgen of its own into a room of its own
    # on mxfed: what one origin's sequential transactions cannot show (checks of one overlapping
    # another's commit). Their PDUs/s add up; the target-CPU columns of their rows count the
    # work of every origin.
    if (( ORIGINS > 1 )); then
        for round in $(seq 1 "$ROUNDS"); do
            echo
            echo "== round $round: $ORIGINS origins at once, a room each: mxfed"
            rooms=()
            for o in $(seq 1 "$ORIGINS"); do
                r=$(madmin mx room create --as alice --version "$ROOM_VERSION")
                madmin mx room state-set "$r" m.room.join_rules "" '{"join_rule":"public"}' --as alice >/dev/null
                rooms+=("$r")
            done
            pids=()
            for o in $(seq 1 "$ORIGINS"); do
                "$LOADGEN" ingest --target "localhost:$P_MX" --room "${rooms[$((o - 1))]}" --txns "$TXNS" \
                    --pdus-per-txn "$PDUS_PER_TXN" --target-pid "$MX_PID" --label "mxfed-origin$o" >"$WORK/out$o" 2>&1 &
                pids+=($!)
            done
            wait "${pids[@]}"
            for o in $(seq 1 "$ORIGINS"); do
                grep -E '^(wall|txn latency):' "$WORK/out$o" | sed "s/^/origin $o: /"
                grep '^RESULT ' "$WORK/out$o" | cut -c8- | jq -c ". + {round: $round}" >>"$RESULTS"
            done
            jq -rs --argjson r "$round" 'map(select(.round == $r and (.label | startswith("mxfed-origin"))))
                | "together: \(map(.pdus_per_s) | add | floor) PDUs/s"' "$RESULTS"
        done
    fi

    echo
    echo "== ingest: $TXNS transactions of $PDUS_PER_TXN PDUs per run, room version $ROOM_VERSION"
    echo "| target | round | in flight | PDUs/s | p50 ms | p99 ms | target cores used | PDUs/s per core | % of core check_pdu | % of core check_pdus | peak RSS MiB | load before/after |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    jq -r '"| \(.label) | \(.round) | \(.concurrency) | \(.pdus_per_s|floor) | \(.p50_ms*10|floor/10) | \(.p99_ms*10|floor/10) | \((.target_cores_used//0)*100|floor/100) | \((.target_pdus_per_s_per_core//0)|floor) | \(((.ratio_to_check_pdu//0)*100)|floor)% | \(((.ratio_to_core//0)*100)|floor)% | \((.target_vm_hwm_kb//0)/1024|floor) | \(.load_before)/\(.load_after) |"' "$RESULTS"
    jq -r 'select(.label=="mxfed") | .core_check_pdus_per_s' "$RESULTS" \
        | awk '{s+=$1; n++} END {if (n) printf "core check_pdus in process (mean of runs): %.0f PDUs/s per core\n", s/n}'
fi

if [[ "${SKIP_E2E:-0}" != 1 ]]; then
    P_A=$(free_port)
    P_B=$(free_port)
    A_PID=$(start_mxfed a "$P_A")
    B_PID=$(start_mxfed b "$P_B")
    users=()
    for i in $(seq 0 $((E2E_SENDERS - 1))); do
        madmin a user create "u$i" >/dev/null
        users+=("u$i")
    done
    ROOM=$(madmin a room create --as u0)
    madmin a room state-set "$ROOM" m.room.join_rules "" '{"join_rule":"public"}' --as u0 >/dev/null
    for u in "${users[@]:1}"; do madmin a room join "$ROOM" --via "localhost:$P_A" --as "$u" >/dev/null; done
    madmin b user create watcher >/dev/null
    madmin b room join "$ROOM" --via "localhost:$P_A" --as watcher >/dev/null
    madmin a room wait "$ROOM" --joined "@watcher:localhost:$P_B" >/dev/null
    echo
    echo "== end to end: A localhost:$P_A (pid $A_PID), B localhost:$P_B (pid $B_PID), room $ROOM"
    inbound_rooms=()
    for o in $(seq 1 "${E2E_INBOUND:-0}"); do
        r=$(madmin a room create --as u0)
        madmin a room state-set "$r" m.room.join_rules "" '{"join_rule":"public"}' --as u0 >/dev/null
        inbound_rooms+=("$r")
    done
    for batch in $E2E_BATCH; do
        echo
        pids=()
        for o in "${!inbound_rooms[@]}"; do
            "$LOADGEN" ingest --target "localhost:$P_A" --room "${inbound_rooms[$o]}" \
                --txns "${E2E_INBOUND_TXNS:-1000}" --pdus-per-txn 1 --label "inbound$o" >"$WORK/in$o" 2>&1 &
            pids+=($!)
        done
        # The origins join and sign their stream first; the end-to-end run starts when they send.
        (( ${#pids[@]} > 0 )) && sleep 2
        "$LOADGEN" e2e --a "$WORK/a/data" --b "$WORK/b/data" --room "$ROOM" \
            --users "$(IFS=,; echo "${users[*]}")" --messages "$E2E_MESSAGES" --batch "$batch" | tee "$WORK/out"
        if (( ${#pids[@]} > 0 )); then
            wait "${pids[@]}"
            for o in "${!inbound_rooms[@]}"; do
                grep -E '^(wall|txn latency):' "$WORK/in$o" | sed "s/^/inbound origin $o into A: /"
            done
        fi
    done
fi

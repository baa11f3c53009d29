#!/usr/bin/env bash
# Runs the mxfed edge worker in workerd (Cloudflare's Workers runtime, from npm) on
# 127.0.0.1:PORT, in front of ORIGIN, so anyone can try it before deploying it with wrangler.
#
#   run-local.sh --port P --server-name NAME --signing-key FILE --origin URL [--dev]
#                [--key-server NAME=URL]... [--trust-cert PEM]... [--var BINDING=VALUE]...
#
#   --dev                  as `mxfed serve --dev`: talk to peers on loopback. Sets DEV_MODE=1,
#                          which honours --key-server mappings (plain http allowed), and lets the
#                          worker reach private and loopback addresses.
#   --key-server NAME=URL  (dev) fetch NAME's /_matrix/key/v2/server from URL instead of
#                          resolving NAME (binding DEV_KEY_SERVERS, a JSON map)
#   --trust-cert PEM       trust this CA/self-signed certificate for outgoing https (repeatable)
#   --var BINDING=VALUE    any other binding: ROOM_VERSIONS, ROOM_VERSION_URL, ROOM_VERSION_TOKEN,
#                          DEFAULT_ROOM_VERSION, UNKNOWN_ROOM_POLICY, KEY_NOTARY, KEY_NOTARY_NAME,
#                          KEY_NOTARY_KEYS, KEY_VALIDITY_MS, WELL_KNOWN_SERVER, ORIGIN_SHARED_SECRET
#
# Builds host-wasm/pkg first if it is missing. Stops on SIGINT/SIGTERM. See host-wasm/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WASM="$(cd "$HERE/.." && pwd)"

die() { printf 'run-local: ERROR: %s\n' "$*" >&2; exit 2; }

port='' server_name='' key_file='' origin='' dev=0
key_servers=() certs=() vars=()
while (($#)); do
    case "$1" in
        --port) port="${2:?}"; shift 2 ;;
        --server-name) server_name="${2:?}"; shift 2 ;;
        --signing-key) key_file="${2:?}"; shift 2 ;;
        --origin) origin="${2:?}"; shift 2 ;;
        --dev) dev=1; shift ;;
        --key-server) key_servers+=("${2:?}"); shift 2 ;;
        --trust-cert) certs+=("${2:?}"); shift 2 ;;
        --var) vars+=("${2:?}"); shift 2 ;;
        -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$port" =~ ^[0-9]+$ ]] || die "--port P is required"
[[ -n "$server_name" ]] || die "--server-name NAME is required"
[[ -f "$key_file" ]] || die "--signing-key FILE is required (a Synapse signing.key; mxfed key generate makes one)"
[[ -n "$origin" ]] || die "--origin URL is required"
((${#key_servers[@]} == 0 || dev == 1)) || die "--key-server needs --dev"

[[ -f "$WASM/pkg/workerd.js" ]] || "$WASM/build.sh"
[[ -x "$WASM/node_modules/.bin/workerd" ]] || (cd "$WASM" && npm ci --no-audit --no-fund --loglevel=error)

# Cap'n Proto text string.
q() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; printf '"%s"' "$s"; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/mxfed-edge.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
cp "$HERE/src/index.js" "$dir/index.js"
cp "$WASM/pkg/workerd.js" "$dir/mxfed-wasm.js"
cp "$WASM/pkg/api.js" "$WASM/pkg/mxfed_wasm.js" "$WASM/pkg/mxfed_wasm_bg.wasm" "$dir/"
cp "$key_file" "$dir/signing.key"

bindings=(
    "(name = \"SERVER_NAME\", text = $(q "$server_name"))"
    "(name = \"SIGNING_KEY\", text = embed \"signing.key\")"
    "(name = \"ORIGIN\", text = $(q "$origin"))"
)
if ((dev)); then
    bindings+=("(name = \"DEV_MODE\", text = \"1\")")
    json='{'
    for ks in "${key_servers[@]}"; do
        [[ "$ks" == *=* ]] || die "--key-server takes NAME=URL"
        name="${ks%%=*}" url="${ks#*=}"
        json+="$( [[ "$json" == '{' ]] || printf ',' )$(q "$name"):$(q "$url")"
    done
    json+='}'
    bindings+=("(name = \"DEV_KEY_SERVERS\", text = $(q "$json"))")
fi
for v in "${vars[@]}"; do
    [[ "$v" == *=* ]] || die "--var takes BINDING=VALUE"
    bindings+=("(name = $(q "${v%%=*}"), text = $(q "${v#*=}"))")
done

trusted=()
for i in "${!certs[@]}"; do
    cp "${certs[$i]}" "$dir/trusted-$i.pem"
    trusted+=("embed \"trusted-$i.pem\"")
done
allow='"public", "local"'
((dev)) && allow='"public", "private", "local"'

join() { local IFS=','; printf '%s' "$*"; }
cat > "$dir/config.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    (name = "internet", network = (
      allow = [$allow],
      tlsOptions = (trustBrowserCas = true, trustedCertificates = [$(join "${trusted[@]}")])
    )),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:$port", http = (), service = "edge") ],
);

const edge :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "mxfed-wasm", esModule = embed "mxfed-wasm.js"),
    (name = "api.js", esModule = embed "api.js"),
    (name = "mxfed_wasm.js", esModule = embed "mxfed_wasm.js"),
    (name = "mxfed_wasm_bg.wasm", wasm = embed "mxfed_wasm_bg.wasm"),
  ],
  compatibilityDate = "2025-01-01",
  bindings = [ $(join "${bindings[@]}") ],
);
CAPNP

printf 'run-local: mxfed edge worker for %s on http://127.0.0.1:%s -> %s%s\n' \
    "$server_name" "$port" "$origin" "$( ((dev)) && printf ' (dev)')"
# Not exec: the EXIT trap removes the config dir (it holds a copy of the signing key).
"$WASM/node_modules/.bin/workerd" serve "$dir/config.capnp" &
child=$!
trap 'kill "$child" 2>/dev/null || true' INT TERM
wait "$child"

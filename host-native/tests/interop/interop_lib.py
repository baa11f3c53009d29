"""Shared machinery of the Synapse interop harness: result bookkeeping, HTTP, Synapse and mxfed
processes, /sync polling, raw federation requests and read-only looks into both databases.

Every Synapse setting used is explained in README.md next to this file.
"""

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

# Every request stays on loopback: make sure no proxy from the environment is used.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=CTX))


class Results:
    """Checks per (scenario, room version): one log line each, a table at the end."""

    def __init__(self):
        self.rows = {}  # (scenario, version) -> [passed, failed]
        self.order = []

    def check(self, scenario, version, cond, what):
        key = (scenario, version)
        if key not in self.rows:
            self.rows[key] = [0, 0]
            self.order.append(key)
        tag = f"[{scenario} v{version}]" if version else f"[{scenario}]"
        if cond:
            self.rows[key][0] += 1
            print(f"ok: {tag} {what}", flush=True)
        else:
            self.rows[key][1] += 1
            print(f"FAILED: {tag} {what}", flush=True)
        return bool(cond)

    def failed(self):
        return sum(f for _, f in self.rows.values())

    def passed(self):
        return sum(p for p, _ in self.rows.values())

    def summary(self, elapsed):
        print("summary:")
        by_scenario = {}
        for s, v in self.order:
            by_scenario.setdefault(s, []).append(v)

        def number(s):
            head = s.split(" ", 1)[0]
            digits = "".join(ch for ch in head if ch.isdigit())
            return (int(digits) if digits else 0, head)
        for s in sorted(by_scenario, key=number):
            versions = sorted(by_scenario[s], key=lambda v: v or 0)
            cells = []
            for v in versions:
                p, f = self.rows[(s, v)]
                label = f"v{v}" if v else "-"
                cells.append(f"{label} {'ok' if f == 0 else 'FAILED'} ({p}/{p + f})")
            print(f"  {s}: " + ", ".join(cells))
        print(f"synapse-interop: {self.passed()} passed, {self.failed()} failed, {elapsed:.0f} s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpError(RuntimeError):
    def __init__(self, method, path, code, body):
        super().__init__(f"{method} {path}: HTTP {code} {body[:300]!r}")
        self.code = code
        self.body = body
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = {}


def request(port, method, path, token=None, body=None, headers=None, timeout=60):
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(req, data=data, timeout=timeout) as r:
            raw = r.read() or b"{}"
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")  # /health answers "OK"
    except urllib.error.HTTPError as e:
        raise HttpError(method, path, e.code, e.read().decode(errors="replace")) from None


api = request


def enc(s):
    return urllib.parse.quote(s, safe="")


def wait_until(what, pred, timeout=60):
    """Polls another process's state (neither Synapse nor mxfed's EDU list has a wait); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (RuntimeError, OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    print(f"  (timed out waiting for {what})", flush=True)
    return False


# ------------------------------------------------------------------------------------------------
# Synapse
# ------------------------------------------------------------------------------------------------

LIMIT = "{per_second: 1000, burst_count: 10000}"


class Synapse:
    """A throwaway Synapse on loopback (see README.md for every setting)."""

    def __init__(self, root, name, notary=None):
        self.name_ = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.server_name = f"localhost:{self.port}"
        self.notary = notary  # (server_name, {key_id: base64}) or None
        self.proc = None
        self.secret = self._config()

    def _config(self):
        d, port = self.dir, self.port
        key, crt = os.path.join(d, "tls.key"), os.path.join(d, "tls.crt")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
             "-keyout", key, "-out", crt, "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "synapse._scripts.generate_signing_key",
                        "-o", os.path.join(d, "signing.key")], check=True, cwd=d)
        secret = secrets.token_hex(32)
        with open(os.path.join(d, "log.config"), "w") as f:
            f.write("version: 1\nformatters:\n  precise:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n"
                    "handlers:\n  console:\n    class: logging.StreamHandler\n    formatter: precise\n"
                    "root:\n  level: INFO\n  handlers: [console]\ndisable_existing_loggers: false\n")
        if self.notary:
            nname, nkeys = self.notary
            keys = "".join(f"\n      \"{k}\": \"{v}\"" for k, v in nkeys.items())
            trusted = f"\n  - server_name: \"{nname}\"\n    verify_keys:{keys}"
        else:
            trusted = " []"
        with open(os.path.join(d, "homeserver.yaml"), "w") as f:
            f.write(f"""server_name: "localhost:{port}"
pid_file: "{d}/homeserver.pid"
report_stats: false
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [client, federation]
        compress: false
tls_certificate_path: "{crt}"
tls_private_key_path: "{key}"
federation_verify_certificates: false
ip_range_blacklist: ['0.0.0.0/0', '::/0']
ip_range_whitelist: ['127.0.0.0/8', '::1/128']
trusted_key_servers:{trusted}
suppress_key_server_warning: true
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.config"
media_store_path: "{d}/media_store"
signing_key_path: "{d}/signing.key"
enable_registration: false
registration_shared_secret: "{secret}"
macaroon_secret_key: "{secrets.token_hex(32)}"
form_secret: "{secrets.token_hex(32)}"
url_preview_enabled: false
enable_metrics: false
caches:
  sync_response_cache_duration: 0
rc_message: {LIMIT}
rc_joins:
  local: {LIMIT}
  remote: {LIMIT}
rc_joins_per_room: {LIMIT}
rc_invites:
  per_room: {LIMIT}
  per_user: {LIMIT}
  per_issuer: {LIMIT}
rc_room_creation: {LIMIT}
rc_admin_redaction: {LIMIT}
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 1
  reject_limit: 100000
  concurrent: 1000
federation_rr_transactions_per_room_per_second: 1000
""")
        return secret

    def start(self):
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env["no_proxy"] = "localhost,127.0.0.1"
        self.log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", os.path.join(self.dir, "homeserver.yaml")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir(), env=env)
        if not wait_until(f"{self.name_} to start", lambda: api(self.port, "GET", "/health") == "OK", 180):
            raise RuntimeError(f"Synapse {self.name_} did not start")

    def stop(self):
        stop(self.proc)
        self.proc = None

    def register(self, user):
        password = "pw-" + secrets.token_hex(4)
        nonce = api(self.port, "GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.secret.encode(), b"\0".join(
            [nonce.encode(), user.encode(), password.encode(), b"notadmin"]), hashlib.sha1).hexdigest()
        r = api(self.port, "POST", "/_synapse/admin/v1/register",
                body={"nonce": nonce, "username": user, "password": password, "admin": False, "mac": mac})
        return User(self, f"@{user}:{self.server_name}", r["access_token"])

    def verify_keys(self):
        r = api(self.port, "GET", "/_matrix/key/v2/server")
        return {k: v["key"] for k, v in r["verify_keys"].items()}

    def access_log_has(self, request_line, user_agent_prefix):
        """Whether Synapse's access log shows `request_line` (e.g. `GET /path HTTP/1.1`) from a
        client whose User-Agent starts with `user_agent_prefix`."""
        with open(os.path.join(self.dir, "log"), errors="replace") as f:
            needle = f'"{request_line}" "{user_agent_prefix}'
            return any(needle in line for line in f)

    def db(self):
        """Read-only look into Synapse's SQLite database (verdicts, key provenance)."""
        return sqlite3.connect(f"file:{self.dir}/homeserver.db?mode=ro", uri=True, timeout=30)

    def verdict(self, event_id):
        """'rejected', 'soft_failed', 'accepted' or 'unknown', from Synapse's own tables."""
        with self.db() as c:
            if c.execute("SELECT 1 FROM rejections WHERE event_id = ?", (event_id,)).fetchone():
                return "rejected"
            row = c.execute("SELECT internal_metadata FROM event_json WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                return "unknown"
            return "soft_failed" if json.loads(row[0]).get("soft_failed") else "accepted"


class User:
    """A Synapse user and the client-server API calls the scenarios need."""

    def __init__(self, hs, user_id, token):
        self.hs, self.user_id, self.token = hs, user_id, token
        self.since = None
        self.txn = 0

    def api(self, method, path, body=None):
        return api(self.hs.port, method, path, self.token, body)

    def create_room(self, version, **extra):
        body = {"preset": "private_chat", "room_version": str(version)}
        body.update(extra)
        return self.api("POST", "/_matrix/client/v3/createRoom", body)["room_id"]

    def invite(self, room, user_id):
        self.api("POST", f"/_matrix/client/v3/rooms/{enc(room)}/invite", {"user_id": user_id})

    def join(self, room, via):
        return self.api("POST", f"/_matrix/client/v3/join/{enc(room)}?server_name={enc(via)}", {})["room_id"]

    def send(self, room, text, event_type="m.room.message"):
        self.txn += 1
        return self.api("PUT", f"/_matrix/client/v3/rooms/{enc(room)}/send/{event_type}/t{self.txn}-{secrets.token_hex(3)}",
                        {"msgtype": "m.text", "body": text})["event_id"]

    def put_state(self, room, event_type, state_key, content):
        return self.api("PUT", f"/_matrix/client/v3/rooms/{enc(room)}/state/{event_type}/{enc(state_key)}",
                        content)["event_id"]

    def get_state(self, room, event_type, state_key=""):
        return self.api("GET", f"/_matrix/client/v3/rooms/{enc(room)}/state/{event_type}/{enc(state_key)}")

    def state_ids(self, room):
        return sorted((e["type"], e["state_key"], e["event_id"])
                      for e in self.api("GET", f"/_matrix/client/v3/rooms/{enc(room)}/state"))

    def event(self, room, event_id):
        return self.api("GET", f"/_matrix/client/v3/rooms/{enc(room)}/event/{enc(event_id)}")

    def has(self, room, event_id):
        try:
            self.event(room, event_id)
            return True
        except HttpError:
            return False

    def messages(self, room, limit=100):
        """The room's events as this user's /messages shows them, oldest first."""
        r = self.api("GET", f"/_matrix/client/v3/rooms/{enc(room)}/messages?dir=b&limit={limit}")
        return list(reversed(r.get("chunk", [])))

    def membership(self, room, user_id):
        try:
            return self.get_state(room, "m.room.member", user_id).get("membership")
        except HttpError:
            return None

    def sync_until(self, what, pred, timeout=60):
        """Incremental /sync until `pred(response)` is true for one response; bounded."""
        if self.since is None:
            first = self.api("GET", "/_matrix/client/v3/sync?timeout=0")
            self.since = first["next_batch"]
            if pred(first):
                return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.api("GET", f"/_matrix/client/v3/sync?timeout=1000&since={enc(self.since)}")
            self.since = r["next_batch"]
            if pred(r):
                return True
        print(f"  (timed out waiting for {what})", flush=True)
        return False


def ephemeral(sync, room, event_type):
    events = sync.get("rooms", {}).get("join", {}).get(room, {}).get("ephemeral", {}).get("events", [])
    return [e for e in events if e.get("type") == event_type]


# ------------------------------------------------------------------------------------------------
# mxfed
# ------------------------------------------------------------------------------------------------


class Mxfed:
    def __init__(self, binary, root, notaries=()):
        self.binary = binary
        self.dir = os.path.join(root, "mxfed")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data)
        self.port = free_port()
        self.server_name = f"localhost:{self.port}"
        self.proc = None
        # A config written before the first run is kept (first run only adds what is missing):
        # used to name trusted notaries (scenario 10).
        lines = [f'server_name = "{self.server_name}"', "dev = true"]
        for name, keys in notaries:
            lines += ["[[federation.trusted_notaries]]", f'server_name = "{name}"', "[federation.trusted_notaries.verify_keys]"]
            lines += [f'"{k}" = "{v}"' for k, v in keys.items()]
        with open(os.path.join(self.data, "mxfed.toml"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self.log = open(os.path.join(self.dir, "mxfed.log"), "a")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--dev", "--data-dir", self.data, "--server-name", self.server_name,
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.proc.stdout:
            if line.strip() == "mxfed: ready":
                break
        else:
            raise RuntimeError("mxfed exited before it was ready")

    def kill(self):
        """SIGKILL by pid: an outage, not a clean shutdown."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        stop(self.proc)
        self.proc = None

    def admin(self, *args):
        out = subprocess.run([self.binary, "admin", "--data-dir", self.data, *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"mxfed admin {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def wait_event(self, room, event_id, timeout=60):
        try:
            self.admin("room", "wait", room, "--event", event_id, "--timeout", str(timeout))
            return True
        except RuntimeError as e:
            print(f"  ({e})", flush=True)
            return False

    def wait_joined(self, room, user_id, timeout=60):
        try:
            self.admin("room", "wait", room, "--joined", user_id, "--timeout", str(timeout))
            return True
        except RuntimeError as e:
            print(f"  ({e})", flush=True)
            return False

    def timeline(self, room):
        return [json.loads(line) for line in self.admin("room", "timeline", room).splitlines() if line]

    def state(self, room):
        return sorted((e["type"], e["state_key"], e["event_id"])
                      for e in json.loads(self.admin("room", "state", room))["state"])

    def state_map(self, room):
        return {(t, k): e for t, k, e in self.state(room)}

    def edus(self, room):
        return [json.loads(line) for line in self.admin("edus", room).splitlines() if line]

    def db(self):
        return sqlite3.connect(f"file:{self.data}/mxfed.sqlite?mode=ro", uri=True, timeout=30)

    def verdict(self, event_id):
        with self.db() as c:
            row = c.execute("SELECT verdict FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return row[0] if row else "unknown"

    def extremities(self, room):
        with self.db() as c:
            return [r[0] for r in c.execute("SELECT event_id FROM forward_extremities WHERE room_id = ?", (room,))]

    def depth(self, event_id):
        with self.db() as c:
            row = c.execute("SELECT depth FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return row[0] if row else 0

    def key_response(self, server_name):
        with self.db() as c:
            row = c.execute("SELECT response FROM server_keys WHERE server_name = ?", (server_name,)).fetchone()
        return json.loads(row[0]) if row else None

    # The mxfed CLI's signing tools (used to act as a server whose key the harness holds).
    def cli(self, *args, stdin=None):
        out = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"mxfed {' '.join(args[:2])}: {out.stderr.strip()}")
        return out.stdout.strip()


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------------
# Acting as a server whose signing key the harness holds
# ------------------------------------------------------------------------------------------------


class Signer:
    """Signs events and X-Matrix requests as `server_name` with its signing.key file, using the
    mxfed CLI (`event sign`, `event id`, `request sign`)."""

    def __init__(self, mx, server_name, key_file, tmp):
        self.mx, self.server_name, self.key, self.tmp = mx, server_name, key_file, tmp

    def event(self, version, ev):
        signed = self.mx.cli("event", "sign", "--room-version", str(version), "--key", self.key,
                             "--server-name", self.server_name, "-", stdin=json.dumps(ev))
        event_id = self.mx.cli("event", "id", "--room-version", str(version), "-", stdin=signed)
        return json.loads(signed), event_id

    def request(self, port, destination, method, uri, body=None):
        args = ["request", "sign", "--key", self.key, "--origin", self.server_name,
                "--destination", destination, "--method", method, "--uri", uri]
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            path = os.path.join(self.tmp, f"body-{secrets.token_hex(4)}.json")
            with open(path, "wb") as f:
                f.write(data)
            args += ["--content", path]
        header = self.mx.cli(*args).splitlines()[0]
        if not header.startswith("X-Matrix"):
            header = "X-Matrix " + header
        return request(port, method, uri, body=data, headers={"Authorization": header})

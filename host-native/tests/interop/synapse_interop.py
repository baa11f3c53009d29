#!/usr/bin/env python3
"""mxfed serve --dev federates with a real Synapse on loopback.

Usage: synapse_interop.py MXFED_BINARY   (run with a Python that has matrix-synapse installed)

Starts a throwaway Synapse (TLS, SQLite, loopback only, no notary) and `mxfed serve --dev` on two
free ports, then checks both directions:
  1. a Synapse user creates a room and invites an mxfed user, who auto-accepts (make_join/send_join
     against Synapse); messages flow both ways; both sides hold the same current state;
  2. an mxfed user creates a room (room version 12) and invites a Synapse user, who joins through
     mxfed (mxfed is the resident server); messages flow both ways; same state.
Every request stays on 127.0.0.1. Both servers are stopped (by their own pid) at the end.
"""

import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
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

CHECKS = {"passed": 0, "failed": 0}


def check(cond, what):
    if cond:
        CHECKS["passed"] += 1
        print(f"ok: {what}", flush=True)
    else:
        CHECKS["failed"] += 1
        print(f"FAILED: {what}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, method, path, token=None, body=None, timeout=60):
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, context=CTX, timeout=timeout) as r:
            raw = r.read() or b"{}"
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")  # /health answers "OK"
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path}: HTTP {e.code} {e.read()[:300]!r}") from None


def enc(s):
    return urllib.parse.quote(s, safe="")


def synapse_config(d, port):
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
    limit = "{per_second: 1000, burst_count: 10000}"
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
trusted_key_servers: []
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
rc_message: {limit}
rc_joins:
  local: {limit}
  remote: {limit}
rc_invites:
  per_room: {limit}
  per_user: {limit}
  per_issuer: {limit}
rc_room_creation: {limit}
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 1
  reject_limit: 100000
  concurrent: 1000
""")
    return secret


def register(port, secret, user, password="pw-" + secrets.token_hex(4)):
    nonce = api(port, "GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(secret.encode(), b"\0".join(
        [nonce.encode(), user.encode(), password.encode(), b"notadmin"]), hashlib.sha1).hexdigest()
    r = api(port, "POST", "/_synapse/admin/v1/register",
            body={"nonce": nonce, "username": user, "password": password, "admin": False, "mac": mac})
    return r["access_token"]


def wait_until(what, pred, timeout=60):
    """Polls another process's state (Synapse has no wait endpoint); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (RuntimeError, OSError):
            pass
        time.sleep(0.2)
    print(f"timed out waiting for {what}", flush=True)
    return False


class Mxfed:
    def __init__(self, binary, data, port):
        self.binary, self.data, self.port = binary, data, port
        self.log = open(os.path.join(os.path.dirname(data), "mxfed.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--dev", "--data-dir", data, "--server-name", f"localhost:{port}",
             "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.proc.stdout:
            if line.strip() == "mxfed: ready":
                break
        else:
            raise RuntimeError("mxfed exited before it was ready")

    def admin(self, *args):
        out = subprocess.run([self.binary, "admin", "--data-dir", self.data, *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"mxfed admin {args}: {out.stderr.strip()}")
        return out.stdout.strip()

    def state(self, room):
        return sorted((e["type"], e["state_key"], e["event_id"])
                      for e in json.loads(self.admin("room", "state", room))["state"])


def synapse_state(port, token, room):
    return sorted((e["type"], e["state_key"], e["event_id"])
                  for e in api(port, "GET", f"/_matrix/client/v3/rooms/{enc(room)}/state", token))


def synapse_has(port, token, room, event_id):
    try:
        api(port, "GET", f"/_matrix/client/v3/rooms/{enc(room)}/event/{enc(event_id)}", token)
        return True
    except RuntimeError:
        return False


def scenario(mx, sp, secret):
    mp = mx.port
    bob = mx.admin("user", "create", "bob", "--display-name", "Bob", "--auto-accept")
    alice_tok = register(sp, secret, "alice")
    carol_tok = register(sp, secret, "carol")

    # 1. Synapse's room, mxfed's user.
    room = api(sp, "POST", "/_matrix/client/v3/createRoom", alice_tok,
               {"preset": "private_chat", "name": "interop"})["room_id"]
    api(sp, "PUT", f"/_matrix/client/v3/rooms/{enc(room)}/send/m.room.message/t0", alice_tok,
        {"msgtype": "m.text", "body": "before the join"})
    api(sp, "POST", f"/_matrix/client/v3/rooms/{enc(room)}/invite", alice_tok, {"user_id": bob})
    mx.admin("room", "wait", room, "--joined", bob, "--timeout", "60")
    check(True, "mxfed's user joined Synapse's room (auto-accept, make_join/send_join)")
    check("before the join" in mx.admin("room", "timeline", room),
          "Synapse's earlier message backfilled into mxfed's timeline")
    e1 = api(sp, "PUT", f"/_matrix/client/v3/rooms/{enc(room)}/send/m.room.message/t1", alice_tok,
             {"msgtype": "m.text", "body": "hello from Synapse"})["event_id"]
    mx.admin("room", "wait", room, "--event", e1, "--timeout", "60")
    check("hello from Synapse" in mx.admin("room", "timeline", room), "Synapse's message in mxfed's timeline")
    e2 = mx.admin("room", "send", room, "hello from mxfed", "--as", "bob")
    check(wait_until("mxfed's message on Synapse", lambda: synapse_has(sp, alice_tok, room, e2)),
          "mxfed's message reached Synapse")
    check(wait_until("same state", lambda: synapse_state(sp, alice_tok, room) == mx.state(room)),
          "same current state on both (Synapse's room)")

    # 2. mxfed's room (v12), Synapse's user.
    room2 = mx.admin("room", "create", "--as", "bob")
    mx.admin("room", "send", room2, "before carol", "--as", "bob")
    mx.admin("room", "invite", room2, "@carol:localhost:%d" % sp, "--as", "bob")
    wait_until("the invite on Synapse", lambda: room2 in api(
        sp, "GET", "/_matrix/client/v3/sync?timeout=0", carol_tok).get("rooms", {}).get("invite", {}))
    api(sp, "POST", f"/_matrix/client/v3/join/{enc(room2)}?server_name=localhost:{mp}", carol_tok, {})
    mx.admin("room", "wait", room2, "--joined", f"@carol:localhost:{sp}", "--timeout", "60")
    check(True, "Synapse's user joined mxfed's room (mxfed as resident server)")
    e3 = api(sp, "PUT", f"/_matrix/client/v3/rooms/{enc(room2)}/send/m.room.message/t2", carol_tok,
             {"msgtype": "m.text", "body": "carol here"})["event_id"]
    mx.admin("room", "wait", room2, "--event", e3, "--timeout", "60")
    check(True, "Synapse's message reached mxfed's room")
    e4 = mx.admin("room", "send", room2, "bob replies", "--as", "bob")
    check(wait_until("mxfed's reply on Synapse", lambda: synapse_has(sp, carol_tok, room2, e4)),
          "mxfed's reply reached Synapse")
    check(wait_until("same state", lambda: synapse_state(sp, carol_tok, room2) == mx.state(room2)),
          "same current state on both (mxfed's room)")

    # What bob said before carol joined reaches Synapse when carol pages back (mxfed's /backfill).
    def bodies_on_synapse():
        page = api(sp, "GET", f"/_matrix/client/v3/rooms/{enc(room2)}/messages?dir=b&limit=50",
                   carol_tok)
        return [e.get("content", {}).get("body") for e in page.get("chunk", [])]
    check(wait_until("backfill by Synapse", lambda: "before carol" in bodies_on_synapse()),
          "Synapse backfilled mxfed's earlier message (mxfed's /backfill)")

    # 3. A restricted mxfed room allowing room2's members: carol (on Synapse) joins through mxfed,
    # which names bob in join_authorised_via_users_server and countersigns the join.
    room3 = mx.admin("room", "create", "--as", "bob")
    rules = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": room2}]}
    mx.admin("room", "state-set", room3, "m.room.join_rules", "", json.dumps(rules), "--as", "bob")
    carol = f"@carol:localhost:{sp}"
    api(sp, "POST", f"/_matrix/client/v3/join/{enc(room3)}?server_name=localhost:{mp}", carol_tok, {})
    mx.admin("room", "wait", room3, "--joined", carol, "--timeout", "60")
    join = [e for e in map(json.loads, mx.admin("room", "timeline", room3).splitlines())
            if e.get("type") == "m.room.member" and e.get("state_key") == carol][0]
    check(join["content"].get("join_authorised_via_users_server") == bob
          and f"localhost:{mp}" in join.get("signatures", {}),
          "Synapse's user joined a restricted mxfed room, authorised and countersigned by mxfed")
    check(wait_until("same state", lambda: synapse_state(sp, carol_tok, room3) == mx.state(room3)),
          "same current state on both (the restricted room)")

    # 4. The other way: a restricted Synapse room allowing the members of `room`; bob (on mxfed,
    # joined there) joins through Synapse, which authorises and countersigns.
    room4 = api(sp, "POST", "/_matrix/client/v3/createRoom", alice_tok, {"preset": "private_chat"})["room_id"]
    api(sp, "PUT", f"/_matrix/client/v3/rooms/{enc(room4)}/state/m.room.join_rules/", alice_tok,
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": room}]})
    mx.admin("room", "join", room4, "--via", f"localhost:{sp}", "--as", "bob")
    check(wait_until("same state", lambda: synapse_state(sp, alice_tok, room4) == mx.state(room4)),
          "mxfed's user joined a restricted Synapse room (Synapse authorising)")


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    mxfed_bin = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="mxfed-synapse-")
    sp, mp = free_port(), free_port()
    syn_dir = os.path.join(tmp, "synapse")
    os.makedirs(syn_dir)
    synapse = mx = None
    ok = False
    try:
        secret = synapse_config(syn_dir, sp)
        synapse_log = open(os.path.join(syn_dir, "log"), "w")
        synapse = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", os.path.join(syn_dir, "homeserver.yaml")],
            stdout=synapse_log, stderr=subprocess.STDOUT, cwd=tmp)
        if not wait_until("Synapse to start", lambda: api(sp, "GET", "/health") is not None, 180):
            raise RuntimeError("Synapse did not start")
        os.makedirs(os.path.join(tmp, "mxfed"))
        mx = Mxfed(mxfed_bin, os.path.join(tmp, "mxfed", "data"), mp)
        scenario(mx, sp, secret)
        ok = CHECKS["failed"] == 0
    except Exception as e:  # noqa: BLE001 - report and fail
        CHECKS["failed"] += 1
        print(f"FAILED: {e}", flush=True)
    finally:
        if mx is not None:
            stop(mx.proc)
        stop(synapse)
        if not ok:
            for log in (os.path.join(tmp, "mxfed", "mxfed.log"), os.path.join(syn_dir, "log")):
                if os.path.exists(log):
                    print(f"--- {log} (last 40 lines)")
                    with open(log) as f:
                        print("".join(f.readlines()[-40:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"synapse-interop: {CHECKS['passed']} passed, {CHECKS['failed']} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

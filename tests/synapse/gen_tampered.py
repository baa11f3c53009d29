#!/usr/bin/env python3
"""Tampered rooms with Synapse's verdicts: tests/vectors/synapse/tampered/.

Starts three Synapse homeservers on loopback (hsA localhost:8448, hsB localhost:8449,
hsC localhost:8450), builds one room per room version with real joins, power levels, a ban
and a join-rule change, and then acts as the *evil* server: hsC's signing key is loaded here
and used to forge PDUs (forged senders, missing power, wrong or foreign auth events, a banned
user posting, content changed after signing, stripped or broken signatures, ...). Each forged
PDU goes to hsA in its own `PUT /_matrix/federation/v1/send/{txn}`, signed with X-Matrix as
hsC, and hsA's verdict is read back from the /send response, its database (`events`,
`rejections`, `event_json.internal_metadata`) and its log.

Run it by hand with a Python that has matrix-synapse (see README.md next to this file):

    python tests/synapse/gen_tampered.py [--versions 1,2,...,12] [--workdir DIR] [--keep]

Nothing here is Synapse code: Synapse is only run as a program and observed.
"""

import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

import canonicaljson
import requests
import signedjson.key
import signedjson.sign
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DEFAULT = os.path.normpath(os.path.join(HERE, "..", "vectors", "synapse", "tampered"))
SERVERS = {"hsA": 8448, "hsB": 8449, "hsC": 8450}
A, B, C = ("localhost:%d" % SERVERS[n] for n in ("hsA", "hsB", "hsC"))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Event hashing, redaction, signing and IDs (room versions 1-12; written from the spec)
# --------------------------------------------------------------------------------------------

def b64(data, urlsafe=False):
    s = base64.b64encode(data).decode().rstrip("=")
    return s.replace("+", "-").replace("/", "_") if urlsafe else s


def cjson(obj):
    return canonicaljson.encode_canonical_json(obj)


def rv_num(rv):
    return int(rv)


def redact(ev, rv):
    """The spec's redaction algorithm for room version `rv` (1-12)."""
    n = rv_num(rv)
    keep = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
            "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}
    if n <= 10:
        keep |= {"origin", "membership", "prev_state"}
    out = {k: v for k, v in ev.items() if k in keep}
    content = ev.get("content", {})
    t = ev.get("type")
    keys = []
    if t == "m.room.member":
        keys = ["membership"] + (["join_authorised_via_users_server"] if n >= 9 else [])
    elif t == "m.room.create":
        keys = list(content) if n >= 11 else ["creator"]
    elif t == "m.room.join_rules":
        keys = ["join_rule"] + (["allow"] if n >= 8 else [])
    elif t == "m.room.power_levels":
        keys = ["ban", "events", "events_default", "kick", "redact", "state_default", "users",
                "users_default"] + (["invite"] if n >= 11 else [])
    elif t == "m.room.history_visibility":
        keys = ["history_visibility"]
    elif t == "m.room.redaction" and n >= 11:
        keys = ["redacts"]
    elif t == "m.room.aliases" and n <= 5:
        keys = ["aliases"]
    new_content = {k: content[k] for k in keys if k in content}
    if t == "m.room.member" and n >= 11:
        signed = content.get("third_party_invite", {})
        if isinstance(signed, dict) and "signed" in signed:
            new_content["third_party_invite"] = {"signed": signed["signed"]}
    out["content"] = new_content
    return out


def content_hash(ev):
    body = {k: v for k, v in ev.items() if k not in ("unsigned", "signatures", "hashes")}
    return b64(hashlib.sha256(cjson(body)).digest())


def reference_hash(ev, rv):
    red = redact({k: v for k, v in ev.items() if k not in ("signatures", "unsigned")}, rv)
    return hashlib.sha256(cjson(red)).digest()


def explicit_ids(rv):
    """Room versions 1 and 2: event IDs are chosen by the origin and carried in the PDU."""
    return rv_num(rv) <= 2


def event_id(ev, rv):
    if explicit_ids(rv):
        return ev["event_id"]
    return "$" + b64(reference_hash(ev, rv), urlsafe=rv_num(rv) >= 4)


def sign_event(ev, rv, server, key):
    """Adds `server`'s signature over the redacted event (keeps existing signatures)."""
    red = redact({k: v for k, v in ev.items() if k not in ("signatures", "unsigned")}, rv)
    signed = signedjson.sign.sign_json(red, server, key)
    sigs = copy.deepcopy(ev.get("signatures", {}))
    sigs.setdefault(server, {}).update(signed["signatures"][server])
    ev["signatures"] = sigs
    return ev


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------

HOMESERVER_YAML = """\
server_name: "{sn}"
public_baseurl: "https://{sn}/"
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
tls_certificate_path: "{d}/tls.crt"
tls_private_key_path: "{d}/tls.key"
federation_verify_certificates: false
# Loopback only: block every address, allow 127.0.0.0/8 and ::1.
ip_range_blacklist: ['0.0.0.0/0', '::/0']
ip_range_whitelist: ['127.0.0.0/8', '::1/128']
# Keys are fetched from each origin directly, never from a notary.
trusted_key_servers: []
suppress_key_server_warning: true
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.config"
media_store_path: "{d}/media"
signing_key_path: "{d}/signing.key"
registration_shared_secret: "{secret}"
macaroon_secret_key: "{macaroon}"
form_secret: "{form}"
caches:
  sync_response_cache_duration: 0
url_preview_enabled: false
enable_metrics: false
presence:
  enabled: false
rc_message: {{per_second: 1000, burst_count: 10000}}
rc_registration: {{per_second: 1000, burst_count: 10000}}
rc_login:
  address: {{per_second: 1000, burst_count: 10000}}
  account: {{per_second: 1000, burst_count: 10000}}
  failed_attempts: {{per_second: 1000, burst_count: 10000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 10000}}
  remote: {{per_second: 1000, burst_count: 10000}}
rc_joins_per_room: {{per_second: 1000, burst_count: 10000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 10000}}
  per_user: {{per_second: 1000, burst_count: 10000}}
  per_issuer: {{per_second: 1000, burst_count: 10000}}
rc_room_creation: {{per_second: 1000, burst_count: 10000}}
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 1
  reject_limit: 100000
  concurrent: 1000
federation_rr_transactions_per_room_per_second: 1000
"""

LOG_CONFIG = """\
version: 1
formatters:
  plain:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  file:
    class: logging.FileHandler
    filename: "{d}/log"
    formatter: plain
loggers:
  synapse.storage.SQL: {{level: INFO}}
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


class Server:
    def __init__(self, name, port, workdir):
        self.name, self.port = name, port
        self.sn = "localhost:%d" % port
        self.dir = os.path.join(workdir, name)
        self.proc = None

    def configure(self):
        d = self.dir
        os.makedirs(d, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
             "-keyout", os.path.join(d, "tls.key"), "-out", os.path.join(d, "tls.crt"),
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)
        key = signedjson.key.generate_signing_key("a_" + secrets.token_hex(2))
        with open(os.path.join(d, "signing.key"), "w") as f:
            signedjson.key.write_signing_keys(f, [key])
        self.secret = secrets.token_hex(32)
        with open(os.path.join(d, "homeserver.yaml"), "w") as f:
            f.write(HOMESERVER_YAML.format(sn=self.sn, d=d, port=self.port, secret=self.secret,
                                           macaroon=secrets.token_hex(32), form=secrets.token_hex(32)))
        with open(os.path.join(d, "log.config"), "w") as f:
            f.write(LOG_CONFIG.format(d=d))

    def signing_key(self):
        with open(os.path.join(self.dir, "signing.key")) as f:
            return signedjson.key.read_signing_keys(f)[0]

    def start(self):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["no_proxy"] = "localhost,127.0.0.1"
        out = open(os.path.join(self.dir, "stdout"), "ab")
        # Run from a neutral directory: a cwd inside site-packages/synapse shadows the stdlib.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c",
             os.path.join(self.dir, "homeserver.yaml")],
            cwd=self.dir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_healthy(self, timeout=90):
        t0 = time.time()
        s = session()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited; see %s/log" % (self.name, self.dir))
            try:
                if s.get("https://127.0.0.1:%d/health" % self.port, timeout=2).text == "OK":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("%s not healthy after %ds" % (self.name, timeout))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def db(self):
        return sqlite3.connect("file:%s?mode=ro" % os.path.join(self.dir, "homeserver.db"),
                               uri=True, timeout=30)

    def log_text(self):
        with open(os.path.join(self.dir, "log"), errors="replace") as f:
            return f.read()


def session():
    s = requests.Session()
    s.verify = False        # self-signed certificates
    s.trust_env = False     # loopback only, never a proxy
    return s


class HTTPError(Exception):
    pass


def q(s):
    return urllib.parse.quote(s, safe="")


class Client:
    """A client-server API user on one of the servers."""

    def __init__(self, server, localpart):
        self.server = server
        self.s = session()
        self.base = "https://127.0.0.1:%d" % server.port
        self.token = None
        self.user_id = "@%s:%s" % (localpart, server.sn)
        nonce = self.req("GET", "/_synapse/admin/v1/register")["nonce"]
        password = "pw-" + localpart
        mac = hmac.new(server.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"notadmin"]))
        r = self.req("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": localpart, "password": password, "admin": False,
            "mac": mac.hexdigest()})
        self.token = r["access_token"]
        assert r["user_id"] == self.user_id

    def req(self, method, path, body=None, params=None):
        h = {"Authorization": "Bearer " + self.token} if self.token else {}
        r = self.s.request(method, self.base + path, json=body, params=params, headers=h, timeout=60)
        if r.status_code >= 400:
            raise HTTPError("%s %s %s -> %d %s" % (self.user_id, method, path, r.status_code, r.text[:300]))
        return r.json() if r.content else {}

    def create_room(self, **body):
        return self.req("POST", "/_matrix/client/v3/createRoom", body)["room_id"]

    def join(self, room):
        return self.req("POST", "/_matrix/client/v3/join/%s" % q(room), {}, params={"server_name": A})

    def send(self, room, content, etype="m.room.message"):
        return self.req("PUT", "/_matrix/client/v3/rooms/%s/send/%s/%s" % (q(room), q(etype), uuid.uuid4().hex),
                        content)["event_id"]

    def state(self, room, etype, content, state_key=""):
        return self.req("PUT", "/_matrix/client/v3/rooms/%s/state/%s/%s" % (q(room), q(etype), q(state_key)),
                        content)["event_id"]

    def get_state(self, room, etype, state_key=""):
        return self.req("GET", "/_matrix/client/v3/rooms/%s/state/%s/%s" % (q(room), q(etype), q(state_key)))

    def ban(self, room, user, reason=None):
        return self.req("POST", "/_matrix/client/v3/rooms/%s/ban" % q(room), {"user_id": user, "reason": reason})


# --------------------------------------------------------------------------------------------
# hsA's database as the evil server sees it (to build events on the real DAG)
# --------------------------------------------------------------------------------------------

class View:
    def __init__(self, hs):
        self.hs = hs

    def _q(self, sql, args=()):
        for attempt in range(50):
            try:
                db = self.hs.db()
                try:
                    return db.execute(sql, args).fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)

    def snapshot(self, room):
        """(state {(type, state_key): event_id}, forward extremities, max depth) of a room."""
        state = {(t, sk): e for e, t, sk in self._q(
            "SELECT event_id, type, state_key FROM current_state_events WHERE room_id = ?", (room,))}
        extrem = sorted(e for (e,) in self._q(
            "SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room,)))
        depth = self._q("SELECT MAX(depth) FROM events WHERE room_id = ?", (room,))[0][0]
        return {"state": state, "extremities": extrem, "depth": depth}

    def depth(self, event_id):
        return self._q("SELECT depth FROM events WHERE event_id = ?", (event_id,))[0][0]

    def has_event(self, event_id):
        return bool(self._q("SELECT 1 FROM events WHERE event_id = ?", (event_id,)))

    def staged(self, event_id):
        return bool(self._q("SELECT 1 FROM federation_inbound_events_staging WHERE event_id = ?", (event_id,)))

    def stored(self, event_id):
        rows = self._q("""SELECT j.json, j.internal_metadata, r.reason, e.outlier, e.stream_ordering
                          FROM event_json j JOIN events e USING (event_id)
                          LEFT JOIN rejections r USING (event_id) WHERE event_id = ?""", (event_id,))
        if not rows:
            return None
        js, im, rej, outlier, so = rows[0]
        return {"json": json.loads(js), "soft_failed": bool(json.loads(im or "{}").get("soft_failed")),
                "rejected": rej, "outlier": bool(outlier), "stream_ordering": so}

    def room_events(self, room):
        return [e for (e,) in self._q(
            "SELECT event_id FROM events WHERE room_id = ? ORDER BY stream_ordering", (room,))]

    def current_state(self, room):
        rows = self._q("SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ? "
                       "ORDER BY type, state_key", (room,))
        return [{"type": t, "state_key": sk, "event_id": e} for t, sk, e in rows]


def wait_for(fn, what, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if fn():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


# --------------------------------------------------------------------------------------------
# The evil server
# --------------------------------------------------------------------------------------------

class Evil:
    """Forges PDUs as hsC (localhost:8450) and sends them to hsA over federation."""

    def __init__(self, hsc, hsa, view):
        self.sn = hsc.sn
        self.key = hsc.signing_key()
        self.hsa = hsa
        self.view = view
        self.s = session()
        self.txn = int(time.time() * 1000)

    def auth_for(self, rv, state, sender, etype, state_key=None, content=None):
        """The spec's auth-event selection from a state."""
        keys = [("m.room.power_levels", ""), ("m.room.member", sender)]
        if rv_num(rv) < 12:
            keys.insert(0, ("m.room.create", ""))
        if etype == "m.room.member":
            m = (content or {}).get("membership")
            if m in ("join", "invite", "knock"):
                keys.append(("m.room.join_rules", ""))
            keys.append(("m.room.member", state_key))
            via = (content or {}).get("join_authorised_via_users_server")
            if m == "join" and via and rv_num(rv) >= 8:
                keys.append(("m.room.member", via))
        out = []
        for k in keys:
            if k in state and state[k] not in out:
                out.append(state[k])
        return out

    def build(self, room, rv, sender, etype, content, state_key=None, base=None, auth=None,
              prev=None, depth=None, ts=None, sign=True):
        snap = base or self.view.snapshot(room)
        prev = list(prev if prev is not None else snap["extremities"])
        if auth is None:
            auth = self.auth_for(rv, snap["state"], sender, etype, state_key, content)
        if depth is None:
            depth = max(self.view.depth(p) for p in prev) + 1 if prev else 1
        ev = {"auth_events": self.refs(rv, auth), "content": content, "depth": depth,
              "origin_server_ts": ts if ts is not None else int(time.time() * 1000),
              "prev_events": self.refs(rv, prev), "room_id": room, "sender": sender, "type": etype}
        if explicit_ids(rv):
            ev["event_id"] = "$%s:%s" % (secrets.token_urlsafe(12), self.sn)
        if state_key is not None:
            ev["state_key"] = state_key
        ev["hashes"] = {"sha256": content_hash(ev)}
        if sign:
            sign_event(ev, rv, self.sn, self.key)
        return ev

    def refs(self, rv, ids):
        """Event references: IDs, or in v1/v2 [ID, {"sha256": reference hash}] pairs."""
        if not explicit_ids(rv):
            return list(ids)
        out = []
        for i in ids:
            st = self.view.stored(i)
            h = reference_hash(st["json"], rv) if st else hashlib.sha256(i.encode()).digest()
            out.append([i, {"sha256": b64(h)}])
        return out

    def send(self, pdu):
        """PUT /send with one PDU; returns hsA's per-PDU result (or the HTTP error)."""
        self.txn += 1
        body = {"origin": self.sn, "origin_server_ts": int(time.time() * 1000), "pdus": [pdu]}
        path = "/_matrix/federation/v1/send/%d" % self.txn
        req = {"method": "PUT", "uri": path, "origin": self.sn, "destination": A, "content": body}
        sig = signedjson.sign.sign_json(req, self.sn, self.key)["signatures"][self.sn]
        (key_id, s), = sig.items()
        auth = 'X-Matrix origin="%s",key="%s",sig="%s",destination="%s"' % (self.sn, key_id, s, A)
        r = self.s.put("https://127.0.0.1:%d%s" % (SERVERS["hsA"], path), data=cjson(body),
                       headers={"Authorization": auth, "Content-Type": "application/json"}, timeout=120)
        if r.status_code != 200:
            return {"http_error": "%d %s" % (r.status_code, r.text)}
        return r.json().get("pdus", {})


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------

def change_pl(client, room, fn):
    pl = client.get_state(room, "m.room.power_levels")
    fn(pl)
    return client.state(room, "m.room.power_levels", pl)


def setup_room(rv, users, view):
    alice, bob, mallory, carol, eve = (users[k] for k in ("alice", "bob", "mallory", "carol", "eve"))
    labels = {}

    def seen(eid):
        wait_for(lambda: view.has_event(eid), "hsA has %s" % eid)
        return eid

    def member_seen(room, user):
        wait_for(lambda: ("m.room.member", user) in view.snapshot(room)["state"], "%s joined" % user)

    room = alice.create_room(room_version=rv, preset="public_chat", name="tampered v%s" % rv,
                             topic="original topic",
                             power_level_content_override={"events": {"m.room.topic": 0}})
    for u in (bob, mallory, carol, eve):
        u.join(room)
        member_seen(room, u.user_id)
    labels[seen(alice.send(room, {"msgtype": "m.text", "body": "welcome"}))] = "alice message"
    labels[seen(carol.state(room, "m.room.topic", {"topic": "carol's topic (topic needs PL 0)"}))] = \
        "carol sets topic while m.room.topic needs PL 0"
    labels[seen(carol.state(room, "m.room.member", {"membership": "join", "displayname": "Carol"},
                            state_key=carol.user_id))] = "carol displayname change (her second member event)"
    fork = view.snapshot(room)    # eve joined, topic at PL 0
    for i in range(3):
        labels[seen(alice.send(room, {"msgtype": "m.text", "body": "alice %d" % i}))] = "alice message"

    def pl(p):
        p.setdefault("users", {}).update({bob.user_id: 50, mallory.user_id: 50})
        p.setdefault("events", {})["m.room.topic"] = 50
    labels[seen(change_pl(alice, room, pl))] = "power levels: bob 50, mallory 50, m.room.topic 50"
    alice.ban(room, eve.user_id, "banned for the test")
    wait_for(lambda: view.stored(view.snapshot(room)["state"][("m.room.member", eve.user_id)])["json"]
             ["content"]["membership"] == "ban", "eve banned")
    labels[view.snapshot(room)["state"][("m.room.member", eve.user_id)]] = "alice bans eve"
    labels[seen(bob.send(room, {"msgtype": "m.text", "body": "bob was here"}))] = "bob message (hsB)"
    labels[seen(alice.state(room, "m.room.join_rules", {"join_rule": "invite"}))] = "join rule -> invite"
    labels[seen(alice.send(room, {"msgtype": "m.text", "body": "setup done"}))] = "alice message"

    side = alice.create_room(room_version=rv, preset="public_chat", name="side room v%s" % rv)
    mallory.join(side)
    member_seen(side, mallory.user_id)
    seen(change_pl(alice, side, lambda p: p.setdefault("users", {}).update({mallory.user_id: 100})))
    return room, side, fork, labels


def attacks(rv, room, side, fork, users, evil, view, hs_keys):
    """Yields (case, description, pdu) one at a time, each built on hsA's DAG as it is now."""
    alice, bob, mallory, carol, eve = (users[k] for k in ("alice", "bob", "mallory", "carol", "eve"))
    n = rv_num(rv)
    msg = lambda body: {"msgtype": "m.text", "body": body}  # noqa: E731
    st = lambda: view.snapshot(room)["state"]  # noqa: E731
    rejected = {}

    def pl_content(mutate):
        cur = view.stored(st()[("m.room.power_levels", "")])["json"]["content"]
        c = copy.deepcopy(cur)
        mutate(c)
        return c

    yield ("control_message", "carol (PL 0) sends a message with correct auth and prev events: the control",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("hello from carol")))

    # Forged senders -------------------------------------------------------------------------
    yield ("forged_sender_other_server", "message with sender @alice:localhost:8448, signed only by the evil "
           "server localhost:8450 (the sender's server did not sign)",
           evil.build(room, rv, alice.user_id, "m.room.message", msg("I am alice, honest")))
    yield ("forged_sender_power_levels", "power levels giving mallory 100, sender @alice:localhost:8448, signed "
           "only by localhost:8450",
           evil.build(room, rv, alice.user_id, "m.room.power_levels",
                      pl_content(lambda c: c["users"].__setitem__(mallory.user_id, 100)), state_key=""))
    yield ("forged_sender_bob", "message with sender @bob:localhost:8449, signed only by localhost:8450",
           evil.build(room, rv, bob.user_id, "m.room.message", msg("I am bob")))
    yield ("sender_never_joined", "message from @ghost:localhost:8450, a user of the signing server who never "
           "joined (auth events: the create and power levels events)",
           evil.build(room, rv, "@ghost:" + evil.sn, "m.room.message", msg("boo")))
    yield ("sender_never_joined_cites_other_member", "message from @ghost:localhost:8450 citing carol's member "
           "event as if it were his",
           evil.build(room, rv, "@ghost:" + evil.sn, "m.room.message", msg("boo"),
                      auth=evil.auth_for(rv, st(), carol.user_id, "m.room.message")))

    # Missing power --------------------------------------------------------------------------
    e = evil.build(room, rv, carol.user_id, "m.room.topic", {"topic": "carol's new topic"}, state_key="")
    yield ("missing_power_topic", "carol (PL 0) sets the topic, which needs PL 50", e)
    e = evil.build(room, rv, carol.user_id, "m.room.power_levels",
                   pl_content(lambda c: c["users"].__setitem__(carol.user_id, 100)), state_key="")
    rejected["carol_pl"] = e
    yield ("missing_power_power_levels", "carol (PL 0) sends power levels giving herself 100", e)
    yield ("missing_power_raise_self", "mallory (PL 50) sends power levels raising himself to 100",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                      pl_content(lambda c: c["users"].__setitem__(mallory.user_id, 100)), state_key=""))
    if n >= 12:
        yield ("missing_power_creator_in_users", "mallory (PL 50) sends power levels listing the creator "
               "@alice in users at 0 (v12: creators must not be listed)",
               evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                          pl_content(lambda c: c["users"].__setitem__(alice.user_id, 0)), state_key=""))
    else:
        yield ("missing_power_demote_admin", "mallory (PL 50) sends power levels lowering alice from 100 to 0",
               evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                          pl_content(lambda c: c["users"].__setitem__(alice.user_id, 0)), state_key=""))
    yield ("missing_power_ban", "carol (PL 0) bans bob (ban needs 50)",
           evil.build(room, rv, carol.user_id, "m.room.member", {"membership": "ban"}, state_key=bob.user_id))
    yield ("missing_power_kick_equal", "mallory (PL 50) kicks bob (PL 50): the target's level is not lower",
           evil.build(room, rv, mallory.user_id, "m.room.member", {"membership": "leave"}, state_key=bob.user_id))
    yield ("state_key_other_user", "mallory (PL 50) sends custom state with state_key @bob:localhost:8449",
           evil.build(room, rv, mallory.user_id, "org.example.state", {"x": 1}, state_key=bob.user_id))
    yield ("aliases_own_server", "carol (PL 0; state needs 50) sends m.room.aliases with her own server name "
           "localhost:8450 as state_key (v1-v5: a special rule allows it without a power check)",
           evil.build(room, rv, carol.user_id, "m.room.aliases", {"aliases": ["#tamper:" + evil.sn]},
                      state_key=evil.sn))
    yield ("power_levels_string_level", "mallory (PL 50) sends power levels with users_default \"0\" as a "
           "string (integers are required from v10)",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                      pl_content(lambda c: c.__setitem__("users_default", "0")), state_key=""))

    # Joins ----------------------------------------------------------------------------------
    yield ("join_invite_only", "@trudy:localhost:8450 joins although the join rule is now invite",
           evil.build(room, rv, "@trudy:" + evil.sn, "m.room.member", {"membership": "join"},
                      state_key="@trudy:" + evil.sn))
    yield ("join_for_other_user", "mallory sends a join with state_key @dave:localhost:8450",
           evil.build(room, rv, mallory.user_id, "m.room.member", {"membership": "join"},
                      state_key="@dave:" + evil.sn))
    yield ("knock_invite_only", "@trudy:localhost:8450 knocks although the join rule is invite (knocking "
           "exists from v7, and needs the knock or knock_restricted join rule)",
           evil.build(room, rv, "@trudy:" + evil.sn, "m.room.member", {"membership": "knock"},
                      state_key="@trudy:" + evil.sn))

    # Wrong auth events -----------------------------------------------------------------------
    s = st()
    base_auth = evil.auth_for(rv, s, carol.user_id, "m.room.message")
    yield ("auth_events_unexpected_type", "carol's message also cites the join rules event (not selected for "
           "a message)", evil.build(room, rv, carol.user_id, "m.room.message", msg("extra auth"),
                                    auth=base_auth + [s[("m.room.join_rules", "")]]))
    carol_members = [e for e in view.room_events(room)
                     if (lambda j: j["type"] == "m.room.member" and j.get("state_key") == carol.user_id)(
                         view.stored(e)["json"])]
    assert len(carol_members) == 2, carol_members
    old_member, cur_member = carol_members
    yield ("auth_events_duplicate", "carol's message cites both of her member events (two for one "
           "(type, state_key))", evil.build(room, rv, carol.user_id, "m.room.message", msg("dup auth"),
                                             auth=base_auth + [old_member]))
    yield ("auth_events_superseded_member", "carol's message cites her first member event instead of the "
           "current one (both 'join')",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("old member"),
                      auth=[old_member if a == cur_member else a for a in base_auth]))
    old_pl = fork["state"][("m.room.power_levels", "")]
    yield ("auth_events_stale_power_levels", "carol sets the topic citing the old power levels (topic at PL 0), "
           "prev_events at the current extremities",
           evil.build(room, rv, carol.user_id, "m.room.topic", {"topic": "stale pl topic"}, state_key="",
                      auth=[old_pl if a == s[("m.room.power_levels", "")] else a
                            for a in evil.auth_for(rv, s, carol.user_id, "m.room.topic")]))
    yield ("auth_events_without_power_levels", "carol's message omits the power levels from auth_events",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("no pl"),
                      auth=[a for a in base_auth if a != s[("m.room.power_levels", "")]]))
    yield ("auth_events_without_power_levels_topic", "carol (PL 0) sets the topic with no power levels event "
           "among her auth events",
           evil.build(room, rv, carol.user_id, "m.room.topic", {"topic": "no pl topic"}, state_key="",
                      auth=[a for a in evil.auth_for(rv, s, carol.user_id, "m.room.topic")
                            if a != s[("m.room.power_levels", "")]]))
    yield ("auth_events_without_power_levels_moderator_topic", "mallory (PL 50; m.room.topic needs 50) sets "
           "the topic with no power levels event among his auth events",
           evil.build(room, rv, mallory.user_id, "m.room.topic", {"topic": "moderator, no pl"}, state_key="",
                      auth=[a for a in evil.auth_for(rv, s, mallory.user_id, "m.room.topic")
                            if a != s[("m.room.power_levels", "")]]))
    if n < 12:
        yield ("auth_events_without_create", "carol's message omits the create event from auth_events",
               evil.build(room, rv, carol.user_id, "m.room.message", msg("no create"),
                          auth=[a for a in base_auth if a != s[("m.room.create", "")]]))
    else:
        create_id = "$" + room[1:]
        yield ("auth_events_with_create_v12", "v12: carol's message lists the create event in auth_events "
               "(it is implied by the room ID and must not be listed)",
               evil.build(room, rv, carol.user_id, "m.room.message", msg("create listed"),
                          auth=[create_id] + base_auth))
    yield ("auth_events_unknown", "carol's message cites an auth event nobody has",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("unknown auth"),
                      auth=base_auth + ["$nonexistent:" + evil.sn if explicit_ids(rv)
                                        else "$" + b64(hashlib.sha256(b"nonexistent").digest(), True)]))
    yield ("auth_events_rejected", "carol's message cites her own rejected power levels event (she gave "
           "herself 100) instead of the room's",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("rejected auth"),
                      auth=[evil_id(rejected["carol_pl"], rv) if a == s[("m.room.power_levels", "")] else a
                            for a in base_auth]))

    # Auth events from another room -----------------------------------------------------------
    ss = view.snapshot(side)["state"]
    side_auth = evil.auth_for(rv, ss, mallory.user_id, "m.room.power_levels")
    yield ("auth_events_other_room", "mallory sends power levels giving himself 100 in this room, citing the "
           "side room's create/power levels/member events (where he has PL 100)",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                      pl_content(lambda c: c["users"].__setitem__(mallory.user_id, 100)), state_key="",
                      auth=side_auth))
    yield ("auth_events_one_from_other_room", "mallory's message cites this room's events except the power "
           "levels, which come from the side room",
           evil.build(room, rv, mallory.user_id, "m.room.message", msg("mixed rooms"),
                      auth=[ss[("m.room.power_levels", "")] if a == s[("m.room.power_levels", "")] else a
                            for a in evil.auth_for(rv, s, mallory.user_id, "m.room.message")]))

    # Banned user -----------------------------------------------------------------------------
    s = st()
    yield ("banned_user_message", "eve (banned) sends a message citing her ban as her member event",
           evil.build(room, rv, eve.user_id, "m.room.message", msg("I'm back")))
    eve_join = fork["state"][("m.room.member", eve.user_id)]
    yield ("banned_user_stale_member", "eve (banned) sends a message citing her old join, prev_events at the "
           "current extremities",
           evil.build(room, rv, eve.user_id, "m.room.message", msg("still joined?"),
                      auth=[eve_join if a == s[("m.room.member", eve.user_id)] else a
                            for a in evil.auth_for(rv, s, eve.user_id, "m.room.message")]))
    yield ("banned_user_rejoin", "eve (banned) sends a join for herself",
           evil.build(room, rv, eve.user_id, "m.room.member", {"membership": "join"}, state_key=eve.user_id))
    now = view.snapshot(room)
    yield ("banned_user_fork", "eve (banned) sends a message on a fork from before the ban (prev_events and "
           "auth events from then); its depth is above every event of the room",
           evil.build(room, rv, eve.user_id, "m.room.message", msg("from the past"), base=fork,
                      depth=now["depth"] + 1))
    if n >= 2:
        # Not in v1: a replay, which has no arrival order, receives it before the ban and keeps it as
        # a forward extremity; state resolution v1 then lets the fork's old power levels win as soon
        # as a user who had no power in them changes the power levels, and the rest of the room
        # diverges (see the README of the vectors).
        yield ("banned_user_fork_low_depth", "as banned_user_fork, with the depth its prev_events give it "
               "(lower than the ban's)", evil.build(room, rv, eve.user_id, "m.room.message",
                                                    msg("from the past, low"), base=fork))
    yield ("stale_power_fork_topic", "carol sets the topic on a fork from before m.room.topic was raised to 50",
           evil.build(room, rv, carol.user_id, "m.room.topic", {"topic": "topic from the past"}, state_key="",
                      base=fork, depth=now["depth"] + 1))

    # Changed content -------------------------------------------------------------------------
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("signed body"))
    e["content"]["body"] = "changed after signing"
    yield ("changed_content_message", "carol's message: content.body changed after hashing and signing", e)
    e = evil.build(room, rv, mallory.user_id, "m.room.topic", {"topic": "mallory's topic"}, state_key="")
    e["content"]["topic"] = "changed after signing"
    yield ("changed_content_topic", "mallory (PL 50) sets the topic; content.topic changed after signing "
           "(the redacted topic, with empty content, becomes state)", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("extra key"))
    e["org.example.extra"] = "added after signing"
    yield ("changed_extra_top_level_key", "carol's message: an unknown top-level key added after signing", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("ts changed"))
    e["origin_server_ts"] += 1
    yield ("changed_origin_server_ts", "carol's message: origin_server_ts changed after signing (covered by "
           "the signature)", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("unsigned"))
    e["unsigned"] = {"org.example.injected": True, "age": 5}
    yield ("content_integer_out_of_range", "carol's message with the integer 2**53 in its content, outside "
           "canonical JSON's range (enforced from v6)",
           evil.build(room, rv, carol.user_id, "m.room.message",
                      dict(msg("big number"), **{"org.example.big": 2 ** 53})))
    yield ("unsigned_added", "carol's message: an unsigned section added after signing (not covered)", e)

    e = evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                   pl_content(lambda c: c.setdefault("events", {}).__setitem__("org.example.tamper", 50)),
                   state_key="")
    e["content"]["org.example.extra"] = "added after signing"
    yield ("changed_content_power_levels", "mallory (PL 50) re-sends the power levels with an extra events "
           "entry org.example.tamper at 50, then adds a content key after signing: the redacted copy (without "
           "notifications%s) becomes the room's power levels" % (" and invite" if n < 11 else ""), e)

    # Signatures ------------------------------------------------------------------------------
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("no signatures"))
    e["signatures"] = {}
    yield ("signatures_stripped", "carol's message with signatures {}", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("no signatures key"))
    del e["signatures"]
    yield ("signatures_key_removed", "carol's message without a signatures key", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("unknown key id"))
    (k, v), = e["signatures"][evil.sn].items()
    e["signatures"][evil.sn] = {"ed25519:unknown": v}
    yield ("signature_unknown_key_id", "carol's message: the signature under a key ID the server does not have", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("flipped"))
    sig = e["signatures"][evil.sn][k]
    e["signatures"][evil.sn][k] = ("A" if sig[0] != "A" else "B") + sig[1:]
    yield ("signature_invalid", "carol's message: the first character of the signature changed", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("extra garbage sig"))
    e["signatures"][evil.sn]["ed25519:zzzz"] = "A" * 86
    yield ("signature_extra_unknown_key", "carol's message: valid signature plus a garbage one under an "
           "unknown key ID of the same server", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("other server sig"))
    e["signatures"][B] = {"ed25519:" + hs_keys[B]: "A" * 86}
    yield ("signature_extra_other_server", "carol's message: valid signature plus a garbage signature from "
           "localhost:8449 (not a required signer)", e)
    if explicit_ids(rv):
        e = evil.build(room, rv, carol.user_id, "m.room.message", msg("event ID of another server"), sign=False)
        e["event_id"] = "$%s:%s" % (secrets.token_urlsafe(12), A)
        e["hashes"] = {"sha256": content_hash(e)}
        sign_event(e, rv, evil.sn, evil.key)
        yield ("event_id_other_server", "v1/v2: carol's message whose event ID has hsA's domain "
               "($...:localhost:8448), signed only by localhost:8450 (the event ID's server must sign too)", e)
    yield ("key_not_valid_at_ts", "carol's message dated 3 days ahead, after the signing key's valid_until_ts",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("from the future"),
                      ts=int(time.time() * 1000) + 3 * 86400 * 1000))

    # Misc ------------------------------------------------------------------------------------
    yield ("prev_event_rejected", "carol's message whose only prev_event is her rejected power levels event",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("after a rejected event"),
                      prev=[evil_id(rejected["carol_pl"], rv)]))
    target = [e for e in view.room_events(room) if view.stored(e)["json"]["sender"] == alice.user_id
              and view.stored(e)["json"]["type"] == "m.room.message"][0]
    red_content = {"redacts": target} if n >= 11 else {}
    red = evil.build(room, rv, carol.user_id, "m.room.redaction", red_content, sign=False)
    if n < 11:
        red["redacts"] = target
    red["hashes"] = {"sha256": content_hash(red)}
    sign_event(red, rv, evil.sn, evil.key)
    yield ("redaction_without_power", "carol (PL 0, redact needs 50) redacts one of alice's messages", red)
    yield ("power_levels_notifications_too_high", "mallory (PL 50) sets notifications.room to 100, above his "
           "own level (notifications are checked from v6)",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                      pl_content(lambda c: c.setdefault("notifications", {}).__setitem__("room", 100)),
                      state_key=""))

    # Knock and restricted join rules, set by mallory (PL 50 = state_default) ------------------
    # Every version gets the same events: before v7 (knock), v8 (restricted) and v10
    # (knock_restricted) the join rule is just an unknown value that allows no one in.
    def join_rule(case, rule):
        content = {"join_rule": rule}
        if rule != "knock":
            content["allow"] = [{"type": "m.room_membership", "room_id": side}]
        return (case, "mallory (PL 50; join rules need 50) sets the join rule to %s%s" % (
            rule, " (allow: members of the side room)" if rule != "knock" else ""),
            evil.build(room, rv, mallory.user_id, "m.room.join_rules", content, state_key=""))

    def knock(case, user, desc):
        return (case, desc, evil.build(room, rv, user, "m.room.member", {"membership": "knock"},
                                       state_key=user))

    def restricted_join(user, via):
        return evil.build(room, rv, user, "m.room.member",
                          {"membership": "join", "join_authorised_via_users_server": via},
                          state_key=user)

    yield join_rule("join_rules_knock", "knock")
    yield knock("knock_allowed", "@kim:" + evil.sn, "@kim:localhost:8450 knocks under the knock join rule "
                "(knocking exists from v7)")
    yield join_rule("join_rules_knock_restricted", "knock_restricted")
    yield knock("knock_restricted_knock", "@kai:" + evil.sn, "@kai:localhost:8450 knocks under the "
                "knock_restricted join rule (exists from v10)")
    yield join_rule("join_rules_restricted", "restricted")
    yield ("restricted_join_authorised", "@trent:localhost:8450 joins under the restricted join rule, "
           "authorised via mallory (joined, PL 50 >= invite 0; restricted joins exist from v8)",
           restricted_join("@trent:" + evil.sn, mallory.user_id))
    yield ("restricted_join_authoriser_banned", "@dora:localhost:8450 joins under the restricted join rule, "
           "authorised via eve, who is banned", restricted_join("@dora:" + evil.sn, eve.user_id))
    yield ("restricted_join_not_signed_by_authoriser", "@tom:localhost:8450 joins under the restricted join "
           "rule, authorised via @alice:localhost:8448, signed only by localhost:8450 (from v8 the "
           "authorising user's server must sign)", restricted_join("@tom:" + evil.sn, alice.user_id))
    e = restricted_join("@ria:" + evil.sn, mallory.user_id)
    e["content"]["displayname"] = "changed after signing"
    yield ("restricted_join_changed_content", "as restricted_join_authorised (@ria), with a content key added "
           "after signing: the redacted copy keeps join_authorised_via_users_server only from v9", e)

    # Values Synapse reads its own way -----------------------------------------------------------
    yield ("power_levels_state_key_invalid_users", "mallory (PL 50) sends an m.room.power_levels event with "
           "state_key org.example whose users key is not a user ID (the power-levels rule applies by type, "
           "whatever the state key)",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels", {"users": {"not-a-user": 5}},
                      state_key="org.example"))
    yield ("power_levels_state_key_odd_user_ids", "mallory sends an m.room.power_levels event with state_key "
           "org.example whose users keys have server names that are not valid (@x:bad host, @x:, "
           "@x:a:123456): Synapse only parses @localpart:domain",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                      {"users": {"@x:bad host": 0, "@x:": 0, "@x:a:123456": 0}}, state_key="org.example"))
    yield ("power_levels_events_not_object", "mallory re-sends the power levels with events 5 (not an object)",
           evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                      pl_content(lambda c: c.__setitem__("events", 5)), state_key=""))
    if n >= 6:
        # Not before v6: the auth rules do not read notifications there, and neither does Synapse.
        yield ("power_levels_notifications_not_object", "mallory re-sends the power levels with notifications "
               "5 (not an object; notifications are auth-relevant from v6)",
               evil.build(room, rv, mallory.user_id, "m.room.power_levels",
                          pl_content(lambda c: c.__setitem__("notifications", 5)), state_key=""))
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("hash of 31 bytes"), sign=False)
    e["hashes"] = {"sha256": b64(b"\x07" * 31)}
    sign_event(e, rv, evil.sn, evil.key)
    yield ("hash_wrong_length", "carol's message whose hashes.sha256 is base64 of 31 bytes (signed as such): a "
           "hash that does not match", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("big unsigned"))
    e["unsigned"] = {"org.example.pad": "A" * 70000, "age": 5}
    yield ("unsigned_too_large", "carol's message over the 65,536-byte PDU limit only through 70,000 bytes "
           "in unsigned (unsigned is reduced to age before the size check)", e)
    e = evil.build(room, rv, carol.user_id, "m.room.message", msg("floats in unsigned"))
    e["unsigned"] = {"org.example.float": 1.5, "age": 1.5}
    yield ("unsigned_float", "carol's message with floats in unsigned (canonical JSON forbids them from v6; "
           "unsigned is reduced to an integer age first)", e)
    wide = evil.build(room, rv, mallory.user_id, "org.example.state", {}, state_key="\u4e2d" * 100)
    yield ("state_key_over_255_bytes", "mallory sends state whose state_key is 100 code points, 300 bytes "
           "(over 255 bytes: kept as rejected before v11, dropped from v11)", wide)
    if n <= 10:
        yield ("prev_event_over_255_bytes", "carol's message whose only prev_event is that oversized state "
               "event (kept as rejected before v11)",
               evil.build(room, rv, carol.user_id, "m.room.message", msg("after the oversized event"),
                          prev=[evil_id(wide, rv)]))
    yield ("join_rules_not_string", "mallory sets the join rule to 5: not a string, so no join rule (only an "
           "absent join_rule reads as invite)",
           evil.build(room, rv, mallory.user_id, "m.room.join_rules", {"join_rule": 5}, state_key=""))
    yield ("join_under_non_string_join_rule", "carol (joined) changes her display name: a join, under the join "
           "rule 5",
           evil.build(room, rv, carol.user_id, "m.room.member", {"membership": "join", "displayname": "Carol 2"},
                      state_key=carol.user_id))
    yield join_rule("join_rules_restricted_again", "restricted")

    yield ("control_message_end", "carol sends a final message with correct auth and prev events",
           evil.build(room, rv, carol.user_id, "m.room.message", msg("bye")))


def evil_id(pdu, rv):
    return event_id(pdu, rv)


def log_reason(log_text, eid):
    """Synapse's own words about an event, from hsA's log."""
    lines = [l for l in log_text.splitlines() if eid in l]
    for l in lines:
        m = re.search(r"While checking auth of .*? against (auth_events|room state before the event): (.*)$", l)
        if m:
            return "against %s: %s" % (m.group(1), m.group(2))
        # Synapse 1.163 passes (event, error, origin) to "Soft-failing %r (from %s) because %s", so the
        # error appears after "from" and the origin after "because".
        m = re.search(r"Soft-failing .*? \(from (.*)\) because (\S+)$", l)
        if m:
            return "soft-failed: %s" % m.group(1)
        m = re.search(r"While validating received event .*?: (.*)$", l)
        if m:
            return "validation: %s" % m.group(1)
    all_lines = log_text.splitlines()
    for i, l in enumerate(all_lines):
        if "Failed to handle PDU " + eid in l:
            # The exception that ended the processing: the first unindented line of the traceback.
            for t in all_lines[i + 1:i + 200]:
                if t.startswith("Traceback") or t.startswith(" ") or t.startswith("During handling") or not t:
                    continue
                return "not persisted: " + t
    for l in lines:
        if "content has been tampered" in l:
            return "Event content has been tampered, redacting"
    for l in all_lines:
        # Dropped while parsing the transaction: Synapse logs no event ID, but the caller passes
        # only the log written while this PDU was handled.
        if "Ignoring PDU" in l:
            return l.split(" INFO ", 1)[-1]
    for l in lines:
        if " WARNING " in l or " ERROR " in l:
            return l.split(" WARNING ", 1)[-1].split(" ERROR ", 1)[-1][:500]
    return None


def verdict_of(view, log_text, eid, sent, send_result):
    st = view.stored(eid)
    err = None
    if isinstance(send_result, dict):
        if "http_error" in send_result:
            err = send_result["http_error"]
        elif eid in send_result and "error" in send_result[eid]:
            err = send_result[eid]["error"]
    if st is None:
        return {"verdict": "dropped", "reason": err or log_reason(log_text, eid) or "not stored"}, None
    reason = log_reason(log_text, eid)
    if st["rejected"]:
        v = "rejected"
    elif st["soft_failed"]:
        v = "soft_failed"
    elif sent is not None and st["json"].get("content") != sent.get("content"):
        v = "redacted"
    else:
        v = "accepted"
    out = {"verdict": v, "reason": reason if v != "accepted" else None}
    if st["rejected"]:
        out["rejections_reason"] = st["rejected"]
    if st["outlier"]:
        out["outlier"] = True
    return out, st


def run_version(rv, users, evil, view, hsa, hs_keys):
    t0 = time.time()
    room, side, fork, labels = setup_room(rv, users, view)
    log("v%s: room %s set up in %.1fs" % (rv, room, time.time() - t0))
    sent = {}  # event id -> (case, description, pdu, result)
    order = []
    for case, desc, pdu in attacks(rv, room, side, fork, users, evil, view, hs_keys):
        eid = event_id(pdu, rv)
        log_start = os.path.getsize(os.path.join(hsa.dir, "log"))
        res = evil.send(pdu)
        # /send stages the PDU and returns; processing happens in the background.
        wait_for(lambda: view.has_event(eid) or not view.staged(eid), "hsA processed %s" % eid, timeout=120)
        with open(os.path.join(hsa.dir, "log"), errors="replace") as f:
            f.seek(log_start)
            segment = f.read()
        sent[eid] = (case, desc, pdu, res, segment)
        order.append(eid)
    log("v%s: %d tampered PDUs sent, %.1fs in all" % (rv, len(order), time.time() - t0))

    lines = []
    log_text = hsa.log_text()
    stored_ids = view.room_events(room)
    for eid in stored_ids:
        if eid in sent:
            continue
        v, st = verdict_of(view, log_text, eid, None, None)
        lines.append({"case": "setup", "description": labels.get(eid, st["json"]["type"]),
                      "event_id": eid, "pdu": st["json"], "synapse": v})
    for eid in order:
        case, desc, pdu, res, segment = sent[eid]
        v, _ = verdict_of(view, segment, eid, pdu, res)
        lines.append({"case": case, "description": desc, "event_id": eid, "pdu": pdu, "synapse": v})
    side_lines = []
    for eid in view.room_events(side):
        v, st = verdict_of(view, log_text, eid, None, None)
        side_lines.append({"case": "setup", "description": st["json"]["type"], "event_id": eid,
                           "pdu": st["json"], "synapse": v})
    return room, side, lines, side_lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default=",".join(str(v) for v in range(1, 13)))
    ap.add_argument("--workdir", help="server state (default: a fresh temporary directory)")
    ap.add_argument("--out", default=OUT_DEFAULT)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    t_start = time.time()
    workdir = args.workdir or tempfile.mkdtemp(prefix="mxfed-tampered-")
    servers = {n: Server(n, p, workdir) for n, p in SERVERS.items()}
    try:
        for s in servers.values():
            s.configure()
            s.start()
        for s in servers.values():
            s.wait_healthy()
        log("servers up in %.1fs (%s)" % (time.time() - t_start, workdir))
        hsa, hsb, hsc = servers["hsA"], servers["hsB"], servers["hsC"]
        users = {"alice": Client(hsa, "alice"), "bob": Client(hsb, "bob"), "mallory": Client(hsc, "mallory"),
                 "carol": Client(hsc, "carol"), "eve": Client(hsc, "eve")}
        view = View(hsa)
        evil = Evil(hsc, hsa, view)
        hs_keys = {s.sn: s.signing_key().version for s in servers.values()}
        results = {}
        for rv in args.versions.split(","):
            results[rv] = run_version(rv, users, evil, view, hsa, hs_keys)
        write_out(args.out, results, servers, view)
    finally:
        for s in servers.values():
            s.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    log("done in %.1fs" % (time.time() - t_start))


def write_out(out, results, servers, view):
    os.makedirs(os.path.join(out, "keys"), exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".jsonl"):
            os.remove(os.path.join(out, f))
    s = session()
    for srv in servers.values():
        resp = s.get("https://127.0.0.1:%d/_matrix/key/v2/server" % srv.port, timeout=10).json()
        with open(os.path.join(out, "keys", srv.sn.replace(":", "_") + ".json"), "w") as f:
            json.dump(resp, f, indent=1, sort_keys=True)
            f.write("\n")
    states, index = {}, {}
    for rv, (room, side, lines, side_lines) in results.items():
        name = "v%s.jsonl" % rv
        for fname, ls in ((name, lines), ("v%s_side.jsonl" % rv, side_lines)):
            with open(os.path.join(out, fname), "w") as f:
                for line in ls:
                    f.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
        states[room] = view.current_state(room)
        states[side] = view.current_state(side)
        counts = {}
        for line in lines:
            counts[line["synapse"]["verdict"]] = counts.get(line["synapse"]["verdict"], 0) + 1
        index[name] = {"room_id": room, "room_version": rv, "side_room": "v%s_side.jsonl" % rv,
                       "side_room_id": side, "verdicts": counts}
    with open(os.path.join(out, "current_state.json"), "w") as f:
        json.dump(states, f, indent=1, sort_keys=True)
        f.write("\n")
    import synapse
    with open(os.path.join(out, "rooms.json"), "w") as f:
        json.dump({"synapse_version": synapse.__version__, "rooms": index}, f, indent=1, sort_keys=True)
        f.write("\n")
    log(json.dumps(index, indent=1))


if __name__ == "__main__":
    main()

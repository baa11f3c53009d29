"""Scenarios 10 (server keys: direct, through a notary, mxfed as Synapse's notary) and 11
(profile and directory queries both ways). Keys and queries belong to servers, not rooms, so
these run once, not per room version."""

import json
import secrets
import time

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from interop_lib import HttpError, enc

S10 = "10 keys"
S11 = "11 profile and directory queries"


def verifies(obj, server, keys):
    """Whether `obj` carries a valid signature of `server` by one of `keys` ({key_id: base64})."""
    for key_id, b64 in keys.items():
        if key_id not in obj.get("signatures", {}).get(server, {}):
            continue
        try:
            verify_signed_json(obj, server, decode_verify_key_bytes(key_id, decode_base64(b64)))
            return True
        except SignatureVerifyException:
            return False
    return False


def keys_both_ways(env):
    """mxfed is configured with the first Synapse (A) as trusted notary; the second Synapse (B) with
    mxfed as its only trusted key server."""
    R, A, B, mx = env.R, env.A, env.B, env.mx
    a_keys = A.verify_keys()
    mx_keys = {k: v["key"] for k, v in env.mx_key_answer["verify_keys"].items()}

    # B's user joins A's room: B needs A's keys and asks its notary, mxfed, which fetches them
    # from A directly.
    room = env.alice.create_room(12, name="keys")
    env.alice.invite(room, env.dora.user_id)
    R.check(S10, None, env.dora.sync_until("the invite on B", lambda r: room in r.get("rooms", {}).get("invite", {})),
            "the second Synapse got an invite from the first")
    env.dora.join(room, A.server_name)
    direct = mx.key_response(A.server_name)
    R.check(S10, None, direct is not None and {k: v["key"] for k, v in direct["verify_keys"].items()} == a_keys,
            "mxfed fetched and cached Synapse's keys")
    R.check(S10, None, A.access_log_has("GET /_matrix/key/v2/server HTTP/1.1", "mxfed/"),
            "directly: Synapse's access log shows mxfed's GET /_matrix/key/v2/server")
    with B.db() as c:
        rows = c.execute("SELECT DISTINCT from_server FROM server_keys_json WHERE server_name = ?",
                         (A.server_name,)).fetchall()
    R.check(S10, None, (mx.server_name,) in rows,
            f"Synapse (trusted_key_servers: mxfed) took the first Synapse's keys from mxfed as notary (from {rows})")

    # Synapse's own notary query against mxfed, checked here with signedjson.
    ans = env.synapse_signer.request(mx.port, mx.server_name, "POST", "/_matrix/key/v2/query",
                                     {"server_keys": {A.server_name: {}}})
    got = [k for k in ans.get("server_keys", []) if k.get("server_name") == A.server_name]
    R.check(S10, None, len(got) == 1 and {k: v["key"] for k, v in got[0]["verify_keys"].items()} == a_keys,
            "POST /_matrix/key/v2/query to mxfed answers the first Synapse's keys")
    R.check(S10, None, bool(got) and verifies(got[0], A.server_name, a_keys) and verifies(got[0], mx.server_name, mx_keys),
            "the answer carries Synapse's own signature and mxfed's countersignature (signedjson verifies both)")

    # Through a notary: B is down, so mxfed cannot fetch B's keys directly; A (its notary) has them.
    R.check(S10, None, mx.key_response(B.server_name) is None, "mxfed has never needed the second Synapse's keys yet")
    B.stop()
    try:
        txn = secrets.token_hex(6)
        r = env.b_signer.request(mx.port, mx.server_name, "PUT", f"/_matrix/federation/v1/send/{txn}",
                                 {"origin": B.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": []})
        status = "200" if isinstance(r, dict) else str(r)
    except HttpError as e:
        status = f"{e.code} {e.body[:120]}"
    R.check(S10, None, status == "200",
            f"a request signed by the (stopped) second Synapse is accepted by mxfed ({status})")
    via = mx.key_response(B.server_name)
    R.check(S10, None, via is not None and A.server_name in via.get("signatures", {}),
            "mxfed got the second Synapse's keys through its trusted notary (countersigned by the first Synapse)")
    R.check(S10, None, A.access_log_has("POST /_matrix/key/v2/query HTTP/1.1", "mxfed/"),
            "Synapse's access log shows mxfed's notary query (POST /_matrix/key/v2/query)")
    B.start()


def queries(env):
    R, A, mx, alice = env.R, env.A, env.mx, env.alice
    # Synapse -> mxfed
    prof = alice.api("GET", f"/_matrix/client/v3/profile/{enc(env.bot)}")
    R.check(S11, None, prof.get("displayname") == "Bot",
            f"Synapse's profile lookup of mxfed's user (query/profile) gives its display name ({prof})")
    code = None
    try:
        alice.api("GET", f"/_matrix/client/v3/directory/room/{enc('#nothing:' + mx.server_name)}")
    except HttpError as e:
        code = (e.code, e.json.get("errcode"))
    R.check(S11, None, code == (404, "M_NOT_FOUND"),
            f"Synapse's alias lookup on mxfed (query/directory, mxfed has no aliases) is a 404 M_NOT_FOUND ({code})")

    # mxfed -> Synapse: `mxfed admin query profile|directory` (signed by mxfed's federation client).
    alias = f"#interop-{secrets.token_hex(3)}:{A.server_name}"
    room = alice.create_room(12, name="directory")
    alice.api("PUT", f"/_matrix/client/v3/directory/room/{enc(alias)}", {"room_id": room})
    alice.api("PUT", f"/_matrix/client/v3/profile/{enc(alice.user_id)}/displayname", {"displayname": "Alice A"})
    p = json.loads(mx.admin("query", "profile", alice.user_id))
    R.check(S11, None, p.get("displayname") == "Alice A", f"`mxfed admin query profile` of a Synapse user ({p})")
    p = json.loads(mx.admin("query", "profile", alice.user_id, "--field", "displayname"))
    R.check(S11, None, p == {"displayname": "Alice A"}, f"the same with --field displayname ({p})")
    d = json.loads(mx.admin("query", "directory", alias))
    R.check(S11, None, d.get("room_id") == room and A.server_name in d.get("servers", []),
            f"`mxfed admin query directory` resolves a Synapse alias ({d})")
    err = ""
    try:
        mx.admin("query", "directory", f"#none:{A.server_name}")
    except RuntimeError as e:
        err = str(e)
    R.check(S11, None, "HTTP 404 M_NOT_FOUND" in err, f"an unknown Synapse alias is Synapse's 404 M_NOT_FOUND ({err[-80:]})")

    # mxfed's own answers, asked as Synapse would ask them (signed as the first Synapse).
    p = env.synapse_signer.request(mx.port, mx.server_name, "GET",
                                   f"/_matrix/federation/v1/query/profile?user_id={enc(env.bot)}&field=displayname")
    R.check(S11, None, p == {"displayname": "Bot"}, f"mxfed answers query/profile with field=displayname ({p})")

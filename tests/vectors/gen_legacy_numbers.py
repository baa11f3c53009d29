"""Generates legacy_numbers.json: room version 1-5 events holding floats and big integers,
hashed and signed exactly as Synapse does it, with Python's json, canonicaljson 2.0.0 and
signedjson 1.1.4.

Run: python gen_legacy_numbers.py > legacy_numbers.json   (needs canonicaljson, signedjson)
"""

import hashlib
import json

from canonicaljson import encode_canonical_json
from signedjson.key import decode_signing_key_base64
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
KEY = decode_signing_key_base64("ed25519", "1", SEED)

# Redaction for room versions 1-5, enough for the event types below.
PL_KEYS = {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
TOP = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership",
}


def redact(ev):
    out = {k: v for k, v in ev.items() if k in TOP}
    content = ev.get("content", {})
    if ev["type"] == "m.room.power_levels":
        out["content"] = {k: v for k, v in content.items() if k in PL_KEYS}
    else:
        out["content"] = {}
    return out


RAW = [
    ("1", '{"type":"m.room.power_levels","room_id":"!r:domain","sender":"@u:domain","state_key":"","event_id":"$pl:domain","origin":"domain","origin_server_ts":1000000,"depth":4,"prev_events":[],"auth_events":[],"content":{"users":{"@u:domain":100.0,"@v:domain":50.5},"users_default":0.0,"ban":1e2,"kick":"50","events":{"m.room.name":1.5e1}},"hashes":{},"signatures":{}}'),
    ("5", '{"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","origin":"domain","origin_server_ts":1000000,"depth":7,"prev_events":[],"auth_events":[],"content":{"body":"floats","f":0.1,"tiny":1e-7,"huge":1.5e300,"big":18446744073709551616,"neg":-9007199254740993,"exp":1E+16,"trail":2.50},"hashes":{},"signatures":{}}'),
    # Ties: each exact value lies halfway between two 17-digit decimals; repr takes the even one.
    ("4", '{"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","origin":"domain","origin_server_ts":1000000,"depth":8,"prev_events":[],"auth_events":[],"content":{"body":"ties","a":132783019801936.625,"b":-1554135830000000.25,"c":165106605853604.625,"d":821266108446277.25},"hashes":{},"signatures":{}}'),
    ("3", '{"type":"m.room.power_levels","room_id":"!r:domain","sender":"@u:domain","state_key":"","origin":"domain","origin_server_ts":1000000,"depth":4,"prev_events":[],"auth_events":[],"content":{"users":{"@u:domain":9007199254740992},"redact":50.0,"state_default":-0.0},"hashes":{},"signatures":{}}'),
]

vectors = []
for rv, raw in RAW:
    ev = json.loads(raw)
    # Synapse's compute_content_hash pops these before hashing.
    hashed = {k: v for k, v in ev.items() if k not in ("signatures", "unsigned", "hashes", "age_ts", "outlier", "destinations")}
    content_hash = hashlib.sha256(encode_canonical_json(hashed)).digest()
    ev["hashes"] = {"sha256": encode_base64(content_hash)}
    ev["signatures"] = sign_json(redact(ev), "domain", KEY)["signatures"]
    ref = redact(ev)
    ref.pop("signatures")
    vectors.append({
        "room_version": rv,
        "input": raw,
        "content_hash": encode_base64(content_hash),
        "signature": ev["signatures"]["domain"]["ed25519:1"],
        "reference_hash": encode_base64(hashlib.sha256(encode_canonical_json(ref)).digest()),
        "canonical_python": encode_canonical_json(ev).decode(),
    })

print(json.dumps({
    "description": "Events of room versions 1-5 holding floats and integers beyond 2^53, hashed and "
    "signed the way Synapse does (Python json + canonicaljson 2.0.0 + signedjson 1.1.4): content hash "
    "over the event minus signatures/unsigned/hashes, signature over the v1-v5 redacted form.",
    "seed_base64": SEED,
    "server_name": "domain",
    "key_id": "ed25519:1",
    "vectors": vectors,
}, indent=1, ensure_ascii=False))

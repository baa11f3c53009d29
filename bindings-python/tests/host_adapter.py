"""The Python host of the cross-host conformance runner (tests/src/process_host.rs).

Reads one request per line, ``{"op": NAME, "args": {...}}``, and answers one line each:
``{"ok": STRING}``, ``{"err": CODE}`` or ``{"unsupported": true}``. Operation and argument names
are those of the ``Host`` trait. Every operation is a call into ``mxfed``; outputs are the
canonical JSON of the returned value (with the room version's number rules for events).
"""

import json
import sys
from typing import Any, Callable, Dict, List, Optional

import mxfed


def _key(seed: str, version: str) -> mxfed.SigningKey:
    return mxfed.SigningKey.from_seed(version, seed)


def _b(s: Optional[str]) -> Optional[bytes]:
    return None if s is None else s.encode("utf-8")


def _canon(value: Any, room_version: Optional[str] = None) -> str:
    return mxfed.canonical_json(value, room_version=room_version).decode("utf-8")


def canonical_json(input: str) -> str:
    return mxfed.canonical_json(input.encode("utf-8")).decode("utf-8")


def sign_json(seed: str, version: str, server: str, input: str) -> str:
    return _canon(mxfed.sign_json(_b(input), server, _key(seed, version)))


def verify_json(server: str, key_id: str, public_key: str, input: str) -> str:
    mxfed.verify_json(_b(input), server, {key_id: public_key})
    return ""


def public_key(seed: str) -> str:
    return _key(seed, "1").verify_key


def content_hash(room_version: str, event: str) -> str:
    return mxfed.content_hash(_b(event), room_version)


def reference_hash(room_version: str, event: str) -> str:
    return mxfed.reference_hash(_b(event), room_version)


def event_id(room_version: str, event: str) -> str:
    return mxfed.event_id(_b(event), room_version)


def room_id(room_version: str, event: str) -> str:
    return mxfed.room_id(_b(event), room_version)


def redact(room_version: str, event: str) -> str:
    return _canon(mxfed.redact(_b(event), room_version), room_version)


def hash_and_sign_event(room_version: str, seed: str, version: str, server: str, event: str) -> str:
    signed = mxfed.hash_and_sign_event(_b(event), room_version, server, _key(seed, version))
    return _canon(signed, room_version)


def check_pdus(room_version: str, keys: List[str], pdus: str) -> str:
    lines = [line.encode("utf-8") for line in pdus.split("\n") if line]
    verdicts = mxfed.check_pdus(lines, room_version, [k.encode("utf-8") for k in keys])
    return "".join(_canon(v) + "\n" for v in verdicts)


def sign_request(
    seed: str,
    version: str,
    origin: str,
    destination: str,
    method: str,
    uri: str,
    content: Optional[str],
) -> str:
    headers = mxfed.sign_request(_key(seed, version), origin, destination, method, uri, _b(content))
    return "\n".join(headers)


def verify_request(
    destination: str,
    keys: List[str],
    method: str,
    uri: str,
    content: Optional[str],
    headers: List[str],
    now_ms: int,
) -> str:
    ring = mxfed.KeyRing([k.encode("utf-8") for k in keys])
    auth = mxfed.verify_request(destination, ring, method, uri, headers, _b(content), now_ms)
    origin: str = auth["origin"]
    return origin


def server_keys(seed: str, version: str, server: str, valid_until_ts: int) -> str:
    return _canon(mxfed.server_keys(server, _key(seed, version), valid_until_ts))


def base64_encode(input: str) -> str:
    return mxfed.encode_base64(input.encode("utf-8"))


def server_acl_allows(content: str, server_name: str) -> str:
    return "true" if mxfed.server_acl_allows(content.encode("utf-8"), server_name) else "false"


def discovery_plan(server_name: str, well_known: Optional[str]) -> str:
    return _canon(mxfed.discovery_plan(server_name, _b(well_known)))


def is_canonical_json(input_hex: str) -> str:
    return "true" if mxfed.is_canonical_json(bytes.fromhex(input_hex)) else "false"


def pick_srv(records: str) -> str:
    return _canon(mxfed.pick_srv(records.encode("utf-8")))


def srv_targets(records: str) -> str:
    return _canon(mxfed.srv_targets(records.encode("utf-8")))


def well_known_lifetime(cache_control: Optional[str], expires: Optional[str], now_ms: int) -> str:
    return str(mxfed.well_known_lifetime(cache_control, expires, now_ms=now_ms))


def server_may_see(visibility: Optional[str], memberships: List[str]) -> str:
    may_see = mxfed.server_may_see(visibility, memberships)
    # The visibility as understood: the core's, through the same call the CLI makes.
    understood = visibility if visibility in ("world_readable", "invited", "joined") else "shared"
    return _canon({"history_visibility": understood, "may_see": may_see})


def _pdu_lines(pdus: str) -> List[bytes]:
    return [line.encode("utf-8") for line in pdus.split("\n") if line]


def room_replay(room_version: str, keys: List[str], pdus: str) -> str:
    verdicts, state = mxfed.replay(_pdu_lines(pdus), room_version, [k.encode("utf-8") for k in keys])
    return "\n".join([_canon(v) for v in verdicts] + [_canon({"state": state})])


def restricted_join(
    room_version: str,
    keys: List[str],
    pdus: str,
    user_id: str,
    server_name: str,
    joined_to: Dict[str, bool],
) -> str:
    room = mxfed.Room(room_version)
    room.receive_all(_pdu_lines(pdus), mxfed.KeyRing([k.encode("utf-8") for k in keys]))
    return _canon({"via": room.restricted_join(user_id, server_name, joined_to)})


def membership_from_template(seed: str, version: str, answer: str, request: Dict[str, Any]) -> str:
    out = mxfed.membership_from_template(
        answer.encode("utf-8"),
        request["room_id"],
        request["user_id"],
        request["membership"],
        request["origin"],
        _key(seed, version),
        now_ms=request["now_ms"],
        content=request.get("content"),
        event_id_localpart=request.get("event_id_localpart"),
    )
    return _canon(out, out["room_version"])


OPS: Dict[str, Callable[..., str]] = {
    f.__name__: f
    for f in [
        canonical_json,
        sign_json,
        verify_json,
        public_key,
        content_hash,
        reference_hash,
        event_id,
        room_id,
        redact,
        hash_and_sign_event,
        check_pdus,
        sign_request,
        verify_request,
        server_keys,
        base64_encode,
        server_acl_allows,
        discovery_plan,
        pick_srv,
        srv_targets,
        well_known_lifetime,
        is_canonical_json,
        server_may_see,
        room_replay,
        restricted_join,
        membership_from_template,
    ]
}


def handle(line: str) -> Dict[str, Any]:
    req = json.loads(line)
    op = OPS.get(req.get("op"))
    if op is None:
        return {"unsupported": True}
    try:
        return {"ok": op(**req.get("args", {}))}
    except mxfed.MxfedError as e:
        return {"err": e.code}
    except Exception as e:  # a bug in the binding: report it as a code the runner will show
        return {"err": "python_exception: %s: %s" % (type(e).__name__, e)}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        sys.stdout.write(json.dumps(handle(line)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Writes membership_template.json: make_join / make_leave / make_knock answers and the signed
membership event the joining server sends back, as Synapse builds it.

The expected events come from Synapse itself, not from mxfed: each template goes through
`synapse.events.builder.create_local_event_from_event_dict` (what Synapse's
`make_membership_event` calls on a resident's template), given what the spec says the joining
server replaces (origin, origin_server_ts, the old hashes, signatures and unsigned) already
replaced, since Synapse keeps a template's own. Room versions 1-2 take the event ID the request
names (every host draws one when none is given, so that case is not a vector). The refusals'
codes are mxfed's (Synapse raises assertions or generic errors there).

    .venv/bin/python tests/vectors/gen_membership_template.py   # needs matrix-synapse
"""

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from signedjson.key import decode_signing_key_base64
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import builder

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
KEY = decode_signing_key_base64("ed25519", "1", SEED)
OUT = Path(__file__).with_name("membership_template.json")
NOW = 1_700_000_000_000


class Clock:
    def time_msec(self) -> int:
        return NOW


def template(version: Optional[str], membership: str, **changes: Any) -> Dict[str, Any]:
    old_format = version in (None, "1", "2")
    ev: Dict[str, Any] = {
        "type": "m.room.member",
        "room_id": "!room:resident.example",
        "sender": "@alice:us.example",
        "state_key": "@alice:us.example",
        "content": {"membership": membership},
        "prev_events": [["$p:resident.example", {"sha256": "aGFzaA"}]] if old_format else ["$prev"],
        "auth_events": [["$c:resident.example", {"sha256": "aGFzaA"}]] if old_format else ["$create", "$power"],
        "depth": 12,
        "origin": "resident.example",
        "origin_server_ts": 1_600_000_000_000,
        "hashes": {"sha256": "AAAA"},
        "signatures": {"resident.example": {"ed25519:x": "AAAA"}},
        "unsigned": {"age": 5},
    }
    ev.update(changes)
    answer: Dict[str, Any] = {"event": ev}
    if version is not None:
        answer["room_version"] = version
    return answer


def request(membership: str, **extra: Any) -> Dict[str, Any]:
    r = {
        "room_id": "!room:resident.example",
        "user_id": "@alice:us.example",
        "membership": membership,
        "origin": "us.example",
        "now_ms": NOW,
    }
    r.update(extra)
    return r


def synapse_builds(answer: Dict[str, Any], req: Dict[str, Any]) -> Dict[str, Any]:
    version = answer.get("room_version", "1")
    ev = copy.deepcopy(answer["event"])
    for k in ("origin_server_ts", "hashes", "signatures", "unsigned"):
        ev.pop(k, None)
    ev["origin"] = req["origin"]
    ev["content"].update(req.get("content", {}))
    local = req.get("event_id_localpart")
    original = builder._create_event_id
    builder._create_event_id = lambda clock, hostname: f"${local}:{hostname}"
    try:
        built = builder.create_local_event_from_event_dict(
            Clock(), req["origin"], KEY, KNOWN_ROOM_VERSIONS[version], ev
        )
    finally:
        builder._create_event_id = original
    pdu = built.get_pdu_json()
    pdu.pop("unsigned", None)
    return {"event": pdu, "event_id": built.event_id, "room_version": version}


def main() -> None:
    cases: List[Dict[str, Any]] = []

    def ok(name: str, answer: Dict[str, Any], req: Dict[str, Any]) -> None:
        cases.append({"name": name, "answer": answer, "request": req, "expected": synapse_builds(answer, req)})

    def refused(name: str, answer: Any, req: Dict[str, Any], code: str) -> None:
        cases.append({"name": name, "answer": answer, "request": req, "error": code})

    ok("v10 join with a display name", template("10", "join"), request("join", content={"displayname": "Alice"}))
    ok(
        "v10 restricted join keeps the resident's authoriser",
        template("10", "join", content={"membership": "join", "join_authorised_via_users_server": "@bob:resident.example"}),
        request("join"),
    )
    ok("v3 join", template("3", "join"), request("join"))
    ok("v11 leave", template("11", "leave"), request("leave"))
    ok("v7 knock", template("7", "knock"), request("knock"))
    ok("v12 join", template("12", "join"), request("join"))
    ok("v1 join (no room_version)", template(None, "join"), request("join", event_id_localpart="abcdef"))
    ok("v2 leave", template("2", "leave"), request("leave", event_id_localpart="xyz"))
    ok("unknown keys in the template are kept and signed", template("10", "join", x_extra=[1, 2]), request("join"))

    refused("sender not asked for", template("10", "join", sender="@mallory:us.example"), request("join"), "template_not_asked")
    refused("state key not asked for", template("10", "join", state_key="@mallory:us.example"), request("join"), "template_not_asked")
    refused("another room", template("10", "join", room_id="!other:resident.example"), request("join"), "template_not_asked")
    refused("not a member event", template("10", "join", type="m.room.message"), request("join"), "template_not_asked")
    refused("a leave for a join", template("10", "leave"), request("join"), "template_not_asked")
    refused(
        "a restricted join's authoriser that is not a user ID",
        template("10", "join", content={"membership": "join", "join_authorised_via_users_server": "@bob:bad&host"}),
        request("join"),
        "bad_user_id",
    )
    refused("no event", {"room_version": "10"}, request("join"), "template_no_event")
    refused("unknown room version", template("99", "join"), request("join"), "unsupported_room_version")
    refused("knock in v6", template("6", "knock"), request("knock"), "template_no_knock")
    refused("not a handshake", template("10", "ban"), request("ban"), "template_bad_membership")
    OUT.write_text(
        json.dumps({"seed_base64": SEED, "key_version": "1", "cases": cases}, indent=1, ensure_ascii=False) + "\n"
    )
    print(f"{OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()

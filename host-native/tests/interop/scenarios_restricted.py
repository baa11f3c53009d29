"""Scenario 13: restricted joins both ways. mxfed as the resident server names its own user in
`join_authorised_via_users_server` and countersigns Synapse's join; Synapse does the same for
mxfed's join into a restricted Synapse room."""

import json

from interop_lib import wait_until

S13 = "13 restricted joins"


def restricted_both_ways(env, v):
    R, mx, alice, carol = env.R, env.mx, env.alice, env.carol
    rules = lambda allowed: {"join_rule": "restricted",  # noqa: E731
                             "allow": [{"type": "m.room_membership", "room_id": allowed}]}

    # mxfed resident: carol (on A) is in mxfed's room `space`; mxfed's restricted room allows it.
    space = mx.admin("room", "create", "--as", "bot", "--version", str(v))
    mx.admin("room", "invite", space, carol.user_id, "--as", "bot")
    carol.sync_until("the invite on A", lambda r: space in r.get("rooms", {}).get("invite", {}))
    carol.join(space, mx.server_name)
    R.check(S13, v, mx.wait_joined(space, carol.user_id), "carol joined mxfed's allowed room")
    room = mx.admin("room", "create", "--as", "bot", "--version", str(v))
    mx.admin("room", "state-set", room, "m.room.join_rules", "", json.dumps(rules(space)), "--as", "bot")
    carol.join(room, mx.server_name)
    R.check(S13, v, mx.wait_joined(room, carol.user_id), "carol joined mxfed's restricted room through mxfed")
    join = [e for e in mx.timeline(room)
            if e.get("type") == "m.room.member" and e.get("state_key") == carol.user_id][-1]
    R.check(S13, v, join["content"].get("join_authorised_via_users_server") == env.bot
            and mx.server_name in join.get("signatures", {}),
            "the join names mxfed's bot as authoriser and carries mxfed's signature")
    R.check(S13, v, wait_until("same state", lambda: carol.state_ids(room) == mx.state(room)),
            "same current state on both (mxfed's restricted room)")

    # Synapse resident: bot is in alice's room `allowed`; alice's restricted room allows it.
    allowed = alice.create_room(v, name=f"allowed v{v}")
    alice.invite(allowed, env.bot)
    R.check(S13, v, mx.wait_joined(allowed, env.bot), "bot joined alice's allowed room")
    sroom = alice.create_room(v, name=f"restricted v{v}")
    alice.put_state(sroom, "m.room.join_rules", "", rules(allowed))
    mx.admin("room", "join", sroom, "--via", env.A.server_name, "--as", "bot")
    R.check(S13, v, wait_until("same state", lambda: alice.state_ids(sroom) == mx.state(sroom)),
            "bot joined alice's restricted room through A's authorisation; same state on both")

"""Scenarios 1-5 and 12: joins both ways, messages both ways, topic and redaction, typing and
read receipts both ways, and the older room versions."""

import json

from interop_lib import ephemeral, wait_until

S1 = "1 mxfed joins Synapse's room"
S2 = "2 Synapse -> mxfed messages"
S3 = "3 mxfed -> Synapse messages/topic/redaction"
S4 = "4 Synapse joins mxfed's room"
S5 = "5 typing and receipts"
S12 = "12 older room versions"


def timeline_ids(mx, room):
    """Event IDs of mxfed's timeline (the same filter as `mxfed admin room timeline`)."""
    with mx.db() as c:
        rows = c.execute(
            "SELECT event_id, json FROM events WHERE room_id = ? AND outlier = 0 AND rejected = 0 "
            "AND soft_failed = 0 ORDER BY stream", (room,)).fetchall()
    return [(eid, json.loads(j).get("type")) for eid, j in rows]


def synapse_room_joined_by_mxfed(env, v, label=S1):
    """Scenario 1: a Synapse user's room, @bot:<mxfed> invited, auto-accept, join; returns the room."""
    R, mx, alice, carol = env.R, env.mx, env.alice, env.carol
    room = alice.create_room(v, name=f"interop v{v}")
    alice.invite(room, carol.user_id)
    carol.join(room, env.A.server_name)
    alice.invite(room, env.bot)
    R.check(label, v, mx.wait_joined(room, env.bot), "mxfed's user joined (auto-accept, make_join/send_join)")
    R.check(label, v, wait_until("the join on Synapse", lambda: alice.membership(room, env.bot) == "join"),
            "Synapse's client API shows mxfed's user joined")
    rooms = json.loads(mx.admin("room", "list"))["rooms"]
    R.check(label, v, any(r["room_id"] == room and r["room_version"] == str(v) for r in rooms),
            f"mxfed holds the room as version {v}")
    return room


def synapse_to_mxfed_messages(env, v, room, label=S2):
    """Scenario 2: messages of two Synapse users reach mxfed, pass its checks, show in its timeline."""
    R, mx = env.R, env.mx
    sent = [(env.alice.send(room, f"alice says {i} in v{v}"), f"alice says {i} in v{v}") for i in range(2)]
    sent.append((env.carol.send(room, f"carol says hi in v{v}"), f"carol says hi in v{v}"))
    arrived = all(mx.wait_event(room, e) for e, _ in sent)
    R.check(label, v, arrived, "all 3 messages arrived at mxfed")
    R.check(label, v, all(mx.verdict(e) == "accepted" for e, _ in sent),
            "mxfed accepted them (format, signatures, hashes, auth)")
    timeline = mx.admin("room", "timeline", room)
    R.check(label, v, all(body in timeline for _, body in sent), "all 3 bodies in `mxfed admin room timeline`")
    return [e for e, _ in sent]


def mxfed_to_synapse(env, v, room, label=S3, topic=True):
    """Scenario 3: mxfed's user sends messages, a topic and a redaction; Synapse shows them."""
    R, mx, alice = env.R, env.mx, env.alice
    m1 = mx.admin("room", "send", room, f"bot says one in v{v}", "--as", "bot")
    m2 = mx.admin("room", "send", room, f"bot says two in v{v}", "--as", "bot")
    R.check(label, v, wait_until("bot's messages on Synapse", lambda: alice.has(room, m1) and alice.has(room, m2)),
            "mxfed's messages reached Synapse")
    R.check(label, v, alice.event(room, m2)["content"].get("body") == f"bot says two in v{v}",
            "Synapse shows the message's body")
    if not topic:
        return m2
    topic_args = ("room", "state-set", room, "m.room.topic", "", json.dumps({"topic": f"topic v{v}"}), "--as", "bot")
    refused = None
    try:
        mx.admin(*topic_args)
    except RuntimeError as e:
        refused = "auth_send_insufficient_power" in str(e)
    R.check(label, v, refused, "at power 0 (private_chat) mxfed refuses bot's topic change itself, as Synapse would")
    pl = alice.get_state(room, "m.room.power_levels")
    pl.setdefault("users", {})[env.bot] = 50
    raised = alice.put_state(room, "m.room.power_levels", "", pl)
    R.check(label, v, mx.wait_event(room, raised), "Synapse's user raises bot to power 50")
    mx.admin(*topic_args)
    R.check(label, v, wait_until("the topic on Synapse", lambda: alice.get_state(room, "m.room.topic").get("topic") == f"topic v{v}"),
            "Synapse shows mxfed's topic change")
    red = mx.admin("room", "redact", room, m1, "--as", "bot", "--reason", "interop")
    ok = wait_until("the redaction on Synapse", lambda: alice.has(room, red))
    R.check(label, v, ok, "mxfed's redaction reached Synapse")
    ev = alice.event(room, m1)
    R.check(label, v, ev.get("content") == {} and "redacted_because" in ev.get("unsigned", {}),
            "Synapse serves the redacted message without content")
    R.check(label, v, wait_until("same state", lambda: alice.state_ids(room) == mx.state(room)),
            "same current state on both")
    return m2


def mxfed_room_joined_by_synapse(env, v, label=S4):
    """Scenario 4: mxfed creates the room, a Synapse user is invited and joins through mxfed."""
    R, mx, carol = env.R, env.mx, env.carol
    room = mx.admin("room", "create", "--as", "bot", "--version", str(v))
    mx.admin("room", "invite", room, carol.user_id, "--as", "bot")
    R.check(label, v, carol.sync_until("the invite", lambda r: room in r.get("rooms", {}).get("invite", {})),
            "the invite reached Synapse (/invite v2, countersigned)")
    carol.join(room, mx.server_name)
    R.check(label, v, mx.wait_joined(room, carol.user_id), "Synapse's user joined (make_join/send_join on mxfed)")
    e1 = carol.send(room, f"carol in mxfed's v{v} room")
    R.check(label, v, mx.wait_event(room, e1), "Synapse's message reached mxfed's room")
    e2 = mx.admin("room", "send", room, f"bot answers in v{v}", "--as", "bot")
    R.check(label, v, wait_until("bot's answer on Synapse", lambda: carol.has(room, e2)), "mxfed's answer reached Synapse")
    R.check(label, v, wait_until("same state", lambda: carol.state_ids(room) == mx.state(room)),
            "same current state on both")
    return room, [e1, e2]


def typing_and_receipts(env, v, room):
    """Scenario 5: typing and read receipts both ways, as EDUs."""
    R, mx, alice = env.R, env.mx, env.alice
    bot = env.bot
    # Synapse -> mxfed
    alice.api("PUT", f"/_matrix/client/v3/rooms/{room}/typing/{alice.user_id}", {"typing": True, "timeout": 30000})
    R.check(S5, v, wait_until("alice's typing at mxfed", lambda: any(
        e["edu_type"] == "m.typing" and e["content"].get("user_id") == alice.user_id and e["content"].get("typing") is True
        for e in mx.edus(room))), "Synapse's m.typing arrived (`mxfed admin edus`)")
    bots = [eid for eid, t in timeline_ids(mx, room) if t == "m.room.message"]
    last = bots[-1]
    alice.api("POST", f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}", {})
    R.check(S5, v, wait_until("alice's receipt at mxfed", lambda: any(
        e["edu_type"] == "m.receipt"
        and last in e["content"].get(room, {}).get("m.read", {}).get(alice.user_id, {}).get("event_ids", [])
        for e in mx.edus(room))), "Synapse's m.receipt arrived (`mxfed admin edus`)")
    # mxfed -> Synapse
    alice.sync_until("a fresh sync position", lambda r: True)
    mx.admin("room", "typing", room, "--as", "bot", "--timeout", "30000")
    R.check(S5, v, alice.sync_until("bot typing on Synapse", lambda r: any(
        bot in e["content"].get("user_ids", []) for e in ephemeral(r, room, "m.typing"))),
        "`mxfed admin room typing` shows on Synapse's /sync")
    mx.admin("room", "typing", room, "--as", "bot", "--stop")
    R.check(S5, v, alice.sync_until("bot stops typing on Synapse", lambda r: any(
        bot not in e["content"].get("user_ids", []) for e in ephemeral(r, room, "m.typing"))),
        "`--stop` clears it on Synapse")
    mine = alice.send(room, f"read this, bot (v{v})")
    R.check(S5, v, mx.wait_event(room, mine), "the message to read arrived")
    mx.admin("room", "receipt", room, mine, "--as", "bot")
    R.check(S5, v, alice.sync_until("bot's receipt on Synapse", lambda r: any(
        bot in e["content"].get(mine, {}).get("m.read", {}) for e in ephemeral(r, room, "m.receipt"))),
        "`mxfed admin room receipt` shows on Synapse's /sync")


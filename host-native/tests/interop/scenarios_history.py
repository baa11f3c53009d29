"""Scenarios 6 (history: backfill both ways) and 7 (an mxfed outage while Synapse users talk)."""

import collections

from interop_lib import wait_until
from scenarios_rooms import timeline_ids

S6A = "6a late Synapse backfills from mxfed"
S6B = "6b mxfed backfills from Synapse"
S7 = "7 outage"


def late_synapse_backfills(env, v):
    """Scenario 6, first half: mxfed's room has history written only by mxfed's user, so mxfed is
    the only server the second Synapse can backfill from; that Synapse joins late (through mxfed)
    and its /messages shows the events from before its join."""
    R, mx, dora = env.R, env.mx, env.dora
    room = mx.admin("room", "create", "--as", "bot", "--version", str(v))
    earlier = [mx.admin("room", "send", room, f"history {i} (v{v})", "--as", "bot") for i in range(3)]
    mx.admin("room", "invite", room, dora.user_id, "--as", "bot")
    R.check(S6A, v, dora.sync_until("the invite on the second Synapse",
                                    lambda r: room in r.get("rooms", {}).get("invite", {})),
            "the invite reached the second Synapse")
    dora.join(room, mx.server_name)
    R.check(S6A, v, mx.wait_joined(room, dora.user_id), "the second Synapse's user joined through mxfed")
    seen = lambda: set(earlier) <= {e["event_id"] for e in dora.messages(room)}  # noqa: E731
    R.check(S6A, v, wait_until("earlier events in the late joiner's /messages", seen),
            "the late joiner's /messages shows the 3 messages from before its join (backfilled from mxfed)")
    bodies = [e["content"].get("body") for e in dora.messages(room) if e["event_id"] in earlier]
    R.check(S6A, v, bodies == [f"history {i} (v{v})" for i in range(3)], "in order, with their content")


def mxfed_backfills(env, v):
    """Scenario 6, second half: mxfed joins a Synapse room that already has history; the earlier
    messages should appear in `mxfed admin room timeline` after the join."""
    R, mx, alice = env.R, env.mx, env.alice
    room = alice.create_room(v, name=f"history v{v}")
    earlier = [alice.send(room, f"before the join {i} (v{v})") for i in range(3)]
    alice.invite(room, env.bot)
    R.check(S6B, v, mx.wait_joined(room, env.bot), "mxfed joined a room with history")
    have = lambda: set(earlier) <= {e for e, _ in timeline_ids(mx, room)}  # noqa: E731
    R.check(S6B, v, wait_until("earlier messages in mxfed's timeline", have, timeout=15),
            "the 3 messages from before the join are in `mxfed admin room timeline`")


def outage(env, rooms):
    """Scenario 7: mxfed is killed (SIGKILL by pid) while Synapse users keep talking in every
    version's room; after the restart, Synapse's retries (woken by mxfed's first request) and
    mxfed's /get_missing_events fill the gap: nothing lost, nothing duplicated."""
    R, mx, alice, carol = env.R, env.mx, env.alice, env.carol
    mx.kill()
    missed = {}
    for v, room in rooms.items():
        missed[v] = [alice.send(room, f"while mxfed is down {i} (v{v})") for i in range(4)]
        missed[v].append(carol.send(room, f"carol while mxfed is down (v{v})"))
    mx.start()
    for v, room in rooms.items():
        back = mx.admin("room", "send", room, f"bot is back (v{v})", "--as", "bot")
        R.check(S7, v, wait_until("bot's message on Synapse", lambda: alice.has(room, back)),
                "after the restart mxfed's message reaches Synapse")
    for v, room in rooms.items():
        got = all(mx.wait_event(room, e, timeout=90) for e in missed[v])
        R.check(S7, v, got, "all 5 messages sent during the outage reached mxfed")
        # Each message body is unique, so a PDU stored or listed twice shows as a body seen twice.
        bodies = collections.Counter(e.get("content", {}).get("body") for e in mx.timeline(room))
        syn = collections.Counter(e.get("content", {}).get("body") for e in alice.messages(room, limit=200))
        gap = [f"while mxfed is down {i} (v{v})" for i in range(4)] + [f"carol while mxfed is down (v{v})"]
        R.check(S7, v, all(bodies[b] == 1 for b in gap), "each message of the outage exactly once in `mxfed admin room timeline`")
        R.check(S7, v, all(syn[b] == 1 for b in gap), "and exactly once in Synapse's /messages")
        ours = sorted(e for e, t in timeline_ids(mx, room) if t == "m.room.message")
        theirs = sorted(e["event_id"] for e in alice.messages(room, limit=200) if e["type"] == "m.room.message")
        R.check(S7, v, ours == theirs,
                f"the same m.room.message event IDs on both ({len(ours)} at mxfed, {len(theirs)} at Synapse)")
        R.check(S7, v, wait_until("same state", lambda: alice.state_ids(room) == mx.state(room)),
                "same current state on both")

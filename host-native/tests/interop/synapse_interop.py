#!/usr/bin/env python3
"""mxfed serve --dev federates with real Synapse servers on loopback: the interop scenarios of
issue 6, each in room versions 10, 11 and 12 unless noted.

Usage: synapse_interop.py MXFED_BINARY [SCENARIO...]
       (run with a Python that has matrix-synapse installed; SCENARIO numbers select a subset)

Starts two throwaway Synapse servers (A: the main peer; B: the late joiner, the trusted-notary
client and the owner of the signing key used to craft forbidden events) and `mxfed serve --dev`,
once per run, then runs the scenarios:

   1  a Synapse user's room, @bot:<mxfed> invited, auto-accept join; Synapse shows the join
   2  messages of two Synapse users reach mxfed, validate, appear in its timeline
   3  mxfed's user sends messages, a topic and a redaction; Synapse shows them (content gone)
   4  mxfed creates a room; a Synapse user is invited and joins through mxfed
   5  typing and read receipts both ways (mxfed admin edus; Synapse /sync ephemeral)
   6  a late Synapse backfills from mxfed; mxfed backfills a Synapse room with history
   7  mxfed killed while Synapse users talk; after restart nothing lost, nothing duplicated
   8  forbidden power change and a banned sender (crafted PDUs): the same verdicts, same state
   9  concurrent power-level changes: the same resolved state
  10  keys: mxfed fetches directly and through a notary; Synapse uses mxfed as its notary (once)
  11  profile and directory queries both ways (once)
  12  join and messages in rooms of versions 1, 5 and 9
  13  restricted joins both ways (mxfed, then Synapse, as the authorising resident)

One log line per check ("ok: [scenario vN] ..." / "FAILED: ..."), a table at the end, exit 1 on
any failure. Every request stays on 127.0.0.1; every process is stopped by its own pid.
"""

import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios_auth as auth  # noqa: E402
import scenarios_history as history  # noqa: E402
import scenarios_keys as keys  # noqa: E402
import scenarios_rooms as rooms  # noqa: E402
import scenarios_restricted as restricted  # noqa: E402
from interop_lib import Mxfed, Results, Signer, Synapse, api  # noqa: E402

VERSIONS = (10, 11, 12)
OLD_VERSIONS = (1, 5, 9)


class Env:
    pass


def guarded(env, label, version, fn, *args):
    """Runs one scenario step; an exception is one failed check, and the run goes on."""
    try:
        return fn(env, *args)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        env.R.check(label, version, False, f"raised {type(e).__name__}: {e}")
        traceback.print_exc(limit=3)
        return None


def run(env, wanted):
    want = lambda n: not wanted or n in wanted  # noqa: E731

    if want(10):
        guarded(env, keys.S10, None, keys.keys_both_ways)

    syn_rooms = {}
    for v in VERSIONS if any(want(n) for n in (1, 2, 3, 4, 5, 7, 9)) else ():
        room = guarded(env, rooms.S1, v, rooms.synapse_room_joined_by_mxfed, v)
        if room is None:
            continue
        syn_rooms[v] = room
        if want(2) or want(5) or want(7):
            guarded(env, rooms.S2, v, rooms.synapse_to_mxfed_messages, v, room)
        if want(3) or want(5):
            guarded(env, rooms.S3, v, rooms.mxfed_to_synapse, v, room)
        if want(4):
            guarded(env, rooms.S4, v, rooms.mxfed_room_joined_by_synapse, v)
        if want(5):
            guarded(env, rooms.S5, v, rooms.typing_and_receipts, v, room)

    if want(12):
        for v in OLD_VERSIONS:
            room = guarded(env, rooms.S12, v, rooms.synapse_room_joined_by_mxfed, v, rooms.S12)
            if room:
                guarded(env, rooms.S12, v, rooms.synapse_to_mxfed_messages, v, room, rooms.S12)
                guarded(env, rooms.S12, v, rooms.mxfed_to_synapse, v, room, rooms.S12, False)

    if want(11):
        guarded(env, keys.S11, None, keys.queries)

    if want(6):
        for v in VERSIONS:
            guarded(env, history.S6A, v, history.late_synapse_backfills, v)
        for v in VERSIONS:
            guarded(env, history.S6B, v, history.mxfed_backfills, v)

    if want(8):
        for v in VERSIONS:
            guarded(env, auth.S8, v, auth.authorization, v)

    if want(13):
        for v in VERSIONS:
            guarded(env, restricted.S13, v, restricted.restricted_both_ways, v)

    if want(7) and syn_rooms:
        guarded(env, history.S7, None, history.outage, syn_rooms)
    if want(9) and syn_rooms:
        guarded(env, auth.S9, None, auth.conflict, syn_rooms)
        guarded(env, auth.S9, None, auth.conflict_with_demotion, syn_rooms)


def main():
    mxfed_bin = os.path.abspath(sys.argv[1])
    wanted = {int(a) for a in sys.argv[2:]}
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="mxfed-synapse-")
    env = Env()
    env.R = Results()
    env.A = env.B = env.mx = None
    try:
        env.A = Synapse(tmp, "synapse-a")
        env.A.start()
        # mxfed trusts A as a notary (scenario 10), so A's keys go into mxfed's first config.
        env.mx = Mxfed(mxfed_bin, tmp, notaries=[(env.A.server_name, env.A.verify_keys())])
        env.mx.start()
        env.mx_key_answer = api(env.mx.port, "GET", "/_matrix/key/v2/server")
        mx_keys = {k: v["key"] for k, v in env.mx_key_answer["verify_keys"].items()}
        # B trusts only mxfed as its key server (scenario 10).
        env.B = Synapse(tmp, "synapse-b", notary=(env.mx.server_name, mx_keys))
        env.B.start()
        env.bot = env.mx.admin("user", "create", "bot", "--display-name", "Bot", "--auto-accept")
        env.alice = env.A.register("alice")
        env.carol = env.A.register("carol")
        env.dora = env.B.register("dora")
        env.mallory = env.B.register("mallory")
        env.b_signer = Signer(env.mx, env.B.server_name, os.path.join(env.B.dir, "signing.key"), tmp)
        env.synapse_signer = Signer(env.mx, env.A.server_name, os.path.join(env.A.dir, "signing.key"), tmp)
        print(f"servers: Synapse A {env.A.server_name}, Synapse B {env.B.server_name}, mxfed {env.mx.server_name}",
              flush=True)
        run(env, wanted)
    except Exception as e:  # noqa: BLE001 - set-up failed: report and fail
        env.R.check("set-up", None, False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        for s in (env.mx, env.B, env.A):
            if s is not None:
                s.stop()
        if env.R.failed():
            for log in (os.path.join(tmp, "mxfed", "mxfed.log"), os.path.join(tmp, "synapse-a", "log"),
                        os.path.join(tmp, "synapse-b", "log")):
                if os.path.exists(log):
                    print(f"--- {log} (last 30 lines)")
                    with open(log) as f:
                        print("".join(f.readlines()[-30:]))
        if os.environ.get("MXFED_INTEROP_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    env.R.summary(time.monotonic() - started)
    return 1 if env.R.failed() else 0


if __name__ == "__main__":
    sys.exit(main())

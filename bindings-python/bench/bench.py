#!/usr/bin/env python3
"""Python bindings benchmark: mxfed (the main API and mxfed.compat) against canonicaljson 2.0.0,
signedjson 1.1.4 (PyNaCl/libsodium) and Synapse's own event checks, in the same run, on the ~1 KB
room version 10 PDU of bench/data/event_1k.json.

    .venv/bin/python bindings-python/bench/bench.py [--quick] [--write BENCHMARKS.md]

Contenders are timed interleaved (see paired()): each round times a ~2 ms batch of every
contender back to back in rotating order, for about 4 s per row (0.5 s with --quick). Reported:
the best batch and the median per call, and the median over rounds of baseline/contender time,
which stays fair when other processes load the machine. Before timing, every contender's output is checked to be the same (same canonical
bytes, same signature, same verdicts), so every row compares the same work.

"Synapse per-event checks" is the Python-level work Synapse does on each received PDU, by its own
functions: build the event (make_event_from_dict, which computes the event ID from the reference
hash), redact it (redact_event_dict), verify the sender's signature over the redacted event
(signedjson.verify_signed_json, what Synapse's keyring runs once it has the key) and check the
content hash (check_event_content_hash). Key fetching, the database and auth rules are left out
on both sides.
"""

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
import timeit
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import canonicaljson
import signedjson.key
import signedjson.sign

import mxfed
import mxfed.compat.canonicaljson as compat_cj
import mxfed.compat.signedjson.sign as compat_sign

ROOT = Path(__file__).resolve().parents[2]
EVENT_PATH = ROOT / "bench" / "data" / "event_1k.json"
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER = "domain"
RV = "10"
BATCH = 1000
CPUS = os.cpu_count() or 1


def load_event() -> Dict[str, Any]:
    if EVENT_PATH.exists():
        ev: Dict[str, Any] = json.loads(EVENT_PATH.read_bytes())
        return ev
    # Fallback when bench/data is absent: a ~1 KB message event signed with the test key.
    key = mxfed.SigningKey.from_seed("1", SEED)
    base = {
        "type": "m.room.message", "room_id": "!jEsUZKDJdhlrceRyVU:domain", "sender": "@alice:domain",
        "origin": "domain", "origin_server_ts": 1718000123456, "depth": 48213,
        "prev_events": ["$" + "A" * 43, "$" + "B" * 43], "auth_events": ["$" + "C" * 43] * 3,
        "content": {"msgtype": "m.text", "body": "café 日本語 🎉 " * 20}, "unsigned": {"age": 1234},
    }
    return mxfed.hash_and_sign_event(base, RV, SERVER, key)


def paired(fns: List[Callable[[], Any]], budget: float) -> List[Tuple[float, float, float]]:
    """Times contenders interleaved: each round runs a batch of every contender back to back
    (rotating order), so load from other processes lands on all of them alike. Returns, per
    contender, (best seconds per call, median seconds per call, median over rounds of
    first contender's time / this one's)."""
    ns = []
    for f in fns:
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            if time.perf_counter() - t0 >= 0.002:
                break
            n *= 2
        ns.append(n)
    per_round = sum(ns[i] * _once(f) for i, f in enumerate(fns))
    rounds = max(5, min(300, int(budget / max(per_round, 1e-9))))
    times: List[List[float]] = [[] for _ in fns]
    for r in range(rounds):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            f, n = fns[i], ns[i]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            times[i].append((time.perf_counter() - t0) / n)
    out = []
    for i in range(len(fns)):
        ratios = sorted(times[0][r] / times[i][r] for r in range(rounds))
        out.append((min(times[i]), statistics.median(times[i]), ratios[len(ratios) // 2]))
    return out


def _once(f: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def fmt(s: float) -> str:
    if s >= 1e-3:
        return "%.2f ms" % (s * 1e3)
    return "%.1f µs" % (s * 1e6)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "%s, %d cores, %s; CPython %s; load average %.1f at start" % (
        cpu, os.cpu_count() or 0, platform.system(), platform.python_version(), load)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    ap.add_argument("--write", metavar="FILE", help="write the table into FILE's '## Python bindings' section")
    args = ap.parse_args()
    budget = 0.5 if args.quick else 4.0
    host = machine()

    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.crypto.event_signing import check_event_content_hash
    from synapse.events import make_event_from_dict
    from synapse.synapse_rust.events import redact_event_dict

    room_version = KNOWN_ROOM_VERSIONS[RV]
    ev = load_event()
    key = mxfed.SigningKey.from_seed("1", SEED)
    nacl_key = signedjson.key.decode_signing_key_base64("ed25519", "1", SEED)
    nacl_vk = signedjson.key.get_verify_key(nacl_key)
    ring = mxfed.KeyRing([mxfed.server_keys(SERVER, key, 2**52)])
    verify_keys = {"ed25519:1": key.verify_key}
    unsigned = {k: v for k, v in ev.items() if k not in ("signatures", "unsigned")}
    signed = signedjson.sign.sign_json(copy.deepcopy(unsigned), SERVER, nacl_key)
    ev_bytes = mxfed.canonical_json(ev)

    # 1,000 distinct valid events (different bodies), hashed and signed.
    batch = []
    for i in range(BATCH):
        e = copy.deepcopy(ev)
        e["content"]["body"] = "%d %s" % (i, e["content"]["body"])
        e.pop("hashes"), e.pop("signatures")
        batch.append(mxfed.hash_and_sign_event(e, RV, SERVER, key))
    batch_bytes = [mxfed.canonical_json(e) for e in batch]
    # What the sign rows sign: without `signatures` (signedjson's sign_json would otherwise write
    # into the events' own nested signatures dicts, and the check rows would see bad signatures).
    batch_unsigned = [{k: v for k, v in e.items() if k not in ("signatures", "unsigned")} for e in batch]

    def synapse_check(d: Dict[str, Any]) -> Tuple[str, bool]:
        event = make_event_from_dict(copy.deepcopy(d), room_version)
        redacted = redact_event_dict(room_version, d)
        try:
            signedjson.sign.verify_signed_json(redacted, SERVER, nacl_vk)
        except signedjson.sign.SignatureVerifyException:
            return event.event_id, False
        return event.event_id, check_event_content_hash(event)

    # Same work: check every contender gives the same answer before timing anything.
    assert mxfed.canonical_json(ev) == compat_cj.encode_canonical_json(ev) == canonicaljson.encode_canonical_json(ev)
    sig = signed["signatures"][SERVER]
    assert mxfed.sign_json(unsigned, SERVER, key)["signatures"][SERVER] == sig
    assert compat_sign.sign_json(copy.deepcopy(unsigned), SERVER, nacl_key)["signatures"][SERVER] == sig
    assert mxfed.verify_json(signed, SERVER, verify_keys) == ["ed25519:1"]
    compat_sign.verify_signed_json(signed, SERVER, nacl_vk)
    verdicts = mxfed.check_pdus(batch, RV, ring)
    assert all(v["verdict"] == "accepted" for v in verdicts)
    assert verdicts == mxfed.check_pdus(batch_bytes, RV, ring)
    assert [(v["event_id"], True) for v in verdicts] == [synapse_check(e) for e in batch]

    Cell = Optional[Tuple[float, float, float]]
    rows: List[Tuple[str, Cell, Cell, Cell, str]] = []

    def row(name: str, ours: Optional[Callable[[], Any]], compat: Optional[Callable[[], Any]],
            theirs: Optional[Callable[[], Any]], theirs_name: str) -> None:
        # The baseline goes first, so each ratio is baseline time / contender time.
        fns = [f for f in (theirs, ours, compat) if f is not None]
        res = iter(paired(fns, budget))
        t = next(res) if theirs else None
        o = next(res) if ours else None
        c = next(res) if compat else None
        rows.append((name, o, c, t, theirs_name))
        show = lambda x: ("%s (%.1f×)" % (fmt(x[0]), x[2]) if theirs else fmt(x[0])) if x else "—"  # noqa: E731
        print("%-44s mxfed %-18s compat %-18s %s %s" % (name, show(o), show(c), theirs_name, fmt(t[0]) if t else "—"),
              flush=True)

    sj, cj = "signedjson", "canonicaljson"
    row("canonical encode (1 event)", lambda: mxfed.canonical_json(ev),
        lambda: compat_cj.encode_canonical_json(ev), lambda: canonicaljson.encode_canonical_json(ev), cj)
    row("sign (1 event)", lambda: mxfed.sign_json(unsigned, SERVER, key),
        lambda: compat_sign.sign_json(dict(unsigned), SERVER, nacl_key),
        lambda: signedjson.sign.sign_json(dict(unsigned), SERVER, nacl_key), sj)
    row("verify (1 event)", lambda: mxfed.verify_json(signed, SERVER, verify_keys),
        lambda: compat_sign.verify_signed_json(signed, SERVER, nacl_vk),
        lambda: signedjson.sign.verify_signed_json(signed, SERVER, nacl_vk), sj)

    def both_ours() -> None:
        mxfed.verify_json(mxfed.sign_json(unsigned, SERVER, key), SERVER, verify_keys)

    def both_compat() -> None:
        compat_sign.verify_signed_json(compat_sign.sign_json(dict(unsigned), SERVER, nacl_key), SERVER, nacl_vk)

    def both_theirs() -> None:
        signedjson.sign.verify_signed_json(signedjson.sign.sign_json(dict(unsigned), SERVER, nacl_key), SERVER, nacl_vk)

    row("sign + verify (1 event)", both_ours, both_compat, both_theirs, sj)
    row("full event check (1 event)", lambda: mxfed.check_pdus([ev], RV, ring), None,
        lambda: synapse_check(ev), "Synapse")
    row("canonical encode (1,000 events)", lambda: [mxfed.canonical_json(e) for e in batch],
        lambda: [compat_cj.encode_canonical_json(e) for e in batch],
        lambda: [canonicaljson.encode_canonical_json(e) for e in batch], cj)
    row("sign (1,000 events)", lambda: [mxfed.sign_json(e, SERVER, key) for e in batch_unsigned],
        lambda: [compat_sign.sign_json(dict(e), SERVER, nacl_key) for e in batch_unsigned],
        lambda: [signedjson.sign.sign_json(dict(e), SERVER, nacl_key) for e in batch_unsigned], sj)
    # The rows above must not have changed the events the check rows check.
    assert all(v["verdict"] == "accepted" for v in mxfed.check_pdus(batch, RV, ring))
    row("full event checks (1,000 dicts, 1 thread)", lambda: mxfed.check_pdus(batch, RV, ring, threads=1), None,
        lambda: [synapse_check(e) for e in batch], "Synapse")
    row("full event checks (1,000 dicts, %d threads)" % CPUS, lambda: mxfed.check_pdus(batch, RV, ring), None,
        lambda: [synapse_check(e) for e in batch], "Synapse")
    row("full event checks (1,000 as bytes, 1 thread)", lambda: mxfed.check_pdus(batch_bytes, RV, ring, threads=1),
        None, lambda: [synapse_check(e) for e in batch], "Synapse")
    row("full event checks (1,000 as bytes, %d threads)" % CPUS, lambda: mxfed.check_pdus(batch_bytes, RV, ring),
        None, lambda: [synapse_check(e) for e in batch], "Synapse")

    versions = "mxfed %s; canonicaljson %s; signedjson %s; PyNaCl %s; matrix-synapse %s" % (
        version("mxfed"), version("canonicaljson"), version("signedjson"), version("PyNaCl"), version("matrix-synapse"))
    lines = [
        "| operation | mxfed | mxfed.compat | baseline | speed-up, mxfed | speed-up, compat |",
        "|---|---|---|---|---|---|",
    ]
    # Speed-up cells: median of per-round ratios (robust to load), then best/best in brackets.
    cell = lambda x: "%s (%s)" % (fmt(x[0]), fmt(x[1])) if x else "—"  # noqa: E731
    for name, o, c, t, tn in rows:
        sp = lambda x: ("**%.1f×** [%.1f×]" % (x[2], t[0] / x[0])) if (t and x) else "—"  # noqa: E731
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            name, cell(o), cell(c), ("%s %s" % (tn, cell(t))) if t else "—", sp(o), sp(c)))
    by_name = {name: (o, c, t) for name, o, c, t, _ in rows}

    def ratio(name: str, which: int) -> float:
        x = by_name[name][which]
        return x[2] if x else float("nan")

    sv = "sign + verify (1 event)"
    batch_rows = [n for n in by_name if n.startswith("full event checks (1,000")]
    goals = [
        "**Goals.** At least 2× signedjson on single sign + verify: %.1f× (mxfed), %.1f× (compat): %s."
        % (ratio(sv, 0), ratio(sv, 1), "met" if min(ratio(sv, 0), ratio(sv, 1)) >= 2 else "not met"),
        "At least 5× Synapse's per-event checks on 1,000 events: %s."
        % "; ".join("%s %.1f×" % (n[len("full event checks ("):-1], ratio(n, 0)) for n in batch_rows),
    ]
    table = "\n".join(lines) + "\n\n" + " ".join(goals)
    print()
    print(table)
    print()
    print(versions)
    print(host)
    if args.write:
        write_section(Path(args.write), table, versions, host, quick=args.quick)
    return 0


SECTION = "## Python bindings"
# Why the numbers are what they are (checked against two runs; update with the code).
NOTE = [
    "Sign + verify is bounded by ed25519 itself. The core's own `sign_json` and `verify_json`",
    'take 25.7 µs and 46.4 µs on this event (Results table above, rows 3-4), 72 µs together,',
    'while signedjson takes about 120 µs. So no binding over this core can pass about 1.65× here;',
    "the binding adds about 5 µs to the core. Batch checks use the core's batch signature",
    'verification. Dicts pay about 15 µs each to be converted and re-encoded; bytes do not. A',
    'second thread helps only when the machine has a free core. Across two runs at load',
    'averages 2-3, sign + verify gave 1.6-1.8×, batches of dicts 4.1-5.1× and batches of bytes',
    '5.1-6.3×.',
]


def write_section(path: Path, table: str, versions: str, host: str, quick: bool) -> None:
    body = "\n".join([
        SECTION,
        "",
        "`import mxfed` (the main API) and `mxfed.compat` (drop-in signedjson/canonicaljson) against",
        "canonicaljson, signedjson (PyNaCl/libsodium) and Synapse's own per-event checks, in the same",
        "run, on `bench/data/event_1k.json` (room version 10). Contenders are timed interleaved",
        "(each round times a ~2 ms batch of every contender back to back, rotating the order, for",
        "about %s s per row), so load from other processes lands on all of them alike: cells give the"
        % ("0.5" if quick else "4"),
        "best batch (and the median) per call; the speed-up is the median over rounds of baseline",
        "time / contender time, robust to that load, followed in brackets by best / best (the",
        "closest thing to an uncontended ratio). Rows of 1,000 events run only 5-6 rounds, so",
        "their ratios are the least certain.",
        "\"Full event check\" on the Synapse side is `make_event_from_dict` (event ID from the",
        "reference hash) + `redact_event_dict` + `signedjson.verify_signed_json` over the redacted event",
        "+ `check_event_content_hash`; on the mxfed side `check_pdus` (format, event ID, signatures,",
        "content hash; the GIL released while checking). Both sides are checked to give the same",
        "answers before timing.",
        "",
        "- **Command**: `.venv/bin/python bindings-python/bench/bench.py --write BENCHMARKS.md`",
        "- **Date**: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "- **Machine**: %s" % host,
        "- **Versions**: %s" % versions,
        "",
        table,
        "",
        *NOTE,
        "",
    ])
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find("\n" + SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + body + (text[end:] if end >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

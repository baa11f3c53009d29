#!/usr/bin/env python3
"""Times Synapse's Python stack (canonicaljson, signedjson/PyNaCl, hashlib) on the same ~1 KB
room version 10 PDU the Rust benchmarks use (bench/data/event_1k.json), for the Python column of
BENCHMARKS.md.

    .venv/bin/python bench/python_bench.py [--repeat N] [--min-time SECONDS]

Needs canonicaljson==2.0.0 and signedjson==1.1.4 (scripts/requirements-test.txt has them).
Each row is timed with timeit: the loop count is chosen so one run lasts at least --min-time
seconds, the run is repeated --repeat times, and the fastest run is reported (timeit's advice:
the slower ones measure other processes, not the code).
"""

import argparse
import base64
import copy
import hashlib
import json
import platform
import sys
import timeit
from importlib.metadata import version
from pathlib import Path

from canonicaljson import encode_canonical_json
from signedjson.key import decode_signing_key_base64, get_verify_key
from signedjson.sign import sign_json, verify_signed_json

EVENT_PATH = Path(__file__).resolve().parent / "data" / "event_1k.json"
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER = "domain"


def unpadded_b64decode(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


def compute_content_hash(event_dict: dict) -> bytes:
    """Synapse's synapse.crypto.event_signing.compute_content_hash."""
    event_dict = dict(event_dict)
    event_dict.pop("age_ts", None)
    event_dict.pop("unsigned", None)
    event_dict.pop("signatures", None)
    event_dict.pop("hashes", None)
    event_dict.pop("outlier", None)
    event_dict.pop("destinations", None)
    return hashlib.sha256(encode_canonical_json(event_dict)).digest()


def redacted_v10_signing_bytes(ev: dict) -> bytes:
    """What the event's signature covers in room version 10: for an m.room.message the redacted
    event keeps the v10 top-level keys and an empty content; no signatures, no unsigned. Used
    only to give libsodium the same bytes as the Rust dalek baseline."""
    keep = {
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "depth",
        "prev_events", "auth_events", "origin_server_ts", "origin", "membership", "prev_state",
    }
    red = {k: v for k, v in ev.items() if k in keep}
    red["content"] = {}
    return encode_canonical_json(red)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="timed runs per row (default 15)")
    ap.add_argument("--min-time", type=float, default=0.2,
                    help="minimum seconds per run (default 0.2)")
    args = ap.parse_args()

    raw = EVENT_PATH.read_bytes().rstrip(b"\n")
    event = json.loads(raw)
    key = decode_signing_key_base64("ed25519", "1", SEED)
    vkey = get_verify_key(key)

    # Parity with the Rust benchmarks: the file is canonical, its content hash is the one the
    # event carries, and its v10 signature verifies over the same bytes dalek checks.
    assert encode_canonical_json(event) == raw, "canonicaljson disagrees with the event bytes"
    assert compute_content_hash(event) == unpadded_b64decode(event["hashes"]["sha256"])
    signing_bytes = redacted_v10_signing_bytes(event)
    signature = unpadded_b64decode(event["signatures"][SERVER]["ed25519:1"])
    vkey.verify(signing_bytes, signature)
    signed = sign_json(copy.deepcopy(event), SERVER, key)
    verify_signed_json(signed, SERVER, vkey)

    # sign_json pops and restores `signatures`/`unsigned` and replaces its own signature, so
    # re-signing the same dict is the same work every time (as in the Rust benchmark).
    to_sign = copy.deepcopy(event)

    rows = [
        ("01_parse (json.loads; no canonical checks)", lambda: json.loads(raw)),
        ("02_encode (encode_canonical_json)", lambda: encode_canonical_json(event)),
        ("03_sign_json", lambda: sign_json(to_sign, SERVER, key)),
        ("04_verify_json (verify_signed_json)", lambda: verify_signed_json(signed, SERVER, vkey)),
        ("05_content_hash (Synapse compute_content_hash)", lambda: compute_content_hash(event)),
        ("10_raw_verify (PyNaCl/libsodium, same signed bytes)",
         lambda: vkey.verify(signing_bytes, signature)),
    ]

    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"canonicaljson {version('canonicaljson')}, signedjson {version('signedjson')}, "
          f"PyNaCl {version('PyNaCl')}")
    print(f"event: {EVENT_PATH.name}, {len(raw)} bytes; best of {args.repeat} runs of "
          f">= {args.min_time}s each")
    print(f"{'operation':<56} {'ns/op':>12}")
    print("-" * 69)
    for name, fn in rows:
        timer = timeit.Timer(fn)
        number = 1
        while True:
            t = timer.timeit(number)
            if t >= args.min_time:
                break
            number = max(number * 2, int(number * args.min_time / max(t, 1e-9) * 1.1))
        best = min(timer.repeat(repeat=args.repeat, number=number)) / number
        print(f"{name:<56} {best * 1e9:>12,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synapse's own event hashing and signing functions and mxfed agree, on Synapse's real PDUs
(tests/vectors/synapse/pdus.jsonl), on the derived event vectors and on the legacy-number
vectors, in every room version both know (Synapse's KNOWN_ROOM_VERSIONS ∩ mxfed.ROOM_VERSIONS).

Needs matrix-synapse (scripts/test.d/20-python.sh installs the pinned version); skipped without
it, except when MXFED_REQUIRE_SYNAPSE=1 (set by that stage), where it fails.
"""

import copy
import hashlib
import json
import os
from typing import Any, Dict, List

import pytest

import mxfed
from conftest import SEED, key_responses, load, spec_vectors, synapse_pdus

try:
    from signedjson.key import decode_signing_key_base64, get_verify_key
    from signedjson.sign import SignatureVerifyException, verify_signed_json
    from synapse.api.errors import SynapseError
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.crypto.event_signing import (
        add_hashes_and_signatures,
        compute_content_hash,
        compute_event_reference_hash,
        compute_event_signature,
    )
    from synapse.events import make_event_from_dict
    from synapse.events.utils import validate_canonicaljson
    from synapse.synapse_rust.events import redact_event_dict
    from unpaddedbase64 import encode_base64
except ImportError as e:  # pragma: no cover
    if os.environ.get("MXFED_REQUIRE_SYNAPSE") == "1":
        raise
    pytest.skip("matrix-synapse is not installed (%s)" % e, allow_module_level=True)

VERSIONS = [v for v in mxfed.ROOM_VERSIONS if v in KNOWN_ROOM_VERSIONS]
PDUS = synapse_pdus()
NACL_KEY = decode_signing_key_base64("ed25519", "1", SEED)
KEY = mxfed.SigningKey.from_seed("1", SEED)


def test_every_mxfed_version_is_known_to_synapse() -> None:
    assert VERSIONS == list(mxfed.ROOM_VERSIONS)


def test_real_pdus_hashes_and_ids() -> None:
    """compute_content_hash, compute_event_reference_hash and Synapse's event IDs."""
    for line in PDUS:
        rv, pdu = line["room_version"], line["pdu"]
        _, digest = compute_content_hash(pdu, hashlib.sha256)
        assert mxfed.content_hash(pdu, rv) == encode_base64(digest), line["event_id"]
        ev = make_event_from_dict(copy.deepcopy(pdu), KNOWN_ROOM_VERSIONS[rv])
        _, ref = compute_event_reference_hash(ev)
        assert mxfed.reference_hash(pdu, rv) == encode_base64(ref), line["event_id"]
        assert mxfed.event_id(pdu, rv) == ev.event_id == line["event_id"]


def test_real_pdus_signed_in_every_room_version() -> None:
    """add_hashes_and_signatures and compute_event_signature on every real PDU under every room
    version's redaction rules (5,736 events): the same hashes and signatures, other servers'
    signatures kept alike. The few real v1-5 PDUs holding floats are refused in v6+ by mxfed, as
    Synapse's validate_canonicaljson refuses them there."""
    n = refused = 0
    for line in PDUS:
        for rv in VERSIONS:
            pdu = line["pdu"]
            if rv in ("1", "2"):
                pdu = dict(pdu, event_id=line["event_id"])
            theirs = copy.deepcopy(pdu)
            add_hashes_and_signatures(KNOWN_ROOM_VERSIONS[rv], theirs, "test.example", NACL_KEY)
            try:
                ours = mxfed.hash_and_sign_event(pdu, rv, "test.example", KEY)
            except mxfed.CanonicalJsonError as e:
                # A float or big integer in a strict room version (6+): mxfed will not sign it;
                # Synapse signs anything but rejects such an event on receipt, by this check.
                assert e.code in ("json_float", "json_integer_out_of_range")
                assert KNOWN_ROOM_VERSIONS[rv].strict_canonicaljson
                with pytest.raises(SynapseError):
                    validate_canonicaljson(pdu)
                refused += 1
                continue
            assert ours == theirs, (line["event_id"], rv)
            sig = compute_event_signature(KNOWN_ROOM_VERSIONS[rv], copy.deepcopy(ours), "test.example", NACL_KEY)
            assert sig["test.example"] == ours["signatures"]["test.example"]
            n += 1
    assert n + refused == len(PDUS) * len(VERSIONS) and n >= 5000


def test_real_pdus_verify_like_synapse() -> None:
    """Synapse's check (prune, then signedjson over the redacted event) and check_pdus agree on
    every signature of every real PDU."""
    responses = [json.loads(k) for k in key_responses()]
    verify_keys = {
        r["server_name"]: {kid: v["key"] for kid, v in r["verify_keys"].items()} for r in responses
    }
    by_version: Dict[str, List[Dict[str, Any]]] = {}
    for line in PDUS:
        by_version.setdefault(line["room_version"], []).append(line)
    checked = 0
    for rv, lines in by_version.items():
        verdicts = mxfed.check_pdus([line["pdu"] for line in lines], rv, responses)
        for line, verdict in zip(lines, verdicts):
            pruned = redact_event_dict(KNOWN_ROOM_VERSIONS[rv], line["pdu"])
            for server, per_key in verdict["signatures"].items():
                for key_id, outcome in per_key.items():
                    if key_id not in verify_keys.get(server, {}):
                        continue
                    from signedjson.key import decode_verify_key_base64

                    vk = decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], verify_keys[server][key_id])
                    try:
                        verify_signed_json(pruned, server, vk)
                        synapse_ok = True
                    except SignatureVerifyException:
                        synapse_ok = False
                    assert synapse_ok == (outcome == "ok"), (line["event_id"], server, key_id)
                    checked += 1
    assert checked >= len(PDUS)


@pytest.mark.parametrize(
    "v", [v for v in spec_vectors()["derived"] if v["kind"] == "derived_event"], ids=lambda v: v["name"]
)
def test_derived_vectors(v: Dict[str, Any]) -> None:
    rv, p = v["room_version"], v["params"]
    version = p["key_id"].split(":", 1)[1]
    nacl_key = decode_signing_key_base64("ed25519", version, p["signing_key_seed_base64"])
    theirs = copy.deepcopy(v["input"])
    add_hashes_and_signatures(KNOWN_ROOM_VERSIONS[rv], theirs, p["server_name"], nacl_key)
    key = mxfed.SigningKey.from_seed(version, p["signing_key_seed_base64"])
    assert mxfed.hash_and_sign_event(v["input"], rv, p["server_name"], key) == theirs == v["expected"]["signed_event"]


def test_legacy_numbers_like_synapse() -> None:
    """Room version 1-5 events with floats and big integers: Synapse (Python's json, then
    canonicaljson) and mxfed hash and sign them alike, from text and from dicts."""
    from canonicaljson import encode_canonical_json

    legacy = load("legacy_numbers.json")
    for v in legacy["vectors"]:
        rv = v["room_version"]
        theirs = json.loads(v["input"])
        add_hashes_and_signatures(KNOWN_ROOM_VERSIONS[rv], theirs, "domain", NACL_KEY)
        assert encode_canonical_json(theirs).decode() == v["canonical_python"]
        from_text = mxfed.hash_and_sign_event(v["input"], rv, "domain", KEY)
        from_dict = mxfed.hash_and_sign_event(json.loads(v["input"]), rv, "domain", KEY)
        assert from_text == from_dict == theirs
        assert mxfed.canonical_json(from_dict, room_version=rv) == encode_canonical_json(theirs)


def test_tampered_corpus_signatures_and_hashes_like_synapse() -> None:
    """tests/vectors/synapse/tampered: PDUs with forged signatures and altered content. For
    every signature mxfed checked and every content hash it compared, Synapse's own functions
    (redact_event_dict + signedjson over the redacted event; compute_content_hash) say the same."""
    from conftest import VECTORS
    from signedjson.key import decode_verify_key_base64

    tampered = VECTORS / "synapse" / "tampered"
    rooms = json.loads((tampered / "rooms.json").read_text())["rooms"]
    responses = [json.loads((tampered / "keys" / (n + ".json")).read_text()) for n in ("localhost_8448", "localhost_8449", "localhost_8450")]
    known = {r["server_name"]: {kid: v["key"] for kid, v in r["verify_keys"].items()} for r in responses}
    files = {}
    for name, room in rooms.items():
        files[name] = files[room["side_room"]] = room["room_version"]
    sigs = bad_sigs = hashes = bad_hashes = 0
    for name, rv in sorted(files.items()):
        lines = [json.loads(x) for x in (tampered / name).read_text().splitlines() if x.strip()]
        for line, verdict in zip(lines, mxfed.check_pdus([x["pdu"] for x in lines], rv, responses)):
            pdu = line["pdu"]
            for server, per_key in verdict["signatures"].items():
                for key_id, outcome in per_key.items():
                    if key_id not in known.get(server, {}) or outcome not in ("ok", "invalid"):
                        continue
                    vk = decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], known[server][key_id])
                    try:
                        verify_signed_json(redact_event_dict(KNOWN_ROOM_VERSIONS[rv], pdu), server, vk)
                        ok = True
                    except SignatureVerifyException:
                        ok = False
                    assert ok == (outcome == "ok"), (name, line["event_id"], server, key_id)
                    sigs += 1
                    bad_sigs += not ok
            if verdict["content_hash"] is not None:
                _, digest = compute_content_hash(pdu, hashlib.sha256)
                ok = encode_base64(digest) == pdu.get("hashes", {}).get("sha256")
                assert ok == (verdict["content_hash"] == "ok"), (name, line["event_id"])
                hashes += 1
                bad_hashes += not ok
    # One room (and side room) per room version, 1-12.
    assert sorted(set(files.values()), key=int) == [str(v) for v in range(1, 13)]
    # Both kinds of tampering are present, and were seen: per room version, two forged
    # signatures (signature_invalid, changed_origin_server_ts) and six content hashes that do
    # not match (changed_content_message/_topic/_power_levels, changed_extra_top_level_key,
    # restricted_join_changed_content, and hash_wrong_length: a hash of 31 bytes).
    counts = (sigs, bad_sigs, hashes, bad_hashes)
    assert sigs >= 80 * 12 and bad_sigs == 2 * 12 and hashes >= 80 * 12 and bad_hashes == 6 * 12, counts


class _Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def time_msec(self) -> int:
        return self.ms


def _template(membership: str, v: str) -> Dict[str, Any]:
    refs: List[Any] = ["$prev"] if v not in ("1", "2") else []
    return {
        "type": "m.room.member",
        "room_id": "!r:res.example",
        "sender": "@u:domain",
        "state_key": "@u:domain",
        "content": {"membership": membership},
        "prev_events": refs,
        "auth_events": refs,
        "depth": 5,
        "origin": "res.example",
        "origin_server_ts": 1,
        "unsigned": {"age": 3},
    }


@pytest.mark.parametrize("membership", ["join", "leave", "knock"])
def test_membership_from_template_as_synapse_builds_it(membership: str) -> None:
    """Synapse's own create_local_event_from_event_dict (what its make_membership_event calls
    on a template) builds, hashes and signs the same event as membership_from_template, given
    the template with what the spec says the joining server replaces already replaced
    (Synapse keeps a template's origin and origin_server_ts)."""
    from synapse.events.builder import create_local_event_from_event_dict

    for v in VERSIONS:
        if v in ("1", "2") or (membership == "knock" and not KNOWN_ROOM_VERSIONS[v].knock_join_rule):
            continue
        answer = {"room_version": v, "event": _template(membership, v)}
        ours = mxfed.membership_from_template(
            answer, "!r:res.example", "@u:domain", membership, "domain", KEY,
            now_ms=1_700_000_000_000, content={"displayname": "U"},
        )
        theirs_dict = _template(membership, v)
        theirs_dict["content"].update({"displayname": "U"})
        for k in ("origin_server_ts", "unsigned"):
            del theirs_dict[k]
        theirs_dict["origin"] = "domain"
        ev = create_local_event_from_event_dict(
            _Clock(1_700_000_000_000), "domain", NACL_KEY, KNOWN_ROOM_VERSIONS[v], theirs_dict
        )
        theirs = ev.get_pdu_json()
        theirs.pop("unsigned", None)
        assert ours["event"] == theirs, v
        assert ours["event_id"] == ev.event_id, v

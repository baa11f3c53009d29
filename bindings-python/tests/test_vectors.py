"""Every vector of tests/vectors through `import mxfed`, checked against the expected values and
byte for byte against the native `mxfed` CLI (the full run is tests/tests/host_python.rs; these
are the readable-failure versions)."""

import json
from typing import Any, Dict, List

import pytest

import mxfed
from conftest import KEY_FILES, SEED, Cli, dumps, key_responses, load, spec_vectors, synapse_pdus

SPEC = spec_vectors()
OFFICIAL = SPEC["official"]
DERIVED = [v for v in SPEC["derived"] if v["kind"] == "derived_event"]
KEY = mxfed.SigningKey.from_seed("1", SEED)


def canon(value: Any, rv: Any = None) -> bytes:
    return mxfed.canonical_json(value, room_version=rv)


@pytest.mark.parametrize(
    "v",
    [v for v in OFFICIAL + SPEC["derived"] if v["kind"] == "canonical_json"],
    ids=lambda v: v["name"],
)
def test_canonical_json(v: Dict[str, Any], cli: Cli) -> None:
    got = mxfed.canonical_json(v["input"].encode())
    assert got == bytes.fromhex(v["expected_bytes_hex"])
    assert got == cli.ok(["canonical"], v["input"].encode())


@pytest.mark.parametrize(
    "v", [v for v in SPEC["derived"] if v["kind"] == "canonical_json_negative"], ids=lambda v: v["name"]
)
def test_canonical_json_negative(v: Dict[str, Any], cli: Cli) -> None:
    with pytest.raises(mxfed.CanonicalJsonError) as e:
        mxfed.canonical_json(v["input"].encode())
    p = cli.run(["canonical"], v["input"].encode())
    assert p.returncode == 2
    assert ("error[%s]" % e.value.code).encode() in p.stderr


@pytest.mark.parametrize("v", [v for v in OFFICIAL if v["kind"] == "json_signing"], ids=lambda v: v["name"])
def test_json_signing(v: Dict[str, Any], cli: Cli, key_file: Any) -> None:
    signed = mxfed.sign_json(v["input"].encode(), "domain", KEY)
    assert signed == json.loads(v["expected"])
    assert canon(signed) == cli.ok(["sign", "--key", str(key_file), "--server-name", "domain"], v["input"].encode())
    assert mxfed.verify_json(v["expected"], "domain", {"ed25519:1": KEY.verify_key}) == ["ed25519:1"]


@pytest.mark.parametrize("v", [v for v in OFFICIAL if v["kind"] == "event_signing"], ids=lambda v: v["name"])
def test_event_signing(v: Dict[str, Any]) -> None:
    assert mxfed.hash_and_sign_event(v["input"], "1", "domain", KEY) == json.loads(v["expected"])


@pytest.mark.parametrize("v", [v for v in OFFICIAL if v["kind"] == "unpadded_base64"], ids=lambda v: v["name"])
def test_unpadded_base64(v: Dict[str, Any]) -> None:
    assert mxfed.encode_base64(v["input"].encode()) == v["expected"]
    assert mxfed.decode_base64(v["expected"]) == v["input"].encode()


@pytest.mark.parametrize("v", DERIVED, ids=lambda v: v["name"])
def test_derived_event(v: Dict[str, Any], cli: Cli, tmp_path: Any) -> None:
    rv = v["room_version"]
    p = v["params"]
    e = v["expected"]
    key = mxfed.SigningKey.from_seed(p["key_id"].split(":", 1)[1], p["signing_key_seed_base64"])
    kf = tmp_path / "k"
    key.save(kf)
    # A dict in, a dict out; and the same bytes as the CLI.
    signed = mxfed.hash_and_sign_event(v["input"], rv, p["server_name"], key)
    assert signed == e["signed_event"]
    assert canon(signed, rv) == cli.ok(
        ["event", "sign", "--room-version", rv, "--key", str(kf), "--server-name", p["server_name"]],
        dumps(v["input"]),
    )
    signed_bytes = dumps(e["signed_event"])
    hashes = {"content_hash": mxfed.content_hash(signed_bytes, rv), "reference_hash": mxfed.reference_hash(signed_bytes, rv)}
    assert hashes["content_hash"] == e["content_hash_sha256"]
    assert hashes["reference_hash"] == e["reference_hash_sha256_b64"]
    assert canon(hashes) == cli.ok(["event", "hash", "--room-version", rv], signed_bytes)
    redacted = mxfed.redact(e["signed_event"], rv)
    assert redacted == e["redacted"]
    assert canon(redacted, rv) == cli.ok(["event", "redact", "--room-version", rv], signed_bytes)
    want_id = e.get("event_id", v["input"].get("event_id"))
    assert mxfed.event_id(e["signed_event"], rv) == want_id
    assert mxfed.event_id(e["redacted"], rv) == want_id
    assert mxfed.event_id(signed_bytes, rv).encode() == cli.ok(["event", "id", "--room-version", rv], signed_bytes)
    if "room_id" in e:
        assert mxfed.room_id(e["signed_event"], rv) == e["room_id"]


def test_legacy_numbers() -> None:
    legacy = load("legacy_numbers.json")
    key = mxfed.SigningKey.from_seed("1", legacy["seed_base64"])
    for v in legacy["vectors"]:
        rv = v["room_version"]
        signed = mxfed.hash_and_sign_event(v["input"], rv, "domain", key)
        # Floats come back as Python floats and encode as Synapse encodes them.
        assert canon(signed, rv).decode() == v["canonical_python"]
        assert mxfed.content_hash(signed, rv) == v["content_hash"]
        assert mxfed.reference_hash(signed, rv) == v["reference_hash"]
        # The same dict is not an event of a strict room version.
        with pytest.raises(mxfed.CanonicalJsonError) as e:
            mxfed.content_hash(signed, "10")
        assert e.value.code in ("json_float", "json_integer_out_of_range")


def _by_version() -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for line in synapse_pdus():
        out.setdefault(line["room_version"], []).append(line)
    return out


@pytest.mark.parametrize("rv,lines", sorted(_by_version().items()), ids=lambda x: x if isinstance(x, str) else "")
def test_synapse_pdus(rv: str, lines: List[Dict[str, Any]], cli: Cli) -> None:
    """Synapse's 478 real PDUs: mxfed reaches Synapse's verdicts, and check_pdus prints what
    `mxfed event check` prints, byte for byte."""
    ring = mxfed.KeyRing(key_responses())
    verdicts = mxfed.check_pdus([line["pdu"] for line in lines], rv, ring)
    jsonl = b"".join(dumps(line["pdu"]) + b"\n" for line in lines)
    from_bytes = mxfed.check_pdus([dumps(line["pdu"]) for line in lines], rv, key_responses())
    assert verdicts == from_bytes
    for line, got in zip(lines, verdicts):
        e = line["expected"]
        want = {(True, True): "accepted", (True, False): "redacted"}.get(
            (e["signature_ok"], e["content_hash_ok"]), "rejected"
        )
        assert (got["event_id"], got["verdict"]) == (line["event_id"], want)
    p = cli.run(["event", "check", "--room-version", rv, "--keys", *map(str, KEY_FILES)], jsonl)
    assert p.returncode in (0, 1)
    assert b"".join(canon(v) + b"\n" for v in verdicts) == p.stdout

"""The Pythonic API: inputs in every accepted form, keys and key files, key rings, requests,
server keys, transactions, the exception hierarchy, and the GIL released by check_pdus."""

import collections
import copy
import json
import types
from collections.abc import Mapping
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import mxfed
from conftest import SEED, VECTORS, dumps, key_responses, load, synapse_pdus
from mxfed.compat.signedjson import key as sj_key

KEY = mxfed.SigningKey.from_seed("1", SEED)

EVENT: Dict[str, Any] = {
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "content": {"body": "hi"},
    "origin_server_ts": 1000000,
    "depth": 3,
    "prev_events": [],
    "auth_events": [],
}


def test_exception_hierarchy() -> None:
    assert issubclass(mxfed.MxfedError, ValueError)
    for name in [
        "CanonicalJsonError",
        "SigningKeyError",
        "SignatureError",
        "EventError",
        "PduError",
        "XMatrixError",
        "ServerKeysError",
        "RoomVersionError",
        "TransactionError",
        "IdentifierError",
        "EduError",
    ]:
        cls = getattr(mxfed, name)
        assert issubclass(cls, mxfed.MxfedError), name
        assert cls.__module__ == "mxfed"


def test_room_versions() -> None:
    assert mxfed.ROOM_VERSIONS == tuple(str(i) for i in range(1, 13))


def test_canonical_json_forms() -> None:
    assert mxfed.canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    # bytes are JSON text, numbers normalised as the spec's examples ask; str is a JSON string.
    assert mxfed.canonical_json(b'{"a": 1e10, "b": -0}') == b'{"a":10000000000,"b":0}'
    assert mxfed.canonical_json(bytearray(b"[1, 2]")) == b"[1,2]"
    assert mxfed.canonical_json(memoryview(b"[1, 2]")) == b"[1,2]"
    assert mxfed.canonical_json("x\n") == b'"x\\n"'
    assert mxfed.canonical_json((1, 2)) == b"[1,2]"
    assert mxfed.canonical_json(2**53 - 1) == b"9007199254740991"
    # Room versions 1-5: floats as Synapse writes them.
    assert mxfed.canonical_json({"a": 1.0, "b": 10**20}, room_version="5") == b'{"a":1.0,"b":100000000000000000000}'


def test_is_canonical_json() -> None:
    assert mxfed.is_canonical_json(b'{"a":[true,null,"\xc3\xa9"],"b":1}')
    assert mxfed.is_canonical_json(bytearray(b"[1,2]"))
    assert mxfed.is_canonical_json(memoryview(b'"x\\n"'))
    assert mxfed.is_canonical_json(mxfed.canonical_json({"b": 1, "a": "\u2028\x01"}))
    # Whitespace, key order, needless escapes, floats and bad JSON: all simply False.
    for data in [b'{"a": 1}', b'{"b":1,"a":2}', b'["\\u00e9"]', b'["\\/"]', b"-0", b"1.0", b"{", b'["\xff"]']:
        assert not mxfed.is_canonical_json(data), data
    with pytest.raises(TypeError):
        mxfed.is_canonical_json("{}")  # type: ignore[arg-type]


def test_verify_request_canonical_or_not() -> None:
    # Signed over the canonical form: verifies whether the body arrives canonical or not.
    value = {"pdus": [], "origin": "origin.example"}
    headers = mxfed.sign_request(KEY, "origin.example", "dest.example", "PUT", "/_matrix/federation/v1/send/1", value)
    keys = [mxfed.server_keys("origin.example", KEY, valid_until_ts=10**12)]
    for body in [mxfed.canonical_json(value), json.dumps(value).encode(), json.dumps(value), value]:
        ok = mxfed.verify_request("dest.example", keys, "PUT", "/_matrix/federation/v1/send/1", headers, body, now_ms=1000)
        assert ok["origin"] == "origin.example"


def test_sign_json_does_not_mutate_and_verifies() -> None:
    obj = {"one": 1, "unsigned": {"age": 5}, "signatures": {"other": {"ed25519:x": "abc"}}}
    before = copy.deepcopy(obj)
    signed = mxfed.sign_json(obj, "domain", KEY)
    assert obj == before
    assert signed["signatures"]["other"] == {"ed25519:x": "abc"}
    assert signed["unsigned"] == {"age": 5}
    assert mxfed.verify_json(signed, "domain", {"ed25519:1": KEY.verify_key}) == ["ed25519:1"]
    assert mxfed.verify_json(signed, "domain", {"ed25519:1": KEY.verify_key_bytes}) == ["ed25519:1"]
    # As text too.
    assert mxfed.verify_json(json.dumps(signed), "domain", {"ed25519:1": KEY.verify_key}) == ["ed25519:1"]
    tampered = dict(signed, one=2)
    with pytest.raises(mxfed.SignatureError) as e:
        mxfed.verify_json(tampered, "domain", {"ed25519:1": KEY.verify_key})
    assert e.value.code == "signature_invalid"
    with pytest.raises(mxfed.SignatureError) as e:
        mxfed.verify_json(signed, "elsewhere", {"ed25519:1": KEY.verify_key})
    assert e.value.code == "signature_missing"


def test_sign_with_several_keys_matches_signedjson() -> None:
    k2 = mxfed.SigningKey.generate()
    signed = mxfed.sign_json({"a": 1}, "domain", [KEY, k2])
    assert set(signed["signatures"]["domain"]) == {"ed25519:1", k2.key_id}
    # signedjson with the same seeds gives the same signatures.
    for k in (KEY, k2):
        nacl_key = sj_key.decode_signing_key_base64("ed25519", k.version, k.to_synapse_line().split()[2])
        from mxfed.compat.signedjson.sign import sign_json

        assert sign_json({"a": 1}, "domain", nacl_key)["signatures"]["domain"][k.key_id] == signed["signatures"]["domain"][k.key_id]


def test_signing_key_files(tmp_path: Path) -> None:
    k = mxfed.SigningKey.generate()
    assert k.key_id.startswith("ed25519:a_") and len(k.version) == 6
    assert mxfed.SigningKey.generate("my_version").key_id == "ed25519:my_version"
    path = tmp_path / "signing.key"
    k.save(path)
    assert path.read_text() == k.to_synapse_line()
    with pytest.raises(FileExistsError):
        k.save(path)
    k.save(path, overwrite=True)
    (loaded,) = mxfed.SigningKey.load(path)
    assert (loaded.key_id, loaded.verify_key) == (k.key_id, k.verify_key)
    assert loaded.sign(b"x") == k.sign(b"x")
    # Synapse's own reader (signedjson) reads what we write, and we read what it writes.
    with open(path) as f:
        (nacl_key,) = sj_key.read_signing_keys(f)
    assert sj_key.encode_verify_key_base64(sj_key.get_verify_key(nacl_key)) == k.verify_key
    two = tmp_path / "two.key"
    with open(two, "w") as f:
        sj_key.write_signing_keys(f, [nacl_key, sj_key.generate_signing_key("b")])
    assert [x.version for x in mxfed.SigningKey.load(two)] == [k.version, "b"]
    assert mxfed.SigningKey.from_seed("1", bytes(32)).verify_key == mxfed.SigningKey.from_seed("1", "A" * 43).verify_key
    assert "seed" not in repr(k) and k.to_synapse_line().split()[2] not in repr(k)


def test_events_accept_dict_bytes_and_str() -> None:
    signed = mxfed.hash_and_sign_event(EVENT, "10", "domain", KEY)
    assert EVENT.get("hashes") is None  # not mutated
    for form in (signed, dumps(signed), dumps(signed).decode()):
        assert mxfed.event_id(form, "10") == mxfed.event_id(signed, "10")
        assert mxfed.content_hash(form, "10") == signed["hashes"]["sha256"]
        assert mxfed.redact(form, "10")["content"] == {}
    assert mxfed.event_id(signed, "10").startswith("$")
    (v,) = mxfed.check_pdus([signed], "10", [mxfed.server_keys("domain", KEY, 2000000)])
    assert v["verdict"] == "accepted"


def _outcome(call: Any) -> Any:
    try:
        return ("ok", call())
    except mxfed.MxfedError as e:
        return (type(e).__name__, e.code)


@pytest.mark.parametrize(
    "unsigned",
    [
        {"age": 1.5},
        {"age": 2**60},
        {"a": [0.5], "age": 7},
        2**60,
        {"invite_room_state": [{"n": 1.5}]},  # kept by the core's reduction: refused
        {"x": float("nan")},
    ],
    ids=repr,
)
@pytest.mark.parametrize("version", ["1", "3", "10", "12"])
def test_numbers_under_unsigned_are_judged_as_in_json_text(unsigned: Any, version: str) -> None:
    """`unsigned` is neither hashed nor signed: a float or a big integer under it is judged the
    same way whether the event is a dict or JSON text (the core's parse_pdu), with the same
    output (the outputs that carry `unsigned` included)."""
    ev = dict(EVENT, type="m.room.member", state_key="@u:domain", content={"membership": "join"})
    ev.update(event_id="$e:domain", unsigned=unsigned)
    text = json.dumps(ev).encode()
    calls = [
        lambda e: mxfed.content_hash(e, version),
        lambda e: mxfed.reference_hash(e, version),
        lambda e: mxfed.event_id(e, version),
        lambda e: mxfed.redact(e, version),
        lambda e: mxfed.room_id(e, version),
        lambda e: mxfed.hash_and_sign_event(e, version, "domain", KEY),
    ]
    for call in calls:
        assert _outcome(lambda: call(ev)) == _outcome(lambda: call(text))
    # What is kept of `unsigned` comes out the same too.
    signed = _outcome(lambda: mxfed.hash_and_sign_event(ev, version, "domain", KEY))
    if version == "10" and unsigned == {"a": [0.5], "age": 7}:
        assert signed[1]["unsigned"] == {"age": 7}


def test_check_pdus_rejects_unconvertible_dicts_per_item() -> None:
    signed = mxfed.hash_and_sign_event(EVENT, "10", "domain", KEY)
    bad = dict(signed, depth=1.5)
    keys = mxfed.KeyRing([mxfed.server_keys("domain", KEY, 2000000)])
    ok, rejected, text_rejected = mxfed.check_pdus([signed, bad, b"{"], "10", keys)
    assert ok["verdict"] == "accepted"
    assert (rejected["verdict"], rejected["reason"], rejected["event_id"]) == ("rejected", "json_float", None)
    assert (text_rejected["verdict"], text_rejected["reason"]) == ("rejected", "json_syntax")
    assert set(rejected) == set(text_rejected)


class _Frozen(Mapping):  # type: ignore[type-arg]
    """A read-only Mapping that is not a dict (as immutabledict is)."""

    def __init__(self, d: Dict[str, Any]) -> None:
        self._d = dict(d)

    def __getitem__(self, k: str) -> Any:
        return self._d[k]

    def __iter__(self) -> Any:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


@pytest.mark.parametrize("wrap", [types.MappingProxyType, collections.UserDict, collections.OrderedDict, _Frozen])
def test_any_mapping_is_taken_where_a_dict_is(wrap: Any) -> None:
    """What the stubs promise (Mapping), the functions take: any collections.abc.Mapping."""
    assert mxfed.canonical_json(wrap({"b": [wrap({"x": 1})], "a": 1})) == b'{"a":1,"b":[{"x":1}]}'
    signed = mxfed.sign_json(wrap({"one": 1}), "domain", KEY)
    assert signed == mxfed.sign_json({"one": 1}, "domain", KEY)
    assert mxfed.verify_json(wrap(signed), "domain", wrap({"ed25519:1": KEY.verify_key})) == ["ed25519:1"]
    assert mxfed.event_id(wrap(EVENT), "10") == mxfed.event_id(EVENT, "10")
    old = wrap({"ed25519:0": wrap({"key": KEY.verify_key, "expired_ts": 5})})
    response = mxfed.server_keys("domain", KEY, 2000000, old)
    assert response == mxfed.server_keys("domain", KEY, 2000000, {"ed25519:0": {"key": KEY.verify_key, "expired_ts": 5}})
    for ring in (mxfed.KeyRing(wrap(response)), mxfed.KeyRing([wrap(response)])):
        assert ring.servers() == ["domain"]
        assert ring.add(wrap(response)) == "domain"
    ev = mxfed.hash_and_sign_event(EVENT, "10", "domain", KEY)
    (verdict,) = mxfed.check_pdus([wrap(ev)], "10", wrap(response))
    assert verdict["verdict"] == "accepted"
    assert mxfed.server_acl_allows(wrap({"allow": ["*"]}), "a.example") is True
    with pytest.raises(TypeError):
        mxfed.check_pdus(wrap(ev), "10", [])  # one PDU, not a list of them


def test_key_ring_takes_one_response_or_many() -> None:
    text = key_responses()[0]
    assert mxfed.KeyRing(text).servers() == mxfed.KeyRing([text]).servers() == mxfed.KeyRing(text.decode()).servers()
    with pytest.raises(TypeError):
        mxfed.verify_json({}, "d", [("ed25519:1", KEY.verify_key)])
    with pytest.raises(TypeError):
        mxfed.server_keys("domain", KEY, 1, [("ed25519:0", {})])


def test_key_ring() -> None:
    ring = mxfed.KeyRing(key_responses())
    assert ring.servers() == ["localhost:8448", "localhost:8449", "localhost:8450"]
    assert list(ring.keys("localhost:8448")) == ["ed25519:a_zMzs"]
    assert ring.keys("nobody") == {}
    ours = mxfed.server_keys("domain", KEY, 1000, old_keys={"ed25519:old": {"key": KEY.verify_key, "expired_ts": 5}})
    assert ours["old_verify_keys"] == {"ed25519:old": {"key": KEY.verify_key, "expired_ts": 5}}
    assert ring.add(ours) == "domain"
    tampered = dict(ours, valid_until_ts=2000)
    with pytest.raises(mxfed.ServerKeysError) as e:
        ring.add(tampered)
    assert e.value.code == "keys_not_self_signed"


def test_request_round_trip() -> None:
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"x": 1.5}}]}
    headers = mxfed.sign_request(KEY, "origin.example", "dest.example", "PUT", "/_matrix/federation/v1/send/1", content)
    assert len(headers) == 1 and headers[0].startswith('X-Matrix origin="origin.example",destination="dest.example"')
    keys = [mxfed.server_keys("origin.example", KEY, 10**12)]
    ok = mxfed.verify_request("dest.example", keys, "PUT", "/_matrix/federation/v1/send/1", headers, content, now_ms=1000)
    assert ok == {"origin": "origin.example", "verified": ["ed25519:1"]}
    # The body as bytes, as a server receives it, verifies the same.
    body = json.dumps(content).encode()
    assert mxfed.verify_request("dest.example", keys, "PUT", "/_matrix/federation/v1/send/1", headers[0], body, 1000)["origin"] == "origin.example"
    with pytest.raises(mxfed.XMatrixError) as e:
        mxfed.verify_request("dest.example", keys, "PUT", "/_matrix/federation/v1/send/2", headers, content, 1000)
    assert e.value.code == "xmatrix_bad_signature"
    with pytest.raises(mxfed.XMatrixError) as e:
        mxfed.verify_request("dest.example", keys, "PUT", "/x", headers, content, now_ms=10**13)
    assert e.value.code == "xmatrix_key_expired"


def test_parse_transaction_samples() -> None:
    seen = 0
    for path in sorted((VECTORS / "samples").glob("send_txn_*.json")):
        content = json.loads(path.read_bytes())["request"]["content"]
        tx = mxfed.parse_transaction(json.dumps(content).encode())
        assert tx == mxfed.parse_transaction(content)
        assert tx["origin"] == content["origin"]
        assert len(tx["pdus"]) == len(content.get("pdus") or [])
        assert len(tx["edus"]) == len(content.get("edus") or [])
        assert tx["rejected"] == []
        seen += 1
    assert seen >= 3


def test_parse_transaction_items_and_refusals() -> None:
    tx = mxfed.parse_transaction(
        b'{"origin":"a.example","origin_server_ts":1,"pdus":[7,{"type":"x"}],'
        b'"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:a.example","user_id":"@u:a.example","typing":true}}]}'
    )
    assert (len(tx["pdus"]), len(tx["edus"])) == (0, 1)
    assert [(r["item"], r["code"]) for r in tx["rejected"]] == [("/pdus/0", "txn_pdu_not_object"), ("/pdus/1", "txn_pdu_missing_room_id")]
    for body, cls, code in [
        (b"[]", mxfed.TransactionError, "txn_not_object"),
        (b'{"origin_server_ts":1}', mxfed.TransactionError, "txn_missing_field"),
        (b'{"origin":"a","origin_server_ts":1,"pdus":{}}', mxfed.TransactionError, "txn_wrong_type"),
        (b'{"origin":"a b","origin_server_ts":1}', mxfed.TransactionError, "txn_bad_origin"),
        (b"{", mxfed.CanonicalJsonError, "json_syntax"),
    ]:
        with pytest.raises(cls) as e:
            mxfed.parse_transaction(body)
        assert e.value.code == code, body


def _nested(levels: int) -> Any:
    v: Any = 1
    for _ in range(levels):
        v = [v]
    return v


def test_transactions_may_nest_deeper_than_other_bodies() -> None:
    # A to-device message nested past 128 levels (Synapse forwards one) does not make the
    # transaction unreadable, as dict or as bytes; a PDU nested past 128 is left out on its own.
    message = {"deep": _nested(130)}
    content = {
        "origin": "origin.example",
        "origin_server_ts": 1,
        "pdus": [{"room_id": "!r:origin.example", "content": {"x": _nested(127)}}],
        "edus": [
            {
                "edu_type": "m.direct_to_device",
                "content": {"sender": "@s:origin.example", "type": "m.x", "message_id": "m1", "messages": {"@r:dest.example": {"D": message}}},
            }
        ],
    }
    tx = mxfed.parse_transaction(content)
    assert tx == mxfed.parse_transaction(json.dumps(content).encode())
    assert (len(tx["edus"]), [r["code"] for r in tx["rejected"]]) == (1, ["txn_pdu_too_deep"])
    send = "/_matrix/federation/v1/send/1"
    headers = mxfed.sign_request(KEY, "origin.example", "dest.example", "PUT", send, content)
    keys = [mxfed.server_keys("origin.example", KEY, 10**12)]
    for body in (content, json.dumps(content).encode()):
        assert mxfed.verify_request("dest.example", keys, "PUT", send, headers, body, 1000)["origin"] == "origin.example"
    # Other bodies keep the default limit.
    with pytest.raises(mxfed.CanonicalJsonError) as e:
        mxfed.sign_request(KEY, "origin.example", "dest.example", "POST", "/_matrix/key/v2/query", content)
    assert e.value.code == "json_too_deep"


def test_check_pdus_releases_the_gil() -> None:
    """While check_pdus runs in one thread, Python code runs in another."""
    lines = [line for line in synapse_pdus() if line["room_version"] == "10"]
    pdus = [dumps(line["pdu"]) for line in lines] * 20
    ring = mxfed.KeyRing(key_responses())
    window: List[float] = []
    ticks: List[float] = []
    stop = threading.Event()

    def worker() -> None:
        t0 = time.perf_counter()
        mxfed.check_pdus(pdus, "10", ring)
        window.extend([t0, time.perf_counter()])
        stop.set()

    t = threading.Thread(target=worker)
    t.start()
    while not stop.is_set():
        ticks.append(time.perf_counter())
    t.join()
    t0, t1 = window
    inside = [x for x in ticks if t0 + (t1 - t0) * 0.25 < x < t0 + (t1 - t0) * 0.75]
    assert t1 - t0 > 0.02, "batch too small to observe"
    assert len(inside) > 100, "the main thread did not run while check_pdus did"


def test_check_pdus_threads_and_batches_agree_with_single_checks() -> None:
    """Batches of 512+ are split across threads and their signatures batch-verified by the core;
    the verdicts are those of checking each PDU alone, tampered ones included."""
    lines = [line for line in synapse_pdus() if line["room_version"] == "10"]
    pdus = [dumps(line["pdu"]) for line in lines]
    while len(pdus) < 700:
        pdus = pdus + pdus
    tampered = json.loads(pdus[3])
    tampered["signatures"]["localhost:8448"]["ed25519:a_zMzs"] = "A" * 86
    changed = json.loads(pdus[5])
    changed["content"]["body"] = "changed"
    pdus[3], pdus[600] = dumps(tampered), dumps(changed)
    ring = mxfed.KeyRing(key_responses())
    one_by_one = [mxfed.check_pdus([p], "10", ring)[0] for p in pdus]
    assert mxfed.check_pdus(pdus, "10", ring, threads=1) == one_by_one
    assert mxfed.check_pdus(pdus, "10", ring, threads=2) == one_by_one
    assert mxfed.check_pdus(pdus, "10", ring) == one_by_one
    assert one_by_one[3]["verdict"] == "rejected" and one_by_one[600]["verdict"] in ("rejected", "redacted")


def _make_join_answer(version: str = "10", **changes: Any) -> Dict[str, Any]:
    ev: Dict[str, Any] = {
        "type": "m.room.member",
        "room_id": "!r:res.example",
        "sender": "@u:domain",
        "state_key": "@u:domain",
        "content": {"membership": "join"},
        "prev_events": ["$prev"],
        "auth_events": ["$create"],
        "depth": 5,
        "origin": "res.example",
        "origin_server_ts": 1,
    }
    ev.update(changes)
    return {"room_version": version, "event": ev}


def test_membership_from_template() -> None:
    answer = _make_join_answer()
    out = mxfed.membership_from_template(
        answer, "!r:res.example", "@u:domain", "join", "domain", KEY,
        now_ms=5000, content={"displayname": "U"},
    )
    assert out["room_version"] == "10"
    ev = out["event"]
    assert out["event_id"] == mxfed.event_id(ev, "10")
    assert ev["origin"] == "domain" and ev["origin_server_ts"] == 5000
    assert ev["content"] == {"displayname": "U", "membership": "join"}
    assert answer["event"]["origin"] == "res.example"  # the input is not changed
    verdict = mxfed.check_pdus([ev], "10", [mxfed.server_keys("domain", KEY, 10**12)])[0]
    assert verdict["verdict"] == "accepted", verdict
    # The same answer as JSON text.
    text = mxfed.membership_from_template(
        json.dumps(answer), "!r:res.example", "@u:domain", "join", "domain", KEY,
        now_ms=5000, content='{"displayname":"U"}',
    )
    assert text == out
    # Room version 1 (no room_version): the event ID's local part is drawn unless given.
    v1 = {"event": dict(answer["event"], prev_events=[], auth_events=[])}
    drawn = mxfed.membership_from_template(v1, "!r:res.example", "@u:domain", "join", "domain", KEY)
    assert drawn["room_version"] == "1"
    assert drawn["event_id"].endswith(":domain") and len(drawn["event_id"]) == len("$:domain") + 18
    given = mxfed.membership_from_template(
        v1, "!r:res.example", "@u:domain", "join", "domain", KEY, event_id_localpart="abc"
    )
    assert given["event_id"] == "$abc:domain"


@pytest.mark.parametrize(
    "answer, exc, code",
    [
        (_make_join_answer(sender="@x:domain"), mxfed.EventError, "template_not_asked"),
        (_make_join_answer(content={"membership": "leave"}), mxfed.EventError, "template_not_asked"),
        ({"room_version": "10"}, mxfed.EventError, "template_no_event"),
        (_make_join_answer("99"), mxfed.RoomVersionError, "unsupported_room_version"),
        ("{", mxfed.CanonicalJsonError, "json_syntax"),
    ],
)
def test_membership_from_template_refusals(answer: Any, exc: Any, code: str) -> None:
    with pytest.raises(exc) as e:
        mxfed.membership_from_template(answer, "!r:res.example", "@u:domain", "join", "domain", KEY)
    assert e.value.code == code

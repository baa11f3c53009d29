"""Bad input never crashes: every row raises the expected MxfedError subclass with the core's
stable code (the same codes the CLI prints as `error[<code>]`)."""

import math
from typing import Any, Callable, Type

import pytest

import mxfed
from conftest import SEED, key_responses

KEY = mxfed.SigningKey.from_seed("1", SEED)
EV = {
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "content": {"body": "hi"},
    "origin_server_ts": 1000000,
    "depth": 3,
    "prev_events": [],
    "auth_events": [],
}


class Cycle(dict):  # type: ignore[type-arg]
    pass


def _cycle() -> Any:
    d: Any = {}
    d["self"] = d
    return d


class Twin(str):
    """A str that equals only itself: one key twice in a dict."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _twins() -> Any:
    return {Twin("a"): 1, Twin("a"): 2}


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


E = mxfed
ROWS = [
    # (id, call, exception class, code)
    ("float", lambda: E.canonical_json({"a": 1.5}), E.CanonicalJsonError, "json_float"),
    ("nan", lambda: E.canonical_json([math.nan]), E.CanonicalJsonError, "json_non_finite"),
    ("inf legacy", lambda: E.canonical_json([math.inf], room_version="1"), E.CanonicalJsonError, "json_non_finite"),
    ("big int", lambda: E.canonical_json(2**53), E.CanonicalJsonError, "json_integer_out_of_range"),
    ("huge int", lambda: E.canonical_json(-(10**400)), E.CanonicalJsonError, "json_integer_out_of_range"),
    ("int key", lambda: E.canonical_json({1: "a"}), E.CanonicalJsonError, "json_non_string_key"),
    ("None key", lambda: E.canonical_json({None: "a"}), E.CanonicalJsonError, "json_non_string_key"),
    ("set value", lambda: E.canonical_json({"a": {1}}), E.CanonicalJsonError, "json_unsupported_type"),
    ("bytes in dict", lambda: E.canonical_json({"a": b"x"}), E.CanonicalJsonError, "json_unsupported_type"),
    ("object value", lambda: E.canonical_json([object()]), E.CanonicalJsonError, "json_unsupported_type"),
    ("lone surrogate", lambda: E.canonical_json("\ud800"), E.CanonicalJsonError, "json_lone_surrogate"),
    ("cycle", lambda: E.canonical_json(_cycle()), E.CanonicalJsonError, "json_too_deep"),
    ("too deep", lambda: E.canonical_json(_deep(200)), E.CanonicalJsonError, "json_too_deep"),
    ("invalid JSON", lambda: E.canonical_json(b'{"a":'), E.CanonicalJsonError, "json_syntax"),
    ("trailing data", lambda: E.canonical_json(b"{} {}"), E.CanonicalJsonError, "json_trailing_data"),
    ("duplicate key", lambda: E.canonical_json(b'{"a":1,"a":2}'), E.CanonicalJsonError, "json_duplicate_key"),
    ("duplicate str subclass key", lambda: E.canonical_json({"x": _twins()}), E.CanonicalJsonError, "json_duplicate_key"),
    ("duplicate key in event", lambda: E.event_id(dict(EV, content=_twins()), "10"), E.CanonicalJsonError, "json_duplicate_key"),
    ("duplicate key to sign", lambda: E.sign_json(_twins(), "domain", KEY), E.CanonicalJsonError, "json_duplicate_key"),
    ("invalid UTF-8", lambda: E.canonical_json(b'"\xff"'), E.CanonicalJsonError, "json_invalid_utf8"),
    ("lone surrogate escape", lambda: E.canonical_json(b'"\\ud800"'), E.CanonicalJsonError, "json_lone_surrogate"),
    ("not integer", lambda: E.canonical_json(b"1.5"), E.CanonicalJsonError, "json_not_integer"),
    ("NaN text", lambda: E.canonical_json(b"NaN"), E.CanonicalJsonError, "json_non_finite"),
    ("list as object", lambda: E.sign_json([1], "domain", KEY), E.CanonicalJsonError, "json_syntax"),
    ("text not object", lambda: E.sign_json(b"[1]", "domain", KEY), E.CanonicalJsonError, "json_syntax"),
    ("float in v10 event", lambda: E.event_id(dict(EV, depth=3.0), "10"), E.CanonicalJsonError, "json_float"),
    ("float text in v6 event", lambda: E.event_id(b'{"depth":1.0}', "6"), E.CanonicalJsonError, "json_float"),
    ("seed bad base64", lambda: E.SigningKey.from_seed("1", "not base64!"), E.SigningKeyError, "bad_base64"),
    ("seed too short", lambda: E.SigningKey.from_seed("1", "AAAA"), E.SigningKeyError, "bad_key_length"),
    ("seed 31 bytes", lambda: E.SigningKey.from_seed("1", bytes(31)), E.SigningKeyError, "bad_key_length"),
    ("bad key version", lambda: E.SigningKey.from_seed("a:b", bytes(32)), E.SigningKeyError, "bad_key_id"),
    ("key file junk", lambda: E.SigningKey.parse_synapse("hello\n"), E.SigningKeyError, "bad_key_file"),
    ("key file empty", lambda: E.SigningKey.parse_synapse("\n"), E.SigningKeyError, "empty_key_file"),
    ("key file algorithm", lambda: E.SigningKey.parse_synapse("rsa 1 AAAA\n"), E.SigningKeyError, "unsupported_algorithm"),
    ("no keys", lambda: E.sign_json({}, "domain", []), E.SigningKeyError, "empty_key_file"),
    ("verify key length", lambda: E.verify_json({}, "d", {"ed25519:1": "AAAA"}), E.SigningKeyError, "bad_key_length"),
    ("verify key bytes length", lambda: E.verify_json({}, "d", {"ed25519:1": bytes(31)}), E.SigningKeyError, "bad_key_length"),
    ("verify key id", lambda: E.verify_json({}, "d", {"ed25519:": KEY.verify_key}), E.SigningKeyError, "bad_key_id"),
    ("verify key algorithm", lambda: E.verify_json({}, "d", {"rsa:1": KEY.verify_key}), E.SigningKeyError, "unsupported_algorithm"),
    ("signatures not object", lambda: E.sign_json({"signatures": 1}, "domain", KEY), E.SignatureError, "signatures_malformed"),
    ("signature not base64", lambda: E.verify_json({"signatures": {"d": {"ed25519:1": "!!"}}}, "d", {"ed25519:1": KEY.verify_key}), E.SignatureError, "signature_bad_encoding"),
    ("signature short", lambda: E.verify_json({"signatures": {"d": {"ed25519:1": "AAAA"}}}, "d", {"ed25519:1": KEY.verify_key}), E.SignatureError, "signature_bad_encoding"),
    ("unsigned", lambda: E.verify_json({}, "d", {"ed25519:1": KEY.verify_key}), E.SignatureError, "signature_missing"),
    ("no usable key", lambda: E.verify_json(E.sign_json({}, "d", KEY), "d", {"ed25519:2": KEY.verify_key}), E.SignatureError, "signature_no_usable_key"),
    ("bad server name", lambda: E.sign_json({}, "bad host", KEY), E.IdentifierError, "bad_server_name"),
    ("room version", lambda: E.event_id(EV, "13"), E.RoomVersionError, "unsupported_room_version"),
    ("v1 event without id", lambda: E.event_id(EV, "1"), E.EventError, "event_missing_field"),
    ("v1 event id not string", lambda: E.event_id(dict(EV, event_id=1), "1"), E.EventError, "event_wrong_type"),
    ("room id of non-create", lambda: E.room_id(EV, "12"), E.EventError, "event_not_v12_create"),
    ("hashes not object", lambda: E.hash_and_sign_event(dict(EV, hashes=[]), "10", "domain", KEY), E.EventError, "event_wrong_type"),
    ("event signatures malformed", lambda: E.hash_and_sign_event(dict(EV, signatures=[]), "10", "domain", KEY), E.SignatureError, "signatures_malformed"),
    ("key response junk", lambda: E.KeyRing([{"server_name": "x"}]), E.ServerKeysError, "keys_bad_field"),
    ("key response server", lambda: E.KeyRing([{"server_name": "bad host", "valid_until_ts": 1}]), E.ServerKeysError, "bad_server_name"),
    ("key response text", lambda: E.check_pdus([], "10", [b"nope"]), E.CanonicalJsonError, "json_syntax"),
    ("header garbage", lambda: E.verify_request("d", key_responses(), "GET", "/", ["X-Matrix nonsense"]), E.XMatrixError, "xmatrix_malformed"),
    ("header missing sig", lambda: E.verify_request("d", key_responses(), "GET", "/", ['X-Matrix origin=a,key="ed25519:1"']), E.XMatrixError, "xmatrix_missing_param"),
    ("header bad origin", lambda: E.verify_request("d", key_responses(), "GET", "/", ['X-Matrix origin="a b",key="ed25519:1",sig="x"']), E.XMatrixError, "xmatrix_bad_origin"),
    ("request body not JSON", lambda: E.sign_request(KEY, "a", "b", "PUT", "/", b"{"), E.XMatrixError, "json_syntax"),
    ("server keys ts", lambda: E.server_keys("domain", KEY, 2**60), E.CanonicalJsonError, "json_integer_out_of_range"),
    ("transaction", lambda: E.parse_transaction(b"7"), E.TransactionError, "txn_not_object"),
    ("base64", lambda: E.decode_base64("a"), E.CanonicalJsonError, "bad_base64"),
    ("acl content not JSON", lambda: E.server_acl_allows(b'{"allow":', "a.example"), E.CanonicalJsonError, "json_syntax"),
    ("acl content a list", lambda: E.server_acl_allows(b'["*"]', "a.example"), E.CanonicalJsonError, "json_syntax"),
    ("acl content duplicate key", lambda: E.server_acl_allows(b'{"allow":[],"allow":[]}', "a"), E.CanonicalJsonError, "json_duplicate_key"),
    ("acl content non-string key", lambda: E.server_acl_allows({1: ["*"]}, "a.example"), E.CanonicalJsonError, "json_non_string_key"),
    ("acl server name", lambda: E.server_acl_allows({"allow": ["*"]}, "bad name"), E.IdentifierError, "bad_server_name"),
    ("acl server name port", lambda: E.server_acl_allows({"allow": ["*"]}, "a.example:"), E.IdentifierError, "bad_server_name"),
    ("plan server name", lambda: E.discovery_plan("bad name"), E.IdentifierError, "bad_server_name"),
    ("plan server name with body", lambda: E.discovery_plan("", b"{}"), E.IdentifierError, "bad_server_name"),
    ("srv records not JSON", lambda: E.pick_srv(b"[{"), E.CanonicalJsonError, "json_syntax"),
    ("srv records not a list", lambda: E.pick_srv(b"{}"), E.DiscoveryError, "bad_srv_records"),
    ("srv record port range", lambda: E.pick_srv([{"priority": 0, "weight": 0, "port": 70000, "target": "a."}]), E.DiscoveryError, "bad_srv_record"),
    ("srv record missing target", lambda: E.pick_srv([{"priority": 0, "weight": 0, "port": 1}]), E.DiscoveryError, "bad_srv_record"),
    # Arguments out of their type's range: MxfedError codes, not UnicodeEncodeError/OverflowError.
    ("lone surrogate server name", lambda: E.sign_json({}, "\ud800", KEY), E.MxfedError, "bad_argument"),
    ("lone surrogate room version", lambda: E.event_id(EV, "\ud800"), E.MxfedError, "bad_argument"),
    ("lone surrogate header", lambda: E.verify_request("d", key_responses(), "GET", "/", ["\ud800"]), E.MxfedError, "bad_argument"),
    ("lone surrogate key ID", lambda: E.verify_json({}, "d", {"\ud800": KEY.verify_key}), E.MxfedError, "bad_argument"),
    ("lone surrogate membership", lambda: E.server_may_see("joined", ["\ud800"]), E.MxfedError, "bad_argument"),
    ("lone surrogate event ID", lambda: "\ud800" in E.Room("10"), E.MxfedError, "bad_argument"),
    ("lone surrogate seed", lambda: E.SigningKey.from_seed("1", "\ud800"), E.SigningKeyError, "bad_base64"),
    ("server keys ts 2**63", lambda: E.server_keys("domain", KEY, 2**63), E.CanonicalJsonError, "json_integer_out_of_range"),
    ("old key ts -2**64", lambda: E.server_keys("domain", KEY, 1, {"ed25519:0": {"key": KEY.verify_key, "expired_ts": -(2**64)}}), E.CanonicalJsonError, "json_integer_out_of_range"),
    ("now_ms negative", lambda: E.well_known_lifetime(None, None, now_ms=-1), E.MxfedError, "bad_argument"),
    ("now_ms 2**64", lambda: E.verify_request("d", [], "GET", "/", [], now_ms=2**64), E.MxfedError, "bad_argument"),
    ("threads negative", lambda: E.check_pdus([], "10", [], threads=-1), E.MxfedError, "bad_argument"),
    ("srv record float", lambda: E.pick_srv([{"priority": 0.5, "weight": 0, "port": 1, "target": "a."}]), E.CanonicalJsonError, "json_float"),
]


@pytest.mark.parametrize("name,call,cls,code", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(name: str, call: Callable[[], Any], cls: Type[Exception], code: str) -> None:
    with pytest.raises(cls) as e:
        call()
    assert isinstance(e.value, mxfed.MxfedError) and isinstance(e.value, ValueError)
    assert e.value.code == code
    assert "\n" not in str(e.value)


def test_duplicate_keys_are_named_as_in_json_text() -> None:
    with pytest.raises(mxfed.CanonicalJsonError) as e:
        mxfed.canonical_json({"x": _twins()})
    assert str(e.value) == 'duplicate key "a" at /x/a'


def test_table_size() -> None:
    assert len(ROWS) >= 25


@pytest.mark.parametrize(
    "call",
    [
        lambda: mxfed.sign_json({}, 1, KEY),
        lambda: mxfed.sign_json({}, "domain", "not a key"),
        lambda: mxfed.check_pdus(b"{}", "10", []),
        lambda: mxfed.SigningKey.from_seed("1", 12),
        lambda: mxfed.server_acl_allows({"allow": ["*"]}, 1),
        lambda: mxfed.discovery_plan(None),
        lambda: mxfed.server_may_see("joined", [1]),
        lambda: mxfed.server_may_see("joined", ["join", None]),
        lambda: mxfed.server_may_see("joined", [b"join"]),
        lambda: mxfed.server_may_see("joined", "join"),
        lambda: mxfed.server_may_see("joined", b"join"),
        lambda: mxfed.server_may_see("joined", 5),
        lambda: mxfed.server_may_see("joined", None),
        lambda: mxfed.server_may_see(1, []),
    ],
)
def test_wrong_argument_types_are_type_errors(call: Callable[[], Any]) -> None:
    """Arguments of the wrong Python type (not JSON data) are TypeErrors, as in any library."""
    with pytest.raises(TypeError):
        call()

"""Generated untrusted input into every function that takes it: random bytes, random JSON, and
event-shaped objects with random values. Each call returns or raises an `MxfedError` subclass
with its string `.code` — never a Rust panic (pyo3's `PanicException`, a `BaseException`) or any
other exception, which would propagate and fail the test."""

import json
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st

import mxfed

VERSIONS = ["1", "2", "3", "5", "6", "9", "10", "11", "12", "", "13", "x"]
RING = mxfed.KeyRing()
EXAMPLES = settings(max_examples=250)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
EVENT_KEYS = [
    "type", "room_id", "sender", "state_key", "content", "depth", "prev_events",
    "auth_events", "origin_server_ts", "hashes", "signatures", "unsigned", "redacts", "event_id",
    "origin", "membership",
]
events = st.dictionaries(st.sampled_from(EVENT_KEYS), json_values, max_size=10)


def _json_bytes(v: Any) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


inputs = st.one_of(
    st.binary(max_size=300),
    json_values.map(_json_bytes),
    events,
    events.map(_json_bytes),
    st.text(max_size=60),
)


def typed(f: Callable[..., Any], *args: Any) -> None:
    try:
        f(*args)
    except mxfed.MxfedError as e:
        assert isinstance(e.code, str) and e.code, repr(e)


@EXAMPLES
@given(inputs, st.sampled_from(VERSIONS))
def test_events(data: Any, version: str) -> None:
    for f in (mxfed.content_hash, mxfed.reference_hash, mxfed.event_id, mxfed.room_id, mxfed.redact):
        typed(f, data, version)
    typed(mxfed.check_pdus, [data], version, RING)
    typed(mxfed.replay, [data, data], version, RING)
    try:
        room = mxfed.Room(version)
    except mxfed.MxfedError:
        return
    typed(room.receive, data, RING)


@EXAMPLES
@given(inputs)
def test_transactions_keys_acls_discovery(data: Any) -> None:
    typed(mxfed.parse_transaction, data)
    typed(mxfed.KeyRing().add, data)
    typed(mxfed.server_acl_allows, data, "a.example")
    typed(mxfed.discovery_plan, "example.org", data)
    typed(mxfed.pick_srv, data if not isinstance(data, dict) else [data])
    if isinstance(data, bytes):
        assert isinstance(mxfed.is_canonical_json(data), bool)


@EXAMPLES
@given(st.text(max_size=200), st.text(max_size=60), json_values)
def test_requests(header: str, uri: str, content: Any) -> None:
    typed(mxfed.verify_request, "b.example", RING, "PUT", uri, header, content)
    typed(mxfed.verify_request, "b.example", RING, "GET", uri, [header, header])
    typed(mxfed.decode_base64, header)

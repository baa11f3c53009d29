"""Python code that runs while the bindings work (a subclass's hooks, `__bytes__`, `__index__`,
a mapping's `items`) can neither crash them nor choose their answer: any failure is a
MxfedError with a code, never a pyo3 PanicException."""

from typing import Any, Dict

import mxfed
from conftest import SEED

KEY = mxfed.SigningKey.from_seed("1", SEED)


def test_hooks_that_change_the_dict_being_read_are_not_a_crash() -> None:
    d: Dict[str, Any] = {}

    class Evil(int):
        def __str__(self) -> str:
            d["z"] = 1
            return int.__repr__(self)

        __repr__ = __str__

    d["a"] = Evil(2**60)
    # What the dict held when the call began.
    assert mxfed.canonical_json(d, room_version="1") == b'{"a":1152921504606846976}'
    d.pop("z", None)
    assert mxfed.content_hash(d, "1") == mxfed.content_hash(b'{"a":1152921504606846976}', "1")
    d.pop("z", None)
    assert mxfed.server_acl_allows(d, "a.example") is False

    keys: Dict[str, Any] = {}

    class Key(bytearray):
        def __bytes__(self) -> bytes:
            keys["ed25519:2"] = KEY.verify_key
            return bytes(bytearray(self))

    keys["ed25519:1"] = Key(KEY.verify_key_bytes)
    assert mxfed.verify_json(mxfed.sign_json({}, "d", KEY), "d", keys) == ["ed25519:1"]

    old: Dict[str, Any] = {}

    class Ts:
        def __index__(self) -> int:
            old["ed25519:2"] = {"key": KEY.verify_key, "expired_ts": 1}
            return 5

    old["ed25519:0"] = {"key": KEY.verify_key, "expired_ts": Ts()}
    out = mxfed.server_keys("d", KEY, 10, old)
    assert out["old_verify_keys"] == {"ed25519:0": {"key": KEY.verify_key, "expired_ts": 5}}


def test_a_key_ring_used_again_by_a_hook_of_its_own_add() -> None:
    ring = mxfed.KeyRing()
    response = mxfed.canonical_json(mxfed.server_keys("d", KEY, 10**13))
    seen = []

    class Response(bytearray):
        def __bytes__(self) -> bytes:
            seen.append(mxfed.check_pdus([], "10", ring))
            seen.append(ring.servers())
            return bytes(bytearray(self))

    assert ring.add(Response(response)) == "d"
    assert seen == [[], []]
    assert ring.servers() == ["d"]


def test_number_subclasses_do_not_choose_their_json() -> None:
    """Room versions 1-5 keep floats and big integers: written from their values, as Python's
    json writes them (int.__repr__, float.__repr__), never from the object's own str/repr."""
    import canonicaljson

    class I(int):
        def __str__(self) -> str:
            return '{"injected":[1]}'

        __repr__ = __str__

    class F(float):
        def __repr__(self) -> str:
            return "1.5"

        __str__ = __repr__

    value = {"a": I(2**60), "b": F(2.5), "c": I(-(2**70)), "d": [F(1e300)]}
    plain = {"a": 2**60, "b": 2.5, "c": -(2**70), "d": [1e300]}
    want = b'{"a":1152921504606846976,"b":2.5,"c":-1180591620717411303424,"d":[1e+300]}'
    assert mxfed.canonical_json(value, room_version="1") == want
    assert canonicaljson.encode_canonical_json(value) == want
    ev = {"type": "m.x", "content": value}
    assert mxfed.content_hash(ev, "1") == mxfed.content_hash({"type": "m.x", "content": plain}, "1")
    signed = mxfed.hash_and_sign_event(ev, "3", "domain", KEY)
    assert signed == mxfed.hash_and_sign_event({"type": "m.x", "content": plain}, "3", "domain", KEY)
    assert signed["content"] == plain


def test_a_mapping_whose_items_change_the_dict_being_read() -> None:
    from collections.abc import Mapping

    outer: Dict[str, Any] = {}

    class Sneaky(Mapping):  # type: ignore[type-arg]
        def __getitem__(self, k: str) -> int:
            return {"x": 1}[k]

        def __iter__(self) -> Any:
            outer["zz"] = 1
            return iter(["x"])

        def __len__(self) -> int:
            return 1

    outer.update(a=Sneaky(), b=2)
    assert mxfed.canonical_json(outer) == b'{"a":{"x":1},"b":2}'

"""Differential tests: mxfed.compat.{canonicaljson,signedjson} against the real canonicaljson 2.0.0
and signedjson 1.1.4 on generated inputs, including everything the Matrix spec forbids but the
Python libraries accept (floats, big integers, non-string keys, tuples, subclasses, lone
surrogates, unknown types). Same bytes or the same exception (type and message); sign_json
leaves the argument in the same state (same keys in the same order) and returns it."""

import copy
import math
import re
from typing import Any, Callable, Tuple

import canonicaljson as real_cj
import signedjson.key as real_key
import signedjson.sign as real_sign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxfed.compat.canonicaljson as cj
import mxfed.compat.signedjson.key as our_key
import mxfed.compat.signedjson.sign as our_sign

SEED = real_key.decode_signing_key_base64("ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")


class Stranger:
    """A type neither library knows how to encode."""


class MyDict(dict):  # type: ignore[type-arg]
    pass


class MyStr(str):
    pass


class MyInt(int):
    pass


texts = st.one_of(
    st.text(max_size=12),
    # Surrogates, controls and other traps, sometimes.
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Co", "Lo", "So"]), max_size=6),
    st.sampled_from(["", "signatures", "unsigned", "a", "é", "\u2028", "\x00", "\U0001f600", "\uffff"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.integers(),  # beyond canonical range too: Python's libraries write all digits
    st.sampled_from([2**53, -(2**53), 10**30, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e16, 1e-5, 100.0, math.inf, math.nan]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
odd_scalars = st.one_of(
    st.builds(MyStr, texts), st.builds(MyInt, st.integers()), st.just(Stranger())
)
keys = st.one_of(texts, texts, texts, st.integers(), st.booleans(), st.none(), st.floats())


def containers(children: Any) -> Any:
    return st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(texts, children, max_size=6),
        st.dictionaries(keys, children, max_size=4),
        st.builds(MyDict, st.dictionaries(texts, children, max_size=3)),
    )


plain = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=10)),
                     lambda c: st.one_of(st.lists(c, max_size=5), st.dictionaries(st.text(max_size=8), c, max_size=6)),
                     max_leaves=30)
anything = st.recursive(st.one_of(scalars, scalars, odd_scalars), containers, max_leaves=25)
objects = st.dictionaries(texts, anything, max_size=6)
plain_objects = st.dictionaries(st.text(max_size=8), plain, max_size=8)


def outcome(f: Callable[..., Any], *args: Any) -> Tuple[str, Any]:
    try:
        return ("ok", f(*args))
    except Exception as e:  # the comparison is the point
        return ("err", (type(e), str(e)))


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(anything)
def test_encode_canonical_json(value: Any) -> None:
    assert outcome(cj.encode_canonical_json, value) == outcome(real_cj.encode_canonical_json, value)


@settings(max_examples=1000)
@given(plain)
def test_encode_canonical_json_plain(value: Any) -> None:
    """The Rust fast path's territory: exact types, in-range integers."""
    assert cj.encode_canonical_json(value) == real_cj.encode_canonical_json(value)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(anything)
def test_iterencode_and_pretty(value: Any) -> None:
    join = lambda it: b"".join(it)  # noqa: E731
    assert outcome(lambda v: join(cj.iterencode_canonical_json(v)), value) == outcome(
        lambda v: join(real_cj.iterencode_canonical_json(v)), value
    )
    assert outcome(cj.encode_pretty_printed_json, value) == outcome(real_cj.encode_pretty_printed_json, value)
    assert outcome(lambda v: join(cj.iterencode_pretty_printed_json(v)), value) == outcome(
        lambda v: join(real_cj.iterencode_pretty_printed_json(v)), value
    )


def test_cycles_and_depth() -> None:
    d: Any = {}
    d["d"] = d
    assert outcome(cj.encode_canonical_json, d) == outcome(real_cj.encode_canonical_json, d)
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    assert cj.encode_canonical_json(deep) == real_cj.encode_canonical_json(deep)


def _sign(sign_json: Callable[..., Any], obj: Any) -> Tuple[Any, Any, Any]:
    """(outcome, the argument afterwards with its key order, whether the result is the argument)"""
    arg = copy.deepcopy(obj)
    res = outcome(sign_json, arg, "domain", SEED)
    same = res[0] == "ok" and res[1] is arg
    return res, (list(arg.items()) if isinstance(arg, dict) else arg), same


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(objects, st.sampled_from([None, {}, {"other": {"ed25519:x": "abc"}}, {"domain": {"ed25519:0": "x"}}, [], "str"]),
       st.sampled_from([None, {}, {"age": 1}, [1]]))
def test_sign_json(obj: Any, signatures: Any, unsigned: Any) -> None:
    if signatures is not None:
        obj["signatures"] = signatures
    if unsigned is not None:
        obj["unsigned"] = unsigned
    ours, real = _sign(our_sign.sign_json, obj), _sign(real_sign.sign_json, obj)
    # repr: NaN != NaN but prints the same; deep copies of Stranger differ only by address.
    assert re.sub(" at 0x[0-9a-f]+", "", repr(ours)) == re.sub(" at 0x[0-9a-f]+", "", repr(real))


@settings(max_examples=700)
@given(plain_objects, st.integers(0, 6))
def test_verify_signed_json(obj: Any, tamper: int) -> None:
    signed = real_sign.sign_json(copy.deepcopy(obj), "domain", SEED)
    vk = real_key.get_verify_key(SEED)
    if tamper == 1:
        signed["extra"] = 1
    elif tamper == 2:
        signed["signatures"]["domain"]["ed25519:1"] = "A" * 86
    elif tamper == 3:
        signed["signatures"]["domain"]["ed25519:1"] = "AAAA"
    elif tamper == 4:
        signed["signatures"]["domain"]["ed25519:1"] = "not base64!"
    elif tamper == 5:
        del signed["signatures"]["domain"]
    elif tamper == 6:
        signed["unsigned"] = {"ignored": True}
    ours = outcome(our_sign.verify_signed_json, copy.deepcopy(signed), "domain", vk)
    real = outcome(real_sign.verify_signed_json, copy.deepcopy(signed), "domain", vk)
    # The exception classes differ by module (ours vs theirs) but not by name or message.
    norm = lambda o: (o[0], (o[1][0].__name__, o[1][1]) if o[0] == "err" else o[1])  # noqa: E731
    assert norm(ours) == norm(real)
    if tamper in (0, 6):
        assert ours == ("ok", None)


@settings(max_examples=200)
@given(objects)
def test_verify_odd_objects(obj: Any) -> None:
    """Objects only Python's json can encode (floats, big ints, ...) still verify, or fail alike."""
    signed = outcome(real_sign.sign_json, copy.deepcopy(obj), "domain", SEED)
    if signed[0] != "ok":
        return
    vk = real_key.get_verify_key(SEED)
    norm = lambda o: (o[0], (o[1][0].__name__, o[1][1]) if o[0] == "err" else o[1])  # noqa: E731
    assert norm(outcome(our_sign.verify_signed_json, signed[1], "domain", vk)) == norm(
        outcome(real_sign.verify_signed_json, signed[1], "domain", vk)
    )


@settings(max_examples=200)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=8))
def test_keys_round_trip(version: str) -> None:
    k = our_key.generate_signing_key(version)
    b64 = our_key.encode_signing_key_base64(k)
    theirs = real_key.decode_signing_key_base64("ed25519", version, b64)
    assert real_key.encode_verify_key_base64(real_key.get_verify_key(theirs)) == our_key.encode_verify_key_base64(our_key.get_verify_key(k))
    assert (k.alg, k.version) == (theirs.alg, theirs.version)
    assert type(k) is type(theirs)
    vk = our_key.decode_verify_key_base64("ed25519", version, our_key.encode_verify_key_base64(our_key.get_verify_key(k)))
    assert (vk.alg, vk.version) == ("ed25519", version)
    assert our_key.is_signing_algorithm_supported("ed25519:" + version)
    assert outcome(our_key.decode_verify_key_bytes, "x:" + version, b"") == outcome(real_key.decode_verify_key_bytes, "x:" + version, b"")


def test_preserialisation_callback_matches() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    cj.register_preserialisation_callback(Point, lambda p: {"x": p.x})
    real_cj.register_preserialisation_callback(Point, lambda p: {"x": p.x})
    value = {"p": [Point(1), Point(2)], "q": 1}
    assert cj.encode_canonical_json(value) == real_cj.encode_canonical_json(value) == b'{"p":[{"x":1},{"x":2}],"q":1}'
    assert outcome(cj.register_preserialisation_callback, object, str) == outcome(real_cj.register_preserialisation_callback, object, str)


def test_public_names_match() -> None:
    import signedjson.types as real_types

    import mxfed.compat.signedjson.types as our_types

    def public(m: Any) -> set:  # type: ignore[type-arg]
        return {n for n in dir(m) if not n.startswith("_")}

    assert public(real_cj) <= public(cj) | {"functools", "json", "Callable", "Generator", "Type", "TypeVar", "T"}
    assert public(real_key) <= public(our_key)
    assert public(real_sign) - {"Any", "Dict", "Iterable", "List"} <= public(our_sign)
    assert {"BaseKey", "SigningKey", "VerifyKey", "VerifyKeyWithExpiry"} <= public(our_types) & public(real_types)

"""canonicaljson 2.0.0, on mxfed's Rust core.

Same public names, signatures and behaviour as ``canonicaljson`` 2.0.0: the canonical encoder
runs in Rust for plain JSON data (``dict`` with ``str`` keys, ``list``, ``tuple``, ``str``,
``int`` within +/-(2**53-1), ``bool``, ``None``); anything else (floats, big integers, non-string
keys, subclasses, types with a preserialisation callback) is encoded by Python's ``json`` with
exactly canonicaljson's settings, so the bytes and the exceptions are canonicaljson's own.
"""

import functools
import json
from typing import Callable, Generator, Type, TypeVar

from mxfed._core import _compat_encode

__version__ = "2.0.0"

__all__ = [
    "encode_canonical_json",
    "encode_pretty_printed_json",
    "iterencode_canonical_json",
    "iterencode_pretty_printed_json",
    "register_preserialisation_callback",
]


@functools.singledispatch
def _preprocess_for_serialisation(obj: object) -> object:
    """Called by ``json`` only for types it does not know: no callback registered."""
    raise TypeError(
        "Object of type %s is not JSON serializable" % obj.__class__.__name__
    )


T = TypeVar("T")


def register_preserialisation_callback(
    data_type: Type[T], callback: Callable[[T], object]
) -> None:
    """Register a ``callback`` to turn ``data_type`` objects into something ``json`` encodes.

    The most recent registration for a type wins. Registering ``object`` is a ``ValueError``.
    """
    if data_type is object:
        raise ValueError("Cannot register callback for the `object` type")
    _preprocess_for_serialisation.register(data_type, callback)


# The fallback encoders: canonicaljson's own settings.
_canonical_encoder = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    sort_keys=True,
    default=_preprocess_for_serialisation,
)
_pretty_encoder = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    indent=4,
    sort_keys=True,
    default=_preprocess_for_serialisation,
)


def _python_encode(data: object) -> bytes:
    return _canonical_encoder.encode(data).encode("utf-8")


def encode_canonical_json(data: object) -> bytes:
    """Encodes ``data`` as UTF-8 canonical JSON: shortest form, keys sorted by code point."""
    out = _compat_encode(data)
    if out is None:
        return _python_encode(data)
    return out


def iterencode_canonical_json(data: object) -> Generator[bytes, None, None]:
    """Yields the canonical JSON of ``data``; the chunks concatenate to
    :func:`encode_canonical_json`'s bytes. (The Rust encoder yields one chunk.)"""
    out = _compat_encode(data)
    if out is None:
        for chunk in _canonical_encoder.iterencode(data):
            yield chunk.encode("utf-8")
    else:
        yield out


def encode_pretty_printed_json(data: object) -> bytes:
    """Encodes ``data`` as UTF-8 human-readable JSON (4-space indent, sorted keys)."""
    return _pretty_encoder.encode(data).encode("utf-8")


def iterencode_pretty_printed_json(data: object) -> Generator[bytes, None, None]:
    """Yields the human-readable JSON of ``data`` in chunks."""
    for chunk in _pretty_encoder.iterencode(data):
        yield chunk.encode("utf-8")

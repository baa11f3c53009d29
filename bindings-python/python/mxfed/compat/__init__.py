"""Drop-in replacements for Synapse's JSON libraries, on mxfed's Rust core.

- :mod:`mxfed.compat.canonicaljson`: canonicaljson 2.0.0's public API;
- :mod:`mxfed.compat.signedjson`: signedjson 1.1.4's (modules ``key``, ``sign``, ``types``).

Switching is one line::

    import mxfed.compat.signedjson as signedjson
    import mxfed.compat.canonicaljson as canonicaljson

or, for a program whose libraries import ``signedjson`` and ``canonicaljson`` themselves (Synapse,
say), :func:`install` at start-up, before anything imports the originals.

Names, signatures, return values, in-place mutation and exceptions are those of the originals;
their own test suites run unmodified against these modules. Canonical encoding, signing and
verifying go through the Rust core. Where the originals are laxer than the Matrix spec (floats,
integers beyond 2**53, non-string keys, types handled by a preserialisation callback) these
modules are exactly as lax: such values are encoded by Python's ``json`` with canonicaljson's
settings, byte for byte what canonicaljson writes. The strict API is :mod:`mxfed` itself.

Known differences, all deliberate and documented in ``bindings-python/README.md``:
``iterencode_canonical_json`` yields the whole encoding as one chunk (concatenation is
identical); signatures are checked with the core's strict ed25519 verification, which rejects the
same small-order and non-canonical signatures libsodium does.
"""

import sys as _sys

#: The module names :func:`install` takes over, each with the compat module it is given.
_MODULES = (
    ("canonicaljson", "mxfed.compat.canonicaljson"),
    ("signedjson", "mxfed.compat.signedjson"),
    ("signedjson.key", "mxfed.compat.signedjson.key"),
    ("signedjson.sign", "mxfed.compat.signedjson.sign"),
    ("signedjson.types", "mxfed.compat.signedjson.types"),
)


def install() -> None:
    """Makes ``import canonicaljson`` and ``import signedjson`` (and its ``key``, ``sign`` and
    ``types``) give these modules, everywhere in the process, so that every library shares one
    implementation: one preserialisation callback registry, one ``SignatureVerifyException``
    class. Call it once at start-up; calling it again does nothing.

    Raises:
        RuntimeError: if the original ``canonicaljson`` or ``signedjson`` was imported already:
            the modules that imported it would keep it, and a program would then mix the two
            (callbacks registered on one, exceptions raised by the other).
    """
    import importlib

    already = [
        name
        for name, ours in _MODULES
        if name in _sys.modules and getattr(_sys.modules[name], "__name__", None) != ours
    ]
    if already:
        raise RuntimeError(
            "mxfed.compat.install() must run before %s is imported" % ", ".join(already)
        )
    for name, ours in _MODULES:
        _sys.modules[name] = importlib.import_module(ours)


"""Drop-in replacements for Synapse's JSON libraries, on mxfed's Rust core.

- :mod:`mxfed.compat.canonicaljson`: canonicaljson 2.0.0's public API;
- :mod:`mxfed.compat.signedjson`: signedjson 1.1.4's (modules ``key``, ``sign``, ``types``).

Switching is one line::

    import mxfed.compat.signedjson as signedjson
    import mxfed.compat.canonicaljson as canonicaljson

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

"""signedjson 1.1.4, on mxfed's Rust core: ``import mxfed.compat.signedjson as signedjson``.

The submodules :mod:`~mxfed.compat.signedjson.key`, :mod:`~mxfed.compat.signedjson.sign` and
:mod:`~mxfed.compat.signedjson.types` have signedjson's public names, signatures and behaviour.
Keys are real PyNaCl objects with ``.alg`` and ``.version`` attributes, as signedjson's are;
signing and verifying with them runs in Rust.
"""

from mxfed.compat.signedjson import key, sign, types

__version__ = "1.1.4"

__all__ = ["key", "sign", "types"]

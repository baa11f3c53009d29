"""signedjson.key: ed25519 signing and verify keys as PyNaCl objects with ``alg`` and ``version``.

The same functions, signatures and exceptions as signedjson 1.1.4. Keys are PyNaCl's own
``nacl.signing.SigningKey``/``VerifyKey`` objects, so code that passes them to PyNaCl keeps
working; :mod:`mxfed.compat.signedjson.sign` signs and verifies with them in Rust.
"""

from typing import Iterable, List, TextIO

import nacl.signing

from mxfed.compat._base64 import decode_base64, encode_base64
from mxfed.compat.signedjson.types import SigningKey, VerifyKey, VerifyKeyWithExpiry

NACL_ED25519 = "ed25519"
SUPPORTED_ALGORITHMS = [NACL_ED25519]

__all__ = [
    "NACL_ED25519",
    "SUPPORTED_ALGORITHMS",
    "decode_signing_key_base64",
    "decode_verify_key_base64",
    "decode_verify_key_bytes",
    "encode_signing_key_base64",
    "encode_verify_key_base64",
    "generate_signing_key",
    "get_verify_key",
    "is_signing_algorithm_supported",
    "read_old_signing_keys",
    "read_signing_keys",
    "write_signing_keys",
]


def generate_signing_key(version: str) -> SigningKey:
    """A new random signing key with the given version."""
    key: SigningKey = nacl.signing.SigningKey.generate()  # type: ignore[assignment]
    key.version = version
    key.alg = NACL_ED25519
    return key


def get_verify_key(signing_key: SigningKey) -> VerifyKey:
    """The verify key of a signing key (carrying the same ``alg`` and ``version``)."""
    verify_key: VerifyKey = signing_key.verify_key  # type: ignore[assignment]
    verify_key.version = signing_key.version
    verify_key.alg = signing_key.alg
    return verify_key


def decode_signing_key_base64(algorithm: str, version: str, key_base64: str) -> SigningKey:
    """A signing key from its base64 seed; ``ValueError`` for an unsupported algorithm."""
    if algorithm == NACL_ED25519:
        key_bytes = decode_base64(key_base64)
        key: SigningKey = nacl.signing.SigningKey(key_bytes)  # type: ignore[assignment]
        key.version = version
        key.alg = NACL_ED25519
        return key
    raise ValueError("Unsupported algorithm %s" % (algorithm,))


def encode_signing_key_base64(key: SigningKey) -> str:
    """The unpadded base64 seed of a signing key."""
    return encode_base64(key.encode())


def encode_verify_key_base64(key: VerifyKey) -> str:
    """The unpadded base64 of a verify key."""
    return encode_base64(key.encode())


def is_signing_algorithm_supported(key_id: str) -> bool:
    """Whether the algorithm of ``key_id`` (``alg:version``) is supported (ed25519 only)."""
    return key_id.startswith(NACL_ED25519 + ":")


def decode_verify_key_base64(algorithm: str, version: str, key_base64: str) -> VerifyKey:
    """A verify key from its base64."""
    key_id = "%s:%s" % (algorithm, version)
    key_bytes = decode_base64(key_base64)
    return decode_verify_key_bytes(key_id, key_bytes)


def decode_verify_key_bytes(key_id: str, key_bytes: bytes) -> VerifyKey:
    """A verify key from its raw bytes; ``ValueError`` for an unsupported algorithm."""
    if key_id.startswith(NACL_ED25519 + ":"):
        version = key_id[len(NACL_ED25519) + 1 :]
        key: VerifyKey = nacl.signing.VerifyKey(key_bytes)  # type: ignore[assignment]
        key.version = version
        key.alg = NACL_ED25519
        return key
    raise ValueError("Unsupported algorithm %r" % (key_id,))


def read_signing_keys(stream: Iterable[str]) -> List[SigningKey]:
    """Signing keys from the lines of a ``signing.key`` file (``alg version base64``)."""
    keys = []
    for line in stream:
        algorithm, version, key_base64 = line.split()
        keys.append(decode_signing_key_base64(algorithm, version, key_base64))
    return keys


def read_old_signing_keys(stream: Iterable[str]) -> List[VerifyKeyWithExpiry]:
    """Old verify keys from lines of ``alg version expired_ts base64``."""
    keys = []
    for line in stream:
        algorithm, version, expired, key_base64 = line.split()
        key: VerifyKeyWithExpiry = decode_verify_key_base64(
            algorithm, version, key_base64
        )  # type: ignore[assignment]
        key.expired = int(expired)
        keys.append(key)
    return keys


def write_signing_keys(stream: TextIO, keys: Iterable[SigningKey]) -> None:
    """Writes signing keys to a stream in ``signing.key`` format."""
    for key in keys:
        key_base64 = encode_signing_key_base64(key)
        stream.write("%s %s %s\n" % (key.alg, key.version, key_base64))

"""signedjson.types: the protocols signedjson's keys satisfy (PyNaCl keys with ``alg``/``version``)."""

import nacl.signing

try:
    from typing import Protocol
except ImportError:  # pragma: no cover (Python < 3.8)
    from typing_extensions import Protocol  # type: ignore[assignment]


class BaseKey(Protocol):
    """Common base type for VerifyKey and SigningKey."""

    version = ""  # type: str
    alg = ""  # type: str

    def __bytes__(self) -> bytes: ...

    def encode(self) -> bytes: ...


class VerifyKey(BaseKey):
    """The public part of a key pair, for use with verify_signed_json."""

    def verify(self, message: bytes, signature: bytes) -> bytes: ...  # type: ignore[empty-body]


class VerifyKeyWithExpiry(VerifyKey):
    expired: int


class SigningKey(BaseKey):
    """The private part of a key pair, for use with sign_json."""

    def sign(self, message: bytes) -> nacl.signing.SignedMessage: ...  # type: ignore[empty-body]

    @property
    def verify_key(self) -> nacl.signing.VerifyKey: ...  # type: ignore[empty-body]

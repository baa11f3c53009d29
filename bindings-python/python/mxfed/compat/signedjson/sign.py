"""signedjson.sign: sign and verify JSON objects, as signedjson 1.1.4 does, in Rust.

``sign_json`` mutates and returns its argument, exactly as signedjson's does (``signatures`` and
``unsigned`` are popped and put back, so they end up last in the dict). With PyNaCl keys (what
:mod:`mxfed.compat.signedjson.key` makes) the canonical encoding and the ed25519 signature or
check run in mxfed's Rust core; any other key object (a mock, a hardware key) is called through
its own ``sign``/``verify`` methods, as signedjson calls them.
"""

import logging
from typing import Any, Dict, Iterable, List

import nacl.exceptions
import nacl.signing

from mxfed._core import SigningKey as _CoreSigningKey
from mxfed._core import _VerifyKey
from mxfed.compat._base64 import decode_base64, encode_base64
from mxfed.compat.canonicaljson import encode_canonical_json
from mxfed.compat.signedjson.key import SUPPORTED_ALGORITHMS
from mxfed.compat.signedjson.types import SigningKey, VerifyKey

logger = logging.getLogger(__name__)

JsonDict = Dict[str, Any]

__all__ = [
    "JsonDict",
    "SignatureVerifyException",
    "sign_json",
    "signature_ids",
    "verify_signed_json",
]


# Rust keys for PyNaCl keys, by seed/public key bytes (building one costs a scalar
# multiplication; signing with a cached one does not). Bounded: cleared when full.
_SIGNING_KEYS: Dict[bytes, _CoreSigningKey] = {}
_VERIFY_KEYS: Dict[bytes, _VerifyKey] = {}
_CACHE_SIZE = 4096
# Exactly PyNaCl's classes (a subclass may override sign/verify: it is called as signedjson would).
_NACL_SIGNING_KEY: type = nacl.signing.SigningKey
_NACL_VERIFY_KEY: type = nacl.signing.VerifyKey


def _core_signing_key(seed: bytes) -> _CoreSigningKey:
    key = _SIGNING_KEYS.get(seed)
    if key is None:
        if len(_SIGNING_KEYS) >= _CACHE_SIZE:
            _SIGNING_KEYS.clear()
        # The key ID is built in Python from the PyNaCl key's alg/version; "0" is a placeholder.
        key = _SIGNING_KEYS[seed] = _CoreSigningKey.from_seed("0", seed)
    return key


def _core_verify_key(public: bytes) -> _VerifyKey:
    key = _VERIFY_KEYS.get(public)
    if key is None:
        if len(_VERIFY_KEYS) >= _CACHE_SIZE:
            _VERIFY_KEYS.clear()
        key = _VERIFY_KEYS[public] = _VerifyKey(public)
    return key


def sign_json(json_object: JsonDict, signature_name: str, signing_key: SigningKey) -> JsonDict:
    """Sign the JSON object. Stores the signature in ``json_object["signatures"]``.

    Returns the modified, signed JSON object (the same dict).
    """
    signatures = json_object.pop("signatures", {})
    unsigned = json_object.pop("unsigned", None)

    if type(signing_key) is _NACL_SIGNING_KEY:
        core_key = _core_signing_key(bytes(signing_key))
        signature = core_key._sign_compat(json_object)
        if signature is None:
            signature = core_key.sign(encode_canonical_json(json_object))
    else:
        signature = signing_key.sign(encode_canonical_json(json_object)).signature
    signature_base64 = encode_base64(signature)

    key_id = "%s:%s" % (signing_key.alg, signing_key.version)
    signatures.setdefault(signature_name, {})[key_id] = signature_base64

    json_object["signatures"] = signatures
    if unsigned is not None:
        json_object["unsigned"] = unsigned

    return json_object


def signature_ids(
    json_object: JsonDict,
    signature_name: str,
    supported_algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
) -> List[str]:
    """The key IDs ``signature_name`` signed ``json_object`` with, for supported algorithms."""
    key_ids = json_object.get("signatures", {}).get(signature_name, {}).keys()
    return list(
        key_id for key_id in key_ids if key_id.split(":")[0] in supported_algorithms
    )


class SignatureVerifyException(Exception):
    """A signature could not be verified"""


def _raise_bad_signature(message: bytes, signature: bytes) -> bytes:
    raise nacl.exceptions.BadSignatureError("Signature was forged or corrupt")


def _check(verify_key: VerifyKey, json_object: JsonDict, signature: bytes) -> bool:
    """The Rust fast path for PyNaCl keys: whether the signature verifies."""
    try:
        core_key = _core_verify_key(bytes(verify_key))
    except ValueError:
        # 32 bytes that are not a point of the curve: PyNaCl takes them as a key and then fails
        # to verify anything with it, so signedjson reports a bad signature.
        return False
    ok = core_key._verify_compat(json_object, signature)
    if ok is None:
        ok = core_key.verify(_signed_bytes(json_object), signature)
    return ok


def _signed_bytes(json_object: JsonDict) -> bytes:
    json_object_copy = dict(json_object)
    del json_object_copy["signatures"]
    json_object_copy.pop("unsigned", None)
    return encode_canonical_json(json_object_copy)


def verify_signed_json(json_object: JsonDict, signature_name: str, verify_key: VerifyKey) -> None:
    """Check a signature on a signed JSON object.

    Raises:
        SignatureVerifyException: If the signature isn't valid
    """
    try:
        signatures = json_object["signatures"]
    except KeyError:
        raise SignatureVerifyException("No signatures on this object")

    key_id = "%s:%s" % (verify_key.alg, verify_key.version)

    try:
        signature_b64 = signatures[signature_name][key_id]
    except KeyError:
        raise SignatureVerifyException(
            "Missing signature for %s, %s" % (signature_name, key_id)
        )

    try:
        signature = decode_base64(signature_b64)
    except Exception:
        raise SignatureVerifyException(
            "Invalid signature base64 for %s, %s" % (signature_name, key_id)
        )

    if type(verify_key) is _NACL_VERIFY_KEY and len(signature) == 64:
        if _check(verify_key, json_object, signature):
            return
        # What PyNaCl raises for a bad signature, wrapped as signedjson wraps it.
        verify = _raise_bad_signature
    else:
        verify = verify_key.verify
    message = _signed_bytes(json_object)
    try:
        verify(message, signature)
    except Exception as e:
        raise SignatureVerifyException(
            "Unable to verify signature for %s: %s %s"
            % (
                signature_name,
                type(e),
                e,
            )
        )

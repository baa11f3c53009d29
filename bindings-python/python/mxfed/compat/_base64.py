"""Unpadded base64 exactly as ``unpaddedbase64`` 2.1 (which signedjson uses) reads and writes it."""

import base64


def encode_base64(input_bytes: bytes, urlsafe: bool = False) -> str:
    """Unpadded standard (or URL-safe) base64 of ``input_bytes``."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(input_bytes).decode("ascii").rstrip("=")


def decode_base64(input_string: str) -> bytes:
    """Decodes unpadded standard or URL-safe base64 (lenient, as ``base64.b64decode`` is)."""
    data = input_string.encode("ascii")
    padding = b"=" * (3 - ((len(data) + 3) % 4))
    return base64.b64decode(data + padding, altchars=b"-_")

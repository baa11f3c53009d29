"""mxfed: Matrix federation for Python, on mxfed's Rust core.

Every function here is a thin call into the core (``mxfed._core``), the same code the ``mxfed``
command line, the federation server and the WebAssembly build run, so the bytes are the same
everywhere.

Inputs are ``dict``/``list`` values (converted to canonical JSON directly: ``str`` keys only,
integers within +/-(2**53-1), no floats) or, wherever an object is expected, JSON text as
``bytes`` or ``str``. Events of room versions 1-5 may hold floats and big integers, as Synapse
allows there. Outputs are ``dict``s, or ``bytes`` for canonical JSON.

Errors are :class:`MxfedError` (a ``ValueError``) subclasses carrying ``.code``, the core's
stable error code (the same in every host).

Drop-in replacements for ``signedjson`` and ``canonicaljson`` live in :mod:`mxfed.compat`; a
small signed-request client in :mod:`mxfed.client`; ``python -m mxfed`` is a command line.
"""

from mxfed._core import (
    ROOM_VERSIONS,
    CanonicalJsonError,
    DiscoveryError,
    EduError,
    EventError,
    IdentifierError,
    KeyRing,
    MxfedError,
    PduError,
    RestrictedJoinError,
    Room,
    RoomVersionError,
    ServerKeysError,
    SignatureError,
    SigningKey,
    SigningKeyError,
    TransactionError,
    XMatrixError,
    canonical_json,
    check_pdus,
    content_hash,
    decode_base64,
    discovery_plan,
    encode_base64,
    event_id,
    hash_and_sign_event,
    is_canonical_json,
    membership_from_template,
    parse_transaction,
    pick_srv,
    redact,
    reference_hash,
    replay,
    room_id,
    server_acl_allows,
    server_keys,
    server_may_see,
    sign_json,
    sign_request,
    srv_targets,
    verify_json,
    verify_request,
    well_known_lifetime,
)

__all__ = [
    "ROOM_VERSIONS",
    "CanonicalJsonError",
    "DiscoveryError",
    "EduError",
    "EventError",
    "IdentifierError",
    "KeyRing",
    "MxfedError",
    "PduError",
    "RestrictedJoinError",
    "Room",
    "RoomVersionError",
    "ServerKeysError",
    "SignatureError",
    "SigningKey",
    "SigningKeyError",
    "TransactionError",
    "XMatrixError",
    "canonical_json",
    "check_pdus",
    "content_hash",
    "decode_base64",
    "discovery_plan",
    "encode_base64",
    "event_id",
    "hash_and_sign_event",
    "is_canonical_json",
    "membership_from_template",
    "parse_transaction",
    "pick_srv",
    "redact",
    "reference_hash",
    "replay",
    "room_id",
    "server_acl_allows",
    "server_keys",
    "server_may_see",
    "sign_json",
    "sign_request",
    "srv_targets",
    "verify_json",
    "verify_request",
    "well_known_lifetime",
]

"""Writes key_responses.json: `/_matrix/key/v2/server` responses that are accepted or refused,
each with a PDU signed by the spec's test key (`derived_v10_create` of spec_vectors.json).

The responses are built and signed with signedjson, not mxfed, and whether each is accepted
comes from Synapse itself: every response goes through `BaseV2KeyFetcher.process_v2_response`
(what Synapse runs on a direct answer and on each notary entry), with a store that only
records. The generator fails if Synapse disagrees with a row's `accepted`. The refusals'
codes are mxfed's (Synapse raises a generic `KeyLookupError` or a signature error there).

    .venv/bin/python tests/vectors/gen_key_responses.py   # needs matrix-synapse
"""

import asyncio
import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from canonicaljson import encode_canonical_json
from signedjson.key import decode_signing_key_base64, encode_verify_key_base64, get_verify_key
from signedjson.sign import sign_json
from synapse.crypto.keyring import BaseV2KeyFetcher

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
KEY = decode_signing_key_base64("ed25519", "1", SEED)
# Two more keys of the server (seeds of 32 bytes 0x02 and 0x03, base64).
KEY2 = decode_signing_key_base64("ed25519", "2", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI")
KEY0 = decode_signing_key_base64("ed25519", "0", "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM")
HERE = Path(__file__).parent
OUT = HERE / "key_responses.json"
SERVER = "domain"


def vk(key: Any) -> Dict[str, str]:
    return {"key": encode_verify_key_base64(get_verify_key(key))}


def response(
    verify_keys: Dict[str, Any],
    signers: List[Any],
    old_verify_keys: Optional[Dict[str, Any]] = None,
    server: str = SERVER,
) -> Dict[str, Any]:
    r: Dict[str, Any] = {
        "server_name": SERVER,
        "valid_until_ts": 1652262000000,
        "verify_keys": verify_keys,
        "old_verify_keys": old_verify_keys or {},
    }
    for k in signers:
        r = sign_json(r, server, k)
    return r


def broken(r: Dict[str, Any], key_id: str) -> Dict[str, Any]:
    """`r` with `key_id`'s signature replaced by 64 zero bytes."""
    r = copy.deepcopy(r)
    r.setdefault("signatures", {}).setdefault(SERVER, {})[key_id] = "A" * 86
    return r


ROWS: List[Dict[str, Any]] = [
    {"name": "one key that signed", "response": response({"ed25519:1": vk(KEY)}, [KEY]), "accepted": True},
    {
        "name": "a second ed25519 key that did not sign (published before it signs)",
        "response": response({"ed25519:1": vk(KEY), "ed25519:2": vk(KEY2)}, [KEY]),
        "accepted": True,
    },
    {
        "name": "an extra curve25519 entry: skipped",
        "response": response({"curve25519:x": {"key": "AAAA"}, "ed25519:1": vk(KEY)}, [KEY]),
        "accepted": True,
    },
    {
        "name": "an entry of an unknown algorithm that is not even an object: skipped unread",
        "response": response({"ed25519:1": vk(KEY), "org.example.alg:y": "not an object"}, [KEY]),
        "accepted": True,
    },
    {
        "name": "an old_verify_keys entry of another algorithm: skipped unread",
        "response": response({"ed25519:1": vk(KEY)}, [KEY], {"curve25519:z": {"no": "key"}}),
        "accepted": True,
    },
    {
        "name": "signed only by the second listed key (the PDU's key is listed)",
        "response": response({"ed25519:1": vk(KEY), "ed25519:2": vk(KEY2)}, [KEY2]),
        "accepted": True,
    },
    {
        "name": "a signature by a key not listed is ignored, even a broken one",
        "response": broken(response({"ed25519:1": vk(KEY)}, [KEY]), "ed25519:0"),
        "accepted": True,
    },
    {
        "name": "the first listed signature (in key ID order) decides: valid, then broken",
        "response": broken(response({"ed25519:1": vk(KEY), "ed25519:2": vk(KEY2)}, [KEY]), "ed25519:2"),
        "accepted": True,
    },
    {
        "name": "the first listed signature (in key ID order) decides: broken, then valid",
        "response": broken(response({"ed25519:1": vk(KEY), "ed25519:2": vk(KEY2)}, [KEY2]), "ed25519:1"),
        "accepted": False,
        "error": "keys_not_self_signed",
    },
    {
        "name": "signed by none of its keys: by a key it does not list",
        "response": response({"ed25519:1": vk(KEY)}, [KEY0]),
        "accepted": False,
        "error": "keys_not_self_signed",
    },
    {
        "name": "signed by none of its keys: not signed at all",
        "response": {k: v for k, v in response({"ed25519:1": vk(KEY)}, []).items()} | {"signatures": {}},
        "accepted": False,
        "error": "keys_not_self_signed",
    },
    {
        "name": "signed with its key, but as another server",
        "response": response({"ed25519:1": vk(KEY)}, [KEY], server="other.example"),
        "accepted": False,
        "error": "keys_not_self_signed",
    },
    {
        "name": "its listed key's signature is broken",
        "response": broken(response({"ed25519:1": vk(KEY)}, [KEY]), "ed25519:1"),
        "accepted": False,
        "error": "keys_not_self_signed",
    },
    {
        "name": "only a curve25519 key: nothing to verify with",
        "response": response({"curve25519:x": {"key": "AAAA"}}, [KEY]),
        "accepted": False,
        "error": "keys_bad_field",
    },
]


class _Store:
    async def store_server_keys_response(self, **_: Any) -> None:
        pass


class _Fetcher(BaseV2KeyFetcher):
    """Only `process_v2_response`, with a store that records nothing."""

    def __init__(self) -> None:
        self.store = _Store()

    async def _fetch_keys(self, keys_to_fetch: Any) -> Any:
        raise NotImplementedError


def synapse_accepts(r: Dict[str, Any]) -> bool:
    fetcher = _Fetcher()
    # As it arrives from a server answering canonical JSON (Synapse does): keys sorted, so
    # Synapse meets the signatures in key ID order.
    wire = json.loads(encode_canonical_json(r))
    try:
        asyncio.run(fetcher.process_v2_response(SERVER, wire, 0))
        return True
    except Exception:
        return False


def main() -> None:
    spec = json.loads((HERE / "spec_vectors.json").read_text())
    pdu = next(v for v in spec["derived"] if v["name"] == "derived_v10_create")["expected"]["signed_event"]
    cases = []
    for row in ROWS:
        got = synapse_accepts(row["response"])
        assert got == row["accepted"], (row["name"], got)
        case = {"name": row["name"], "response": row["response"]}
        if row["accepted"]:
            case["expected"] = "accepted"
        else:
            case["error"] = row["error"]
        cases.append(case)
    out = {
        "description": (
            "Key responses (GET /_matrix/key/v2/server, or one notary entry) read as Synapse "
            "reads them (process_v2_response): entries of algorithms other than ed25519 are "
            "skipped unread, a listed key need not have signed, signatures by keys not listed "
            "are ignored, and the first signature of the server (in key ID order) by a listed "
            "key decides: it must verify (key ID order is the order of a canonical JSON answer, in which Synapse meets them). Each response is used to check `pdu` (room version "
            "10, signed by domain's ed25519:1): `expected` is its verdict, `error` the code "
            "the response is refused with. Written by gen_key_responses.py: signed with "
            "signedjson, accepted or refused by Synapse's own process_v2_response."
        ),
        "room_version": "10",
        "pdu": pdu,
        "cases": cases,
    }
    text = json.dumps(out, indent=1, ensure_ascii=False) + "\n"
    OUT.write_text(text)


if __name__ == "__main__":
    main()

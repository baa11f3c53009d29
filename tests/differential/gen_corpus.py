#!/usr/bin/env python3
"""Generate the differential corpus for mxfed's canonical JSON and JSON signing.

The reference implementations are canonicaljson 2.0.0 and signedjson 1.1.4
(the libraries Synapse uses, whose behaviour the Matrix spec was written
against).  Every main-corpus line pairs an input *text* (serialised in one of
several styles so that mxfed's parser is exercised, not just its encoder) with
the canonical bytes canonicaljson produces for it and, for top-level objects,
the canonical form of the object after signedjson has signed it.

A second, fixed set of lines documents the places where mxfed deliberately
follows the spec rather than Python (floats, out-of-range integers, NaN,
duplicate keys, lone surrogates).  See README.md next to this file.

Only the standard library, canonicaljson, signedjson (and its dependency
PyNaCl) are used, because the project runs this with its own venv's python.

Usage: gen_corpus.py [--count N] [--seed S] --out FILE
"""

import argparse
import copy
import fractions
import json
import os
import random
import sys
import time
from collections import Counter

import canonicaljson
import signedjson.key
import signedjson.sign

MAX_SAFE = 2**53 - 1  # the spec's integer range is [-(2**53)+1, (2**53)-1]
MAX_DEPTH = 100  # mxfed must accept this; 128 is the hard ceiling we stay under

SERVER_NAME = "domain"
# The Matrix spec's appendix test key.  Its last base64 character carries
# non-zero trailing bits ("...XA1" rather than "...XA0"); unpaddedbase64
# ignores them, and with them the spec's published signature for {} is
# reproduced (asserted in main()), so mxfed must accept the same seed.
SIGNING_SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SIG_OF_EMPTY_OBJECT = (
    "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
)

# ---------------------------------------------------------------------------
# Value pools
# ---------------------------------------------------------------------------

C0 = [chr(c) for c in range(0x20)]

# Characters that stress an encoder's escaping and a parser's unescaping.
# Surrogates U+D800..U+DFFF are never produced here: they are not Unicode
# scalar values and cannot appear in valid JSON text as data.
SPECIAL_CHARS = C0 + [
    "\x7f",  # DEL: canonical JSON leaves it raw
    '"', "\\", "/",  # must / need not be escaped; "/" must come out raw
    "\u0080", "\u009f", "\u00a0", "\u00e9", "\u00ff",
    "\u0301", "\u0308", "\u20dd",  # combining marks
    "\u200b", "\u200d", "\u200e", "\u202e",  # zero-width, ZWJ, bidi controls
    "\u2028", "\u2029",  # raw in canonical output, unlike JavaScript escapes
    "\ud7ff", "\ue000",  # either side of the surrogate block
    "\ufdd0", "\ufeff", "\ufffd", "\ufffe", "\uffff",
    "\uff61",  # sorts after U+1F600 in UTF-16, before it by code point
    "\U00010000", "\U0001f600", "\U0001f468", "\U00020000",
    "\U0010fffe", "\U0010ffff",
]

FRAGMENTS = [
    "\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ family
    "\U0001f1ef\U0001f1f5",  # regional-indicator flag
    "\U0001f44d\U0001f3fd",  # skin-tone modifier
    "日本語", "中文字符", "한국어", "עברית", "العربية", "Ελληνικά",
    "e\u0301", "\u00e9", "a\u0308\u0301", "Z\u0324\u0354\u0367\u0311",
    "\U0001d11e",  # musical symbol G clef, a classic astral test character
    "\U00020bb7",  # CJK extension B
    "</script>", "\\u0000", "\\\\", '\\"', "null", "true", "0", "-0",
]

MATRIX_KEYS = [
    "type", "content", "room_id", "sender", "origin", "origin_server_ts",
    "event_id", "state_key", "depth", "prev_events", "auth_events", "hashes",
    "membership", "body", "msgtype", "redacts", "m.relates_to", "rel_type",
    "key", "server_name", "valid_until_ts", "verify_keys", "old_verify_keys",
    "destination", "method", "uri", "pdus", "edus", "user_id", "device_id",
]

# Key sets whose canonical order differs from UTF-16 code unit order (what a
# JavaScript or Java sort would give) or from naive byte/normalised orders.
# Canonical JSON sorts by code point, which equals UTF-8 byte order.
SORT_TRAP_KEY_SETS = [
    ["\uff61", "\U0001f600"],
    ["\ue000", "\U00010000", "\ud7ff"],
    ["\uffff", "\U00010000", "\U0010ffff"],
    ["\ufffd", "\U0001f468", "\uff5e", "\U00020000"],
    ["a", "A", "b", "B", "aa", "a\x00", "", "_", "~", "\x7f"],
    ["\u00e9", "e\u0301", "e", "f", "\u00e8"],
    ["\x00", "\x01", "\x1f", " ", "!"],
    ["10", "9", "1", "01", "-1", "1.0"],
    ["signatures", "unsigned", "Signatures", "signatures ", " unsigned"],
]

BOUNDARY_INTS = [
    0, 1, -1, 2, -2, 9, 10, -9, -10, 99, -99, 127, 128, -128, -129, 255, 256,
    32767, 32768, -32768, 65535, 65536,
    2**31 - 1, 2**31, -(2**31), -(2**31) - 1,
    2**32 - 1, 2**32, -(2**32), -(2**32) + 1, 2**32 + 1,
    10**15, -(10**15), 999999999999999,
    2**53 - 2, 2**53 - 1, -(2**53 - 1), -(2**53 - 2),
]

# Code point ranges for "any scalar value", deliberately skipping surrogates.
CODE_POINT_RANGES = [(0x20, 0x7E), (0xA0, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
CODE_POINT_WEIGHTS = [4, 3, 1, 2]


def rand_char(rng):
    lo, hi = rng.choices(CODE_POINT_RANGES, CODE_POINT_WEIGHTS)[0]
    return chr(rng.randint(lo, hi))


def rand_string(rng, max_len=12):
    n = rng.choice([0, 1, 1, 2, 3, 5, 8, max_len, rng.randint(0, max_len)])
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            parts.append(chr(rng.randint(0x20, 0x7E)))
        elif r < 0.72:
            parts.append(rng.choice(SPECIAL_CHARS))
        elif r < 0.87:
            parts.append(rng.choice(FRAGMENTS))
        else:
            parts.append(rand_char(rng))
    return "".join(parts)


def rand_key(rng):
    r = rng.random()
    if r < 0.45:
        return rng.choice(MATRIX_KEYS)
    if r < 0.5:
        return ""
    if r < 0.55:
        return rng.choice(rng.choice(SORT_TRAP_KEY_SETS))
    return rand_string(rng, 8)


def rand_int(rng):
    r = rng.random()
    if r < 0.45:
        return rng.choice(BOUNDARY_INTS)
    if r < 0.75:
        return rng.randint(-1000, 1000)
    if r < 0.9:
        return rng.randint(-(2**40), 2**40)
    return rng.randint(-MAX_SAFE, MAX_SAFE)


def rand_scalar(rng):
    r = rng.random()
    if r < 0.08:
        return None
    if r < 0.16:
        return rng.random() < 0.5
    if r < 0.5:
        return rand_int(rng)
    return rand_string(rng)


def rand_value(rng, depth_left):
    """A random JSON value of at most `depth_left` container levels."""
    if depth_left <= 0 or rng.random() < 0.55:
        return rand_scalar(rng)
    if rng.random() < 0.5:
        return [rand_value(rng, depth_left - 1) for _ in range(rng.randint(0, 6))]
    return rand_object(rng, depth_left)


def rand_object(rng, depth_left, n_keys=None):
    if n_keys is None:
        n_keys = rng.randint(0, 7)
    obj = {}
    for _ in range(n_keys):
        obj[rand_key(rng)] = rand_value(rng, depth_left - 1)
    return obj


def fake_signature(rng):
    # Shape of an unpadded base64 ed25519 signature; never verified, only kept.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return "".join(rng.choice(alphabet) for _ in range(86))


def nested_signing_decoys(rng, depth_left):
    """Objects named like the top-level fields signing strips.

    Only the *top-level* "signatures" and "unsigned" are removed before
    signing; these must survive into the signed bytes.
    """
    decoy = {}
    if rng.random() < 0.7:
        decoy["signatures"] = {
            rng.choice(["other.example", "domain", ""]): {"ed25519:x": fake_signature(rng)}
        }
    if rng.random() < 0.7:
        decoy["unsigned"] = rand_object(rng, max(depth_left, 1), rng.randint(0, 3))
    if rng.random() < 0.3:
        decoy["signatures"] = rand_scalar(rng)  # not even an object: still kept
    return decoy


# ---------------------------------------------------------------------------
# Document kinds
# ---------------------------------------------------------------------------


def doc_event(rng):
    """Something shaped like a PDU, with decoys and optional signing fields."""
    content = rand_object(rng, 4)
    content.update(nested_signing_decoys(rng, 3))
    doc = {
        "type": rng.choice(["m.room.message", "m.room.member", "m.room.create", rand_string(rng, 6)]),
        "room_id": "!" + rand_string(rng, 10) + ":example.org",
        "sender": "@" + rand_string(rng, 8) + ":example.org",
        "origin_server_ts": rng.randint(0, MAX_SAFE),
        "depth": rng.choice(BOUNDARY_INTS[:12] + [rng.randint(0, 2**31)]),
        "content": content,
        "prev_events": ["$" + rand_string(rng, 10) for _ in range(rng.randint(0, 3))],
        "hashes": {"sha256": rand_string(rng, 43)},
    }
    if rng.random() < 0.3:
        doc["state_key"] = rng.choice(["", rand_string(rng, 6)])
    add_top_level_signing_fields(rng, doc)
    return doc


def add_top_level_signing_fields(rng, doc):
    # signedjson must keep other servers' signatures, keep "unsigned" out of
    # the signed bytes but in the result, and (as the spec's pseudocode does)
    # overwrite a stale signature under our own key id.
    r = rng.random()
    if r < 0.25:
        doc["signatures"] = {"other.example": {"ed25519:abc": fake_signature(rng)}}
    elif r < 0.3:
        doc["signatures"] = {
            SERVER_NAME: {"ed25519:0": fake_signature(rng), "ed25519:1": "stale"},
            "other.example": {"ed25519:abc": fake_signature(rng)},
        }
    if rng.random() < 0.25:
        doc["unsigned"] = rand_object(rng, 3)
        doc["unsigned"].update(nested_signing_decoys(rng, 2))


def make_signable(doc):
    """Drop top-level fields that random keys can produce but signing rejects.

    A top-level "signatures" must be an object of objects (signedjson crashes
    otherwise, and the spec gives it no meaning).  A top-level "unsigned": null
    is silently dropped by signedjson and the spec's pseudocode alike; it is
    covered once by a fixed document rather than scattered at random.
    """
    if isinstance(doc, dict):
        sigs = doc.get("signatures")
        if "signatures" in doc and not (isinstance(sigs, dict) and all(isinstance(v, dict) for v in sigs.values())):
            del doc["signatures"]
        if "unsigned" in doc and doc["unsigned"] is None:
            del doc["unsigned"]
    return doc


def doc_random_object(rng):
    doc = rand_object(rng, rng.randint(1, 7), rng.randint(0, 10))
    if rng.random() < 0.3:
        doc.update(nested_signing_decoys(rng, 3))
    if rng.random() < 0.2:
        add_top_level_signing_fields(rng, doc)
    return doc


def doc_deep(rng):
    """Nest to 90..MAX_DEPTH levels, mixing objects and arrays."""
    target = rng.randint(90, MAX_DEPTH)
    inner = rand_scalar(rng)
    for _ in range(target - 1):  # the top-level object below is the last level
        if rng.random() < 0.5:
            wrapped = [inner]
            if rng.random() < 0.2:
                wrapped.insert(rng.randint(0, 1), rand_scalar(rng))
        else:
            wrapped = {rand_key(rng): inner}
            if rng.random() < 0.2:
                wrapped.setdefault(rand_key(rng), rand_scalar(rng))
        inner = wrapped
    return {"deep": inner}


def doc_wide(rng):
    """Many keys, so that sorting is exercised at scale."""
    n = rng.randint(100, 400)
    doc = {}
    while len(doc) < n:
        key = rand_key(rng)
        if rng.random() < 0.5:
            key += str(rng.randint(0, 10**6))  # random keys alone repeat too often
        doc[key] = rand_scalar(rng)
    return doc


def doc_long_array(rng):
    n = rng.randint(300, 2000)
    make = rng.choice([lambda: rand_int(rng), lambda: rand_string(rng, 4), lambda: rand_scalar(rng),
                       lambda: {"k": rand_int(rng)}])
    return {"items": [make() for _ in range(n)], "n": n}


def doc_ints(rng):
    ints = [rng.choice(BOUNDARY_INTS) for _ in range(rng.randint(5, 40))]
    doc = {"ints": ints}
    for v in rng.sample(BOUNDARY_INTS, 8):
        doc[str(v)] = v
    return doc


def doc_strings(rng):
    """Special characters in both keys and values."""
    doc = {}
    for _ in range(rng.randint(3, 15)):
        doc["".join(rng.choice(SPECIAL_CHARS) for _ in range(rng.randint(0, 3)))] = "".join(
            rng.choice(SPECIAL_CHARS + FRAGMENTS) for _ in range(rng.randint(0, 20))
        )
    return doc


def doc_sort_traps(rng):
    doc = {}
    for key_set in rng.sample(SORT_TRAP_KEY_SETS, rng.randint(1, 4)):
        for k in key_set:
            doc[k] = rand_scalar(rng)
    if rng.random() < 0.5:
        doc = {"nested": doc, rand_key(rng): list(doc)}
    return doc


def doc_top_array(rng):
    return [rand_value(rng, 4) for _ in range(rng.randint(0, 8))]


def doc_top_scalar(rng):
    return rand_scalar(rng)


# (name, weight, generator).  Weights are per-mille-ish; non-object top-level
# values are only for the canonical half of the test.
DOC_KINDS = [
    ("event", 280, doc_event),
    ("random_object", 325, doc_random_object),
    ("strings", 120, doc_strings),
    ("sort_traps", 70, doc_sort_traps),
    ("ints", 50, doc_ints),
    ("top_array", 60, doc_top_array),
    ("top_scalar", 60, doc_top_scalar),
    ("wide", 15, doc_wide),
    ("long_array", 10, doc_long_array),
    ("deep", 5, doc_deep),
]


def fixed_docs():
    """Hand-picked documents emitted first, so even a tiny --count covers them.

    Each is (kind, input_text_or_None, value).  When an input text is given it
    is used verbatim (it must parse to `value`).
    """
    all_c0_string = "".join(C0) + "\x7f\u2028\u2029\"\\/"
    deep = "bottom"
    for i in range(MAX_DEPTH - 1):  # plus the enclosing top-level object = MAX_DEPTH
        deep = [deep] if i % 2 else {"d": deep}
    docs = [
        ("spec_example", "{}", {}),
        ("spec_example", '{"one": 1, "two": "Two"}', {"one": 1, "two": "Two"}),
        ("spec_example", '{\n    "b": "2",\n    "a": "1"\n}', {"b": "2", "a": "1"}),
        ("spec_example", '{"a": "\\u65E5"}', {"a": "\u65e5"}),
        ("spec_example", '{"本": 2, "日": 1}', {"本": 2, "日": 1}),
        ("spec_example", '{"a": null}', {"a": None}),
        ("spec_example",
         '{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": '
         '"John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, '
         '{"medium": "msisdn", "address": "123456789"}]}}}',
         {"auth": {"success": True, "mxid": "@john.doe:example.com", "profile": {
             "display_name": "John Doe", "three_pids": [
                 {"medium": "email", "address": "john.doe@example.org"},
                 {"medium": "msisdn", "address": "123456789"}]}}}),
        ("coverage", None, {"s": all_c0_string}),
        ("coverage", None, {c: ord(c) for c in C0 + ["\x7f", "\u2028", "\u2029", '"', "\\", "/"]}),
        ("coverage", None, {"": "", "empty": "", " ": " "}),
        ("coverage", None, {"\uff61": 1, "\U0001f600": 2, "\ue000": 3, "\U00010000": 4,
                            "\uffff": 5, "\U0010ffff": 6, "\u00e9": 7, "e\u0301": 8}),
        ("coverage", None, {"ints": BOUNDARY_INTS, "max": MAX_SAFE, "min": -MAX_SAFE}),
        ("coverage", '{"zero": -0, "also": [-0, 0]}', {"zero": 0, "also": [0, 0]}),
        ("coverage", '{"a\\/b": "\\/\\/", "\\u00E9": "\\u00e9\\uD83D\\uDE00\\ud83d\\ude00"}',
         {"a/b": "//", "\u00e9": "\u00e9\U0001f600\U0001f600"}),
        ("coverage", ' \t\r\n{ \t\r\n"k" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\ntrue \t\r\n] \t\r\n} \t\r\n',
         {"k": [1, True]}),
        ("coverage", None, {"content": {"signatures": {"x": {"y": "z"}}, "unsigned": {"age": 1}},
                            "unsigned": {"signatures": "keep me", "unsigned": {}},
                            "signatures": {"other.example": {"ed25519:abc": "c2ln"}}}),
        ("coverage", None, {"a": 1, "signatures": {SERVER_NAME: {"ed25519:1": "stale", "ed25519:0": "old"}}}),
        # signedjson (like the spec's pseudocode) drops a top-level "unsigned": null.
        ("coverage", None, {"a": 1, "unsigned": None}),
        ("coverage", None, {"deep": deep}),
        ("coverage", None, []),
        ("coverage", None, [[], {}, [[]], [{}]]),
        ("coverage", None, ""),
        ("coverage", None, 0),
        ("coverage", None, -MAX_SAFE),
        ("coverage", None, True),
        ("coverage", None, False),
        ("coverage", None, None),
        ("coverage", None, all_c0_string),
    ]
    return docs


# ---------------------------------------------------------------------------
# Input text styles
# ---------------------------------------------------------------------------


def shuffled(rng, value):
    """Same value, with every object's insertion order shuffled."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(rng, v) for k, v in items}
    if isinstance(value, list):
        return [shuffled(rng, v) for v in value]
    return value


SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hex_escape(rng, code_unit, case):
    digits = "%04x" % code_unit
    if case == "upper":
        digits = digits.upper()
    elif case == "mixed":
        digits = "".join(d.upper() if rng.random() < 0.5 else d for d in digits)
    return "\\u" + digits


def u_escape(rng, ch, case):
    cp = ord(ch)
    if cp < 0x10000:
        return hex_escape(rng, cp, case)
    cp -= 0x10000  # astral: a UTF-16 surrogate pair, as JSON requires
    return hex_escape(rng, 0xD800 + (cp >> 10), case) + hex_escape(rng, 0xDC00 + (cp & 0x3FF), case)


class HandRolled:
    """A serialiser json.dumps cannot imitate: `\\/`, upper/mixed-case hex,
    gratuitous escapes of ordinary characters, `-0`, and arbitrary whitespace."""

    def __init__(self, rng):
        self.rng = rng
        self.escape_prob = rng.choice([0.0, 0.1, 0.5, 1.0])
        self.case = rng.choice(["lower", "upper", "mixed"])
        self.slash = rng.choice(["raw", "escaped", "mixed"])
        self.ws = rng.choice([[""], [" "], ["", " ", "\n", "\t", "\r\n", "  \n  "]])
        self.neg_zero = rng.random() < 0.5

    def gap(self):
        return self.rng.choice(self.ws)

    def string(self, s):
        rng, out = self.rng, ['"']
        for ch in s:
            cp = ord(ch)
            if ch == "/":
                esc = self.slash == "escaped" or (self.slash == "mixed" and rng.random() < 0.5)
                out.append("\\/" if esc else "/")
            elif ch in SHORT_ESCAPES and rng.random() < 0.7:
                out.append(SHORT_ESCAPES[ch])
            elif cp < 0x20 or ch in "\"\\" or rng.random() < self.escape_prob:
                out.append(u_escape(rng, ch, self.case))
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)

    def value(self, v):
        g = self.gap
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, int):
            return "-0" if v == 0 and self.neg_zero and self.rng.random() < 0.5 else str(v)
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, list):
            if not v:
                return "[" + g() + "]"
            return "[" + ",".join(g() + self.value(x) + g() for x in v) + "]"
        items = list(v.items())
        self.rng.shuffle(items)
        if not items:
            return "{" + g() + "}"
        return "{" + ",".join(g() + self.string(k) + g() + ":" + g() + self.value(x) + g() for k, x in items) + "}"

    def document(self, v):
        return self.gap() + self.value(v) + self.gap()


def render(rng, value):
    """Pick a style and serialise `value` in it.  Returns (style, text)."""
    style = rng.choices(
        ["compact_ascii", "compact_utf8", "default_ascii", "default_utf8", "indent2", "indent4",
         "spaced", "shuffled", "sorted", "handrolled"],
        [10, 10, 8, 8, 6, 6, 6, 14, 4, 28],
    )[0]
    ascii_ = rng.random() < 0.5
    if style == "compact_ascii":
        return style, json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    if style == "compact_utf8":
        return style, json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if style == "default_ascii":
        return style, json.dumps(value, ensure_ascii=True)
    if style == "default_utf8":
        return style, json.dumps(value, ensure_ascii=False)
    if style == "indent2":
        return style, json.dumps(value, ensure_ascii=ascii_, indent=2)
    if style == "indent4":
        return style, json.dumps(value, ensure_ascii=ascii_, indent=4)
    if style == "spaced":
        return style, json.dumps(value, ensure_ascii=ascii_, separators=(" , ", " : "))
    if style == "shuffled":
        return style, json.dumps(shuffled(rng, value), ensure_ascii=ascii_,
                                 indent=rng.choice([None, 1, "\t"]))
    if style == "sorted":
        return style, json.dumps(value, ensure_ascii=ascii_, sort_keys=True)
    return style, HandRolled(rng).document(value)


# ---------------------------------------------------------------------------
# The spec's reading of JSON text
# ---------------------------------------------------------------------------


class SpecReject(Exception):
    """The spec (and therefore mxfed) must reject this input."""


def _spec_int(text):
    # Length check first: it avoids CPython's int-digit limit on huge literals.
    if len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_SAFE:
        raise SpecReject("integer out of range: " + text[:40])
    return int(text)


def _spec_float(text):
    # The exact decimal value decides, not its nearest double: "1.000...01"
    # is not an integer even though float() rounds it to 1.0.
    exact = fractions.Fraction(text)
    if exact.denominator != 1 or abs(exact.numerator) > MAX_SAFE:
        raise SpecReject("number is not an integer in range: " + text[:40])
    return exact.numerator


def _spec_constant(text):
    raise SpecReject("not JSON: " + text)


def _spec_object(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise SpecReject("duplicate key: %r" % k)
        obj[k] = v
    return obj


def _check_scalar_values(value):
    """Reject lone surrogates, which Python's json happily decodes."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            strings = [v]
        elif isinstance(v, dict):
            strings = list(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
            continue
        else:
            continue
        for s in strings:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise SpecReject("lone surrogate in %r" % s) from None


def _no_float(text):
    raise SpecReject("main-corpus input contains a non-integer literal: " + text)


def spec_loads(text, allow_float=True):
    """Parse as the spec requires: integers only (floats that are exact
    in-range integers are normalised), no NaN/Infinity, no duplicate keys, no
    lone surrogates.  allow_float=False also refuses fraction/exponent forms,
    which the main corpus promises never to contain."""
    value = json.loads(text, parse_int=_spec_int, parse_float=_spec_float if allow_float else _no_float,
                       parse_constant=_spec_constant, object_pairs_hook=_spec_object)
    _check_scalar_values(value)
    return value


def python_canonical(text):
    """What a Synapse-style pipeline (stdlib json.loads + canonicaljson) does."""
    try:
        return False, canonicaljson.encode_canonical_json(json.loads(text)).decode("utf-8")
    except Exception as e:  # the class name is the documented outcome
        return True, type(e).__name__


# ---------------------------------------------------------------------------
# Deliberate disagreements
# ---------------------------------------------------------------------------

# Number literals where the spec and Python part ways.  Big ints: Python keeps
# them.  Floats: Python emits its float repr ("10000000000.0", "1e+16",
# "-0.0"); the spec wants the exact integer or an error.
DISAGREEMENT_NUMBERS = [
    "9007199254740992", "-9007199254740992", "9007199254740993", "-9007199254740993",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "123456789012345678",
    "1" + "0" * 30, "-" + "9" * 1000,
    "1.5", "-1.5", "0.5", "2.5e-3", "123e-2", "1.000000000000000000001",
    "1e10", "1E10", "1e+10", "1E+10", "1.0", "-1.0", "3.0e0", "1E-0",
    "0.0", "-0.0", "0e0", "-0e-0", "0e400", "1.5e1", "100e-2", "0.1e1", "0.000001e6",
    "-1.0e0", "1e2", "1e15",
    "9007199254740991.0", "9007199254740991e0", "-9007199254740991.0", "90071992547409910e-1",
    "9007199254740992.0", "9.007199254740993e15", "9007199254740993.0",
    "1e16", "1e21", "1e22", "1e400", "-1e400", "1e-400", "5e-324",
    "1.7976931348623157e308",
]

DISAGREEMENT_CONSTANTS = ["NaN", "Infinity", "-Infinity"]

# Escaped strings that decode to lone (unpaired or reversed) surrogates.
DISAGREEMENT_SURROGATE_STRINGS = [
    '"\\ud800"', '"\\uDBFF"', '"\\udc00"', '"\\uDFFF"', '"a\\ud800b"',
    '"\\ude00\\ud83d"', '"\\ud83d\\ud83d\\ude00"', '"\\ud800\\u0041"', '"x\\ud83d"',
    '"\\uD83D\\uDE00\\uDE00"',
]

# Whole objects with duplicate keys (several only become duplicates once
# escapes are decoded).  Python's json keeps the last value.
DISAGREEMENT_DUPLICATE_OBJECTS = [
    '{"a":1,"a":2}',
    '{"a":1,"\\u0061":2}',
    '{"":1,"":2}',
    '{"\\u00e9":1,"\u00e9":2}',
    '{"\\ud83d\\ude00":1,"\U0001f600":2}',
    '{"a":{"x":1},"b":2,"a":{"y":2}}',
    '{"o":{"k":true,"k":false}}',
    '{"signatures":{},"signatures":{"x":{}}}',
    '{"k":1,"k":1}',
    '{"a\\/b":0,"a/b":0}',
]

# Places to embed a fragment, so rejection is tested beyond the top level.
CONTEXTS = [
    "{0}",
    '{{"k":{0}}}',
    '[1,{0},"x"]',
    '{{"content":{{"body":"x","n":[{0}]}}}}',
    '{{"a":{{"b":{{"c":{0}}}}},"z":null}}',
    '[[[[{0}]]]]',
    '{{"type":"m.room.message","depth":{0},"origin_server_ts":1}}',
]


def disagreement_cases(rng):
    """Yield (case, input_text): every fragment bare and in 1-2 other contexts."""
    groups = [
        ("number", DISAGREEMENT_NUMBERS),
        ("nan_infinity", DISAGREEMENT_CONSTANTS),
        ("lone_surrogate_value", DISAGREEMENT_SURROGATE_STRINGS),
        ("duplicate_keys", DISAGREEMENT_DUPLICATE_OBJECTS),
    ]
    for case, fragments in groups:
        # Numbers are many and context matters little to them; keep ~200 lines.
        extra = 1 if case == "number" else 2
        for frag in fragments:
            for ctx in [CONTEXTS[0]] + rng.sample(CONTEXTS[1:], extra):
                yield case, ctx.format(frag)
    # Lone surrogates in keys need their own templates.
    for frag in DISAGREEMENT_SURROGATE_STRINGS:
        for ctx in ['{{{0}:1}}', '{{"a":{{{0}:[]}}}}']:
            yield "lone_surrogate_key", ctx.format(frag)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def depth_of(value):
    """Container nesting depth; a scalar is 0, {} and [] are 1."""
    best, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        best = max(best, d)
        stack.extend((c, d + 1) for c in children)
    return best


def contains_char(value, ch):
    if isinstance(value, str):
        return ch in value
    if isinstance(value, dict):
        return any(ch in k or contains_char(v, ch) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_char(v, ch) for v in value)
    return False


def check_line_is_clean(record):
    # Every string in the corpus line must be valid UTF-8 once decoded, or
    # strict consumers (serde_json) would reject the JSONL itself.
    for v in record.values():
        if isinstance(v, str):
            v.encode("utf-8")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000, help="main-corpus documents (default 10000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--out", required=True, help="output JSONL path")
    args = ap.parse_args()

    started = time.monotonic()  # only for the summary; never affects output
    rng = random.Random(args.seed)

    signing_key = signedjson.key.decode_signing_key_base64("ed25519", "1", SIGNING_SEED_B64)
    verify_key = signedjson.key.get_verify_key(signing_key)
    assert (signedjson.sign.sign_json({}, SERVER_NAME, signing_key)["signatures"][SERVER_NAME]["ed25519:1"]
            == SPEC_SIG_OF_EMPTY_OBJECT), "signing key does not reproduce the spec's test vector"

    kinds, styles, tops, stats = Counter(), Counter(), Counter(), Counter()
    c0_seen = set()
    max_depth = 0

    fixed = fixed_docs()
    names, weights, makers = zip(*DOC_KINDS)

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    n_lines = 0
    with open(args.out, "w", encoding="ascii", newline="\n") as out:

        def emit(record):
            nonlocal n_lines
            check_line_is_clean(record)
            out.write(json.dumps(record, ensure_ascii=True) + "\n")
            n_lines += 1

        for i in range(args.count):
            if i < len(fixed):
                kind, text, doc = fixed[i]
                style = "fixed" if text is not None else None
            else:
                kind = rng.choices(names, weights)[0]
                doc = make_signable(makers[names.index(kind)](rng))
                text = style = None
            if text is None:
                style, text = render(rng, doc)

            canonical = canonicaljson.encode_canonical_json(doc)
            # The input text must mean exactly `doc` under the spec's rules
            # (no floats, no duplicates, ints in range) and under Python's.
            assert canonicaljson.encode_canonical_json(spec_loads(text, allow_float=False)) == canonical, (i, text)
            assert canonicaljson.encode_canonical_json(json.loads(text)) == canonical, (i, text)
            d = depth_of(doc)
            assert d <= MAX_DEPTH, (i, d)
            max_depth = max(max_depth, d)

            signed_canonical = None
            if isinstance(doc, dict):
                signed = signedjson.sign.sign_json(copy.deepcopy(doc), SERVER_NAME, signing_key)
                signedjson.sign.verify_signed_json(signed, SERVER_NAME, verify_key)
                for server, sigs in doc.get("signatures", {}).items():
                    for key_id, sig in sigs.items():
                        if (server, key_id) != (SERVER_NAME, "ed25519:1"):  # only ours is replaced
                            assert signed["signatures"][server][key_id] == sig, (i, server, key_id)
                signed_canonical = canonicaljson.encode_canonical_json(signed).decode("utf-8")
                stats["signed"] += 1
                stats["with_top_signatures"] += "signatures" in doc
                stats["with_top_unsigned"] += "unsigned" in doc

            kinds[kind] += 1
            styles[style] += 1
            tops[type(doc).__name__] += 1
            c0_seen.update(c for c in C0 if c not in c0_seen and contains_char(doc, c))
            emit({
                "i": i,
                "input": text,
                "canonical": canonical.decode("utf-8"),
                "canonical_hex": canonical.hex(),
                "signed_canonical": signed_canonical,
                "kind": kind,
                "style": style,
            })

        # The disagreement set is fixed in size (independent of --count) and
        # numbered after the main corpus.
        dis_cases, dis_verdicts = Counter(), Counter()
        # Its own RNG stream, so these lines do not change with --count.
        for j, (case, text) in enumerate(disagreement_cases(random.Random(args.seed))):
            try:
                spec = canonicaljson.encode_canonical_json(spec_loads(text)).decode("utf-8")
            except SpecReject:
                spec = None
            raised, py = python_canonical(text)
            assert raised or spec != py, (text, py)  # each line must really disagree
            dis_cases[case] += 1
            dis_verdicts["spec_rejects" if spec is None else "spec_normalises"] += 1
            dis_verdicts["python_raises" if raised else "python_accepts"] += 1
            emit({
                "i": args.count + j,
                "category": "disagreement",
                "case": case,
                "input": text,
                "expect_error": spec is None,
                "spec_canonical": spec,
                "python_canonical": py,
                "python_raised": raised,
            })

    size = os.path.getsize(args.out)
    elapsed = time.monotonic() - started
    err = sys.stderr
    print("wrote %d lines (%d bytes) to %s in %.1fs, seed %d"
          % (n_lines, size, args.out, elapsed, args.seed), file=err)
    print("main corpus: %d documents" % args.count, file=err)
    for title, counter in (("kind", kinds), ("input style", styles), ("top-level type", tops)):
        print("  by %s: %s" % (title, ", ".join("%s=%d" % kv for kv in sorted(counter.items()))), file=err)
    print("  signed: %(signed)d (with top-level signatures %(with_top_signatures)d, "
          "with top-level unsigned %(with_top_unsigned)d)" % stats, file=err)
    print("  max nesting depth: %d; C0 control chars covered: %d/32" % (max_depth, len(c0_seen)), file=err)
    print("disagreements: %d lines" % sum(dis_cases.values()), file=err)
    print("  by case: %s" % ", ".join("%s=%d" % kv for kv in sorted(dis_cases.items())), file=err)
    print("  outcomes: %s" % ", ".join("%s=%d" % kv for kv in sorted(dis_verdicts.items())), file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())

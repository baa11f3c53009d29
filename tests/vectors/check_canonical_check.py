"""Cross-checks canonical_check.json against Python's json module, the spec's reference encoder
(json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True)).

A row is canonical when Python parses it (no duplicate keys, no NaN, valid UTF-8 without
surrogates), it holds only integers in [-(2^53-1), 2^53-1], and encoding gives the input back.
Rows with an error must not parse, except json_too_deep: Python's nesting limit is not mxfed's,
so that row is left to the Rust tests.

    python3 tests/vectors/check_canonical_check.py
"""

import json
import pathlib
import sys

MAX = 2**53 - 1


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def reject(name):
    raise ValueError(name)


def strict(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return True
    if isinstance(v, int):
        return -MAX <= v <= MAX
    if isinstance(v, float):
        return False
    if isinstance(v, list):
        return all(strict(x) for x in v)
    return all(strict(x) for x in v.values())


def python_says(data: bytes):
    """(parses, canonical) by Python's rules."""
    try:
        text = data.decode("utf-8")
        v = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=reject)
        out = json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except (ValueError, UnicodeError):
        return False, False
    return True, strict(v) and out == data


def main() -> int:
    path = pathlib.Path(__file__).with_name("canonical_check.json")
    rows = json.loads(path.read_text(encoding="utf-8"))["cases"]
    bad = 0
    for row in rows:
        data = bytes.fromhex(row["input_hex"]) if "input_hex" in row else row["input"].encode("utf-8")
        parses, canonical = python_says(data)
        if row.get("error") == "json_too_deep":
            continue
        if parses != ("error" not in row) or canonical != row["canonical"]:
            print("disagree: %s: python parses=%s canonical=%s; row %s" % (row["name"], parses, canonical, row))
            bad += 1
    print("%d rows, %d disagreements" % (len(rows), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

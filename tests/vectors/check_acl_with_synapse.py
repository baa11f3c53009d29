"""Cross-checks tests/vectors/acl.json against Synapse itself (an independent implementation).

Every boolean expectation is run through Synapse's own code: the content through
``server_acl_evaluator_from_event`` (synapse/storage/controllers/state.py), the server name through
``parse_and_validate_server_name`` (the port is dropped, as Synapse does for a request's origin),
and the host through the Rust ``ServerAclEvaluator``. ``bad_server_name`` expectations must be
names Synapse refuses too. Rows about malformed content bytes are mxfed's input contract (Synapse
never sees such content) and are skipped.

Usage: python tests/vectors/check_acl_with_synapse.py  (with matrix-synapse installed)
"""

import json
import os
import sys
from types import SimpleNamespace

from synapse.storage.controllers.state import server_acl_evaluator_from_event
from synapse.util.stringutils import parse_and_validate_server_name

HERE = os.path.dirname(os.path.abspath(__file__))

# Where the spec and Synapse differ, the vector follows the spec; each difference is listed here.
KNOWN = {
    # Spec (appendices, server name grammar): the port is 1*5DIGIT. Synapse parses any digits.
    "example.org:123456": ("bad_server_name", True),
}


def main() -> int:
    with open(os.path.join(HERE, "acl.json")) as f:
        cases = json.load(f)["cases"]
    checked = skipped = 0
    failures = []
    for case in cases:
        if "content" in case:
            content = case["content"]
        else:
            try:
                content = json.loads(case["content_text"])
            except ValueError:
                skipped += len(case["checks"])
                continue
            if not isinstance(content, dict) or any(isinstance(c[1], str) and c[1].startswith("json_") for c in case["checks"]):
                skipped += len(case["checks"])
                continue
        evaluator = server_acl_evaluator_from_event(SimpleNamespace(content=content))
        for server, want in case["checks"]:
            try:
                host, _port = parse_and_validate_server_name(server)
            except ValueError:
                got = "bad_server_name"
            else:
                got = evaluator.server_matches_acl_event(host)
            checked += 1
            if server in KNOWN and KNOWN[server] == (want, got):
                continue
            if got != want:
                failures.append("%s: %r: synapse %r, vector %r" % (case["name"], server, got, want))
    for f in failures:
        print("MISMATCH", f)
    print("acl.json vs Synapse: %d checked, %d skipped, %d mismatches" % (checked, skipped, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

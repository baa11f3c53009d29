"""History visibility through `import mxfed`: every row of tests/vectors/history_visibility.json,
with list, tuple and generator memberships, and against the native `mxfed` CLI."""

import json
from typing import Any, Dict, List

import pytest

import mxfed
from conftest import Cli, load

CASES: List[Dict[str, Any]] = load("history_visibility.json")["cases"]


@pytest.mark.parametrize("v", CASES, ids=lambda v: v["name"])
def test_server_may_see(v: Dict[str, Any], cli: Cli) -> None:
    want = v["expected"]["may_see"]
    memberships: List[str] = v["memberships"]
    assert mxfed.server_may_see(v["visibility"], memberships) is want
    assert mxfed.server_may_see(v["visibility"], tuple(memberships)) is want
    assert mxfed.server_may_see(v["visibility"], (m for m in memberships)) is want
    args = ["history", "may-see"]
    if v["visibility"] is not None:
        args.append("--visibility=" + v["visibility"])
    out = json.loads(cli.ok([*args, "--", *memberships]))
    assert out == v["expected"]


def test_table_size() -> None:
    assert len(CASES) >= 30

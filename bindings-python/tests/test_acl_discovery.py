"""Server ACLs and discovery through `import mxfed`: every row of tests/vectors/acl.json and
discovery.json, with dict and text inputs, and byte for byte against the native `mxfed` CLI."""

import json
from typing import Any, Dict, List, Optional, Tuple

import pytest

import mxfed
from conftest import Cli, dumps, load

ACL = load("acl.json")["cases"]
DISCOVERY = load("discovery.json")


def _content(case: Dict[str, Any]) -> bytes:
    if "content_text" in case:
        return case["content_text"].encode("utf-8")
    return dumps(case["content"])


ACL_ROWS: List[Tuple[str, Dict[str, Any], str, Any]] = [
    ("%s / %s" % (c["name"], server), c, server, want) for c in ACL for server, want in c["checks"]
]


@pytest.mark.parametrize("name,case,server,want", ACL_ROWS, ids=[r[0] for r in ACL_ROWS])
def test_acl(name: str, case: Dict[str, Any], server: str, want: Any) -> None:
    inputs: List[Any] = [_content(case), _content(case).decode("utf-8")]
    if "content" in case:
        inputs.append(case["content"])
    for content in inputs:
        if isinstance(want, bool):
            assert mxfed.server_acl_allows(content, server) is want
        else:
            with pytest.raises(mxfed.MxfedError) as e:
                mxfed.server_acl_allows(content, server)
            assert e.value.code == want


def test_acl_cli_agrees(cli: Cli, tmp_path: Any) -> None:
    for case in ACL:
        path = tmp_path / "acl.json"
        path.write_bytes(_content(case))
        for server, want in case["checks"]:
            p = cli.run(["acl", "check", "--acl", str(path), "--", server])
            if isinstance(want, bool):
                assert p.returncode == (0 if want else 1), (case["name"], server, p.stderr)
                assert json.loads(p.stdout) == {"allowed": want, "server_name": server}
            else:
                assert p.returncode == 2
                assert ("error[%s]" % want).encode() in p.stderr


def _well_known(v: Dict[str, Any]) -> Optional[bytes]:
    if "well_known_text" in v:
        return v["well_known_text"].encode("utf-8")
    if "well_known" in v:
        return dumps(v["well_known"])
    return None


@pytest.mark.parametrize("v", DISCOVERY["plan"], ids=lambda v: v["name"])
def test_discovery_plan(v: Dict[str, Any], cli: Cli, tmp_path: Any) -> None:
    body = _well_known(v)
    args = ["discover", "plan"]
    if body is not None:
        (tmp_path / "wk.json").write_bytes(body)
        args += ["--well-known", str(tmp_path / "wk.json")]
    args += ["--", v["server_name"]]
    if "error" in v:
        with pytest.raises(mxfed.IdentifierError) as e:
            mxfed.discovery_plan(v["server_name"], body)
        assert e.value.code == v["error"]
        p = cli.run(args)
        assert p.returncode == 2 and ("error[%s]" % v["error"]).encode() in p.stderr
        return
    plan = mxfed.discovery_plan(v["server_name"], body)
    assert plan == v["expected"]
    assert mxfed.canonical_json(plan) == cli.ok(args)
    if "well_known" in v and isinstance(v["well_known"], dict):
        assert mxfed.discovery_plan(v["server_name"], v["well_known"]) == v["expected"]


def test_failed_fetch_is_an_empty_body() -> None:
    assert mxfed.discovery_plan("example.org", b"") == mxfed.discovery_plan("example.org", "")
    assert mxfed.discovery_plan("example.org", b"")["action"] == "srv"
    assert mxfed.discovery_plan("example.org")["action"] == "well_known"


@pytest.mark.parametrize("v", DISCOVERY["pick_srv"], ids=lambda v: v["name"])
def test_pick_srv(v: Dict[str, Any], cli: Cli) -> None:
    text = v["records_text"].encode("utf-8") if "records_text" in v else dumps(v["records"])
    inputs: List[Any] = [text]
    if "records" in v:
        inputs.append(v["records"])
    for records in inputs:
        if "error" in v:
            with pytest.raises(mxfed.MxfedError) as e:
                mxfed.pick_srv(records)
            assert e.value.code == v["error"]
        else:
            assert mxfed.pick_srv(records) == v["expected"]
    if "error" in v:
        p = cli.run(["discover", "pick-srv", "-"], text)
        assert p.returncode == 2 and ("error[%s]" % v["error"]).encode() in p.stderr
    else:
        assert mxfed.canonical_json(mxfed.pick_srv(text)) == cli.ok(["discover", "pick-srv", "-"], text)

"""mxfed.client and `python -m mxfed` against a loopback federation server (127.0.0.1, port 0)
that authenticates every request with mxfed.verify_request."""

import json
import os
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

import mxfed
from mxfed.client import FederationClient, FederationRequestError, default_base_url

ORIGIN_KEY = mxfed.SigningKey.from_seed("o1", bytes(range(32)))
REMOTE_KEY = mxfed.SigningKey.from_seed("r1", bytes(range(1, 33)))
FAR = 10**13


class Handler(BaseHTTPRequestHandler):
    server_name = "remote.test"
    known = mxfed.KeyRing([mxfed.server_keys("origin.test", ORIGIN_KEY, FAR)])

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        if self.path == "/_matrix/key/v2/server":
            self._answer(200, mxfed.server_keys(self.server_name, REMOTE_KEY, FAR))
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        try:
            auth = mxfed.verify_request(
                self.server_name, self.known, self.command, self.path,
                self.headers.get_all("Authorization") or [], body,
            )
        except mxfed.XMatrixError as e:
            self._answer(401, {"errcode": "M_UNAUTHORIZED", "error": e.code})
            return
        self._answer(200, {"origin": auth["origin"], "method": self.command, "path": self.path,
                           "content": json.loads(body) if body else None})

    do_GET = do_PUT = do_POST = _handle


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_default_base_url() -> None:
    assert default_base_url("example.org") == "https://example.org:8448"
    assert default_base_url("example.org:443") == "https://example.org:443"
    assert default_base_url("[::1]") == "https://[::1]:8448"
    assert default_base_url("[::1]:8") == "https://[::1]:8"


def test_signed_requests(server: str) -> None:
    c = FederationClient("origin.test", ORIGIN_KEY, base_url=server, verify_tls=False)
    got = c.get("remote.test", "/_matrix/federation/v1/query/profile", query={"user_id": "@a:remote.test"})
    assert got["origin"] == "origin.test"
    assert got["path"] == "/_matrix/federation/v1/query/profile?user_id=%40a%3Aremote.test"
    txn = {"origin": "origin.test", "origin_server_ts": 1, "pdus": [], "edus": [{"edu_type": "m.x", "content": {"é": 1}}]}
    assert c.put("remote.test", "/_matrix/federation/v1/send/1", txn)["content"] == txn
    assert c.post("remote.test", "/_matrix/key/v2/query", {"server_keys": {}})["method"] == "POST"
    keys = c.server_keys("remote.test")
    assert keys["verify_keys"] == {"ed25519:r1": {"key": REMOTE_KEY.verify_key}}


def test_a_transaction_may_nest_deeper_than_other_bodies(server: str) -> None:
    """A to-device message nested past 128 levels goes out in a transaction (which may nest
    1,024, as the receiving side reads it); other bodies keep the 128-level limit."""
    deep: Any = "leaf"
    for _ in range(130):
        deep = {"d": deep}
    edu = {"edu_type": "m.direct_to_device",
           "content": {"sender": "@a:origin.test", "type": "m.x", "message_id": "m1",
                       "messages": {"@b:remote.test": {"D": deep}}}}
    txn = {"origin": "origin.test", "origin_server_ts": 1, "pdus": [], "edus": [edu]}
    c = FederationClient("origin.test", ORIGIN_KEY, base_url=server)
    assert c.put("remote.test", "/_matrix/federation/v1/send/deep", txn)["content"] == txn
    with pytest.raises(mxfed.CanonicalJsonError) as e:
        c.post("remote.test", "/_matrix/key/v2/query", {"server_keys": deep})
    assert e.value.code == "json_too_deep"


def test_unauthenticated_and_unreachable(server: str) -> None:
    stranger = FederationClient("stranger.test", ORIGIN_KEY, base_url=server)
    with pytest.raises(FederationRequestError) as e:
        stranger.get("remote.test", "/x")
    assert (e.value.code, e.value.status, e.value.errcode) == ("http_error", 401, "M_UNAUTHORIZED")
    assert isinstance(e.value, mxfed.MxfedError)
    wrong_dest = FederationClient("origin.test", ORIGIN_KEY, base_url=server)
    with pytest.raises(FederationRequestError) as e:
        wrong_dest.get("elsewhere.test", "/x")
    assert e.value.status == 401
    with pytest.raises(mxfed.ServerKeysError) as e2:
        wrong_dest.server_keys("elsewhere.test")
    assert e2.value.code == "keys_wrong_server"
    dead = FederationClient("origin.test", ORIGIN_KEY, base_url="http://127.0.0.1:9", timeout=5)
    with pytest.raises(FederationRequestError) as e:
        dead.get("remote.test", "/x")
    assert e.value.code == "connection_error"


def run_cli(*args: str, stdin: bytes = b"") -> Tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "mxfed", *args], input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_cli_keys(server: str) -> None:
    rc, out, err = run_cli("keys", "remote.test", "--base-url", server)
    assert rc == 0, err
    assert json.loads(out)["server_name"] == "remote.test"
    assert out.encode().rstrip(b"\n") == mxfed.canonical_json(json.loads(out))
    rc, out, err = run_cli("keys", "other.test", "--base-url", server)
    assert (rc, out) == (2, "")
    assert err.startswith("mxfed: error[keys_wrong_server]: ") and err.count("\n") == 1


def test_cli_request(server: str, tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    ORIGIN_KEY.save(key)
    body = tmp_path / "body.json"
    body.write_text('{"pdus": [], "origin": "origin.test", "origin_server_ts": 5}')
    base = ["request", "--key", str(key), "--origin", "origin.test", "--destination", "remote.test"]
    rc, out, err = run_cli(*base, "PUT", server + "/_matrix/federation/v1/send/9", "--content", str(body))
    assert rc == 0, err
    assert json.loads(out)["content"]["origin_server_ts"] == 5
    rc, out, err = run_cli(*base, "--content", "-", "POST", server + "/p?q=1", stdin=b'{"a": 1}')
    assert rc == 0 and json.loads(out)["path"] == "/p?q=1", err
    # Errors: one line, exit 2.
    for args, code in [
        (["request", "--key", str(key), "--origin", "stranger.test", "--destination", "remote.test", "GET", server + "/x"], "http_error"),
        (["request", "--key", str(body), "--origin", "origin.test", "GET", server + "/x"], "bad_key_file"),
        (["request", "--key", str(tmp_path / "missing"), "--origin", "origin.test", "GET", server + "/x"], "io"),
        (["request", "--key", str(key), "--origin", "origin.test", "GET", "ftp://x/y"], "bad_url"),
        (["request", "--key", str(key), "--origin", "origin.test", "GET", "http://127.0.0.1:9/x"], "connection_error"),
        (["request", "--key", str(key), "--origin", "bad origin", "GET", server + "/x"], "bad_server_name"),
    ]:
        rc, out, err = run_cli(*args)
        assert rc == 2 and out == "", (args, err)
        assert err.startswith("mxfed: error[%s]: " % code) and err.count("\n") == 1, err


class BadRemote(socketserver.StreamRequestHandler):
    """A remote that answers badly, by path: JSON nested too deep for Python, a body cut short,
    a status line that is not HTTP, non-ASCII JSON."""

    ANSWERS = {
        "/deep": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"[" * 100000,
        "/deep-error": b"HTTP/1.1 400 Bad\r\nContent-Length: 100000\r\n\r\n" + b"[" * 100000,
        "/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":",
        "/cut-error": b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{\"errcode\":",
        "/garbage": b"HELLO THERE\r\n\r\n",
        "/_matrix/key/v2/server": b"SSH-2.0-OpenSSH\r\n",
        "/accents": b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n" + '{"a":"été"}'.encode(),
    }

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1")
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = request_line.split(" ")[1] if " " in request_line else "/"
        self.wfile.write(self.ANSWERS.get(path, b"HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n"))


@pytest.fixture(scope="module")
def bad_remote() -> Iterator[str]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), BadRemote)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(
    "path,code,status",
    [
        ("/deep", "bad_response", None),
        ("/deep-error", "http_error", 400),
        ("/cut", "bad_response", None),
        ("/cut-error", "http_error", 500),
        ("/garbage", "bad_response", None),
    ],
)
def test_bad_answers_are_request_errors(bad_remote: str, path: str, code: str, status: Any) -> None:
    c = FederationClient("origin.test", ORIGIN_KEY, base_url=bad_remote)
    with pytest.raises(FederationRequestError) as e:
        c.get("remote.test", path)
    assert (e.value.code, e.value.status) == (code, status)
    assert str(e.value).startswith("GET %s%s: " % (bad_remote, path))
    with pytest.raises(FederationRequestError) as e:
        c.server_keys("remote.test")
    assert e.value.code == "bad_response"


def test_content_that_json_cannot_carry_is_a_json_error(bad_remote: str) -> None:
    c = FederationClient("origin.test", ORIGIN_KEY, base_url=bad_remote)
    for content, code in [({"a": "\ud800"}, "json_lone_surrogate"), ({"a": float("nan")}, "json_non_finite")]:
        with pytest.raises(mxfed.CanonicalJsonError) as e:
            c.put("remote.test", "/x", content)
        assert e.value.code == code


def test_cli_bad_answers_are_one_line(bad_remote: str, tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    ORIGIN_KEY.save(key)
    base = ["request", "--key", str(key), "--origin", "origin.test", "--destination", "remote.test", "GET"]
    for args, code in [
        (base + [bad_remote + "/deep"], "bad_response"),
        (base + [bad_remote + "/cut"], "bad_response"),
        (base + [bad_remote + "/cut-error"], "http_error"),
        (base + [bad_remote + "/garbage"], "bad_response"),
        (["keys", "remote.test", "--base-url", bad_remote], "bad_response"),
    ]:
        rc, out, err = run_cli(*args)
        assert (rc, out) == (2, ""), (args, err)
        assert err.startswith("mxfed: error[%s]: " % code) and err.count("\n") == 1, err
    # Whatever the locale's encoding, the answer is written as UTF-8.
    p = subprocess.run(
        [sys.executable, "-m", "mxfed", *base, bad_remote + "/accents"],
        capture_output=True, timeout=60, env=dict(os.environ, PYTHONIOENCODING="ascii"),
    )
    assert (p.returncode, p.stdout, p.stderr) == (0, '{"a":"été"}\n'.encode(), b"")

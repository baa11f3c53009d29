"""A small federation client for scripts: signed requests to another homeserver.

>>> from mxfed import SigningKey
>>> from mxfed.client import FederationClient
>>> key = SigningKey.load("signing.key")[0]                      # doctest: +SKIP
>>> client = FederationClient("my.server", key)                  # doctest: +SKIP
>>> client.get("other.server", "/_matrix/federation/v1/version")  # doctest: +SKIP

Requests are signed with ``Authorization: X-Matrix`` by :func:`mxfed.sign_request` (one header
per key). It uses only the standard library (``urllib``).

What it deliberately does not do: server discovery. A destination is reached at
``https://<destination>`` when it names a port or an IP literal, else at
``https://<destination>:8448``; ``.well-known`` delegation and SRV records are not followed. Pass
``base_url`` to reach a server elsewhere (a loopback test server, a delegated host).
"""

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Union

from mxfed._core import (
    KeyRing,
    MxfedError,
    ServerKeysError,
    SigningKey,
    _request_body,
    sign_request,
)

__all__ = ["FederationClient", "FederationRequestError", "default_base_url"]

JsonValue = Any


class FederationRequestError(MxfedError):
    """A request that failed: ``.code`` is ``http_error`` (the server answered with an error
    status; ``.status`` and ``.body`` hold it, ``.errcode`` the Matrix error code if any),
    ``connection_error`` (no answer) or ``bad_response`` (an answer that is not HTTP, is cut
    short, or is not JSON that Python can read)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: Optional[int] = None,
        body: bytes = b"",
        errcode: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.body = body
        self.errcode = errcode


def default_base_url(destination: str) -> str:
    """Where a server name is reached without discovery: its own port, or 8448."""
    host = destination
    if host.startswith("["):
        has_port = "]:" in host
    else:
        has_port = ":" in host
    if has_port:
        return "https://" + host
    return "https://%s:8448" % host


class FederationClient:
    """Makes signed federation requests as ``server_name`` with ``signing_key``.

    ``signing_key`` is an :class:`mxfed.SigningKey` or a list of them (urllib sends one
    ``Authorization`` header, so requests carry the first key's signature).
    ``base_url`` overrides where every request goes (e.g. ``http://127.0.0.1:8008``);
    ``verify_tls=False`` accepts any certificate (for test servers only).
    """

    def __init__(
        self,
        server_name: str,
        signing_key: Union[SigningKey, Sequence[SigningKey]],
        *,
        base_url: Optional[str] = None,
        verify_tls: bool = True,
        timeout: float = 30.0,
        user_agent: str = "mxfed-python",
    ) -> None:
        self.server_name = server_name
        self.signing_keys: List[SigningKey] = (
            [signing_key] if isinstance(signing_key, SigningKey) else list(signing_key)
        )
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout
        self.user_agent = user_agent
        self._ssl = ssl.create_default_context()
        if not verify_tls:
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE

    def authorization(
        self, method: str, destination: str, uri: str, content: JsonValue = None
    ) -> List[str]:
        """The ``Authorization`` header values for a request."""
        return sign_request(self.signing_keys, self.server_name, destination, method, uri, content)

    def request(
        self,
        method: str,
        destination: str,
        path: str,
        content: JsonValue = None,
        query: Optional[Dict[str, Union[str, Sequence[str]]]] = None,
    ) -> JsonValue:
        """Sends a signed request and returns the decoded JSON answer.

        ``path`` is sent (and signed) exactly as given, so percent-encode it yourself; ``query``
        is appended URL-encoded. ``content`` is JSON text (``bytes``, sent as it is) or a value,
        sent as its canonical JSON (floats and big integers as Python writes them); a value that
        is not JSON raises :class:`mxfed.CanonicalJsonError`. Raises
        :class:`FederationRequestError` for a failed request.
        """
        uri = path
        if query:
            uri += ("&" if "?" in uri else "?") + urllib.parse.urlencode(query, doseq=True)
        body = None
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if content is not None:
            if isinstance(content, (bytes, bytearray)):
                body = bytes(content)
            else:
                # The core's encoder: a value JSON cannot carry (a lone surrogate, a cycle, NaN)
                # is a CanonicalJsonError with its code, not a UnicodeEncodeError from json; as
                # deep as the endpoint's body may nest (a transaction's to-device messages).
                body = _request_body(method, uri, content)
            headers["Content-Type"] = "application/json"
        auth = self.authorization(method, destination, uri, body if body is not None else None)
        base = self.base_url or default_base_url(destination)
        req = urllib.request.Request(base + uri, data=body, method=method, headers=headers)
        # urllib sends one value per header name; one valid X-Matrix signature is what a
        # server needs, so with several keys the first key's header is sent.
        req.add_header("Authorization", auth[0])
        return self._send(req)

    def _send(self, req: urllib.request.Request) -> JsonValue:
        what = "%s %s" % (req.get_method(), req.full_url)
        data = _fetch_raw(req, self._ssl, self.timeout, what)
        try:
            return json.loads(data) if data else None
        except (ValueError, RecursionError):
            # RecursionError: nesting deeper than Python's json can read.
            raise FederationRequestError(
                "bad_response", "%s: answer is not JSON" % what, body=data
            ) from None

    def get(self, destination: str, path: str, query: Optional[Dict[str, Any]] = None) -> JsonValue:
        """A signed GET."""
        return self.request("GET", destination, path, None, query)

    def put(self, destination: str, path: str, content: JsonValue) -> JsonValue:
        """A signed PUT with a JSON body."""
        return self.request("PUT", destination, path, content)

    def post(self, destination: str, path: str, content: JsonValue) -> JsonValue:
        """A signed POST with a JSON body."""
        return self.request("POST", destination, path, content)

    def server_keys(self, destination: str) -> Dict[str, Any]:
        """``GET /_matrix/key/v2/server`` of ``destination``, checked to be self-signed and for
        that server (raises :class:`mxfed.ServerKeysError` otherwise)."""
        return fetch_server_keys(
            destination,
            base_url=self.base_url,
            verify_tls=self._ssl.verify_mode != ssl.CERT_NONE,
            timeout=self.timeout,
        )


def fetch_server_keys(
    server: str,
    *,
    base_url: Optional[str] = None,
    verify_tls: bool = True,
    timeout: float = 30.0,
) -> Dict[str, Any]:
    """A server's own key response (unauthenticated GET), verified as self-signed by every key
    it lists and as being ``server``'s."""
    ctx = ssl.create_default_context()
    if not verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    url = (base_url.rstrip("/") if base_url else default_base_url(server)) + "/_matrix/key/v2/server"
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    raw = _fetch_raw(req, ctx, timeout, "GET %s" % url)
    ring = KeyRing()
    name = ring.add(raw)
    if name != server:
        err = ServerKeysError("asked for %s's keys, got %s's" % (server, name))
        err.code = "keys_wrong_server"
        raise err
    result: Dict[str, Any] = json.loads(raw)
    return result


def _fetch_raw(
    req: urllib.request.Request, ctx: ssl.SSLContext, timeout: float, what: str
) -> bytes:
    """The body of a 2xx answer; any failure is a :class:`FederationRequestError`."""
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as e:
        data = _read_error_body(e)
        errcode = None
        message = data[:200].decode("utf-8", "replace")
        try:
            j = json.loads(data)
            errcode = j.get("errcode")
            message = "%s: %s" % (errcode, j.get("error", ""))
        except (ValueError, AttributeError, RecursionError):
            pass
        raise FederationRequestError(
            "http_error",
            "%s: HTTP %d %s" % (what, e.code, message),
            status=e.code,
            body=data,
            errcode=errcode if isinstance(errcode, str) else None,
        ) from None
    except http.client.IncompleteRead as e:
        raise FederationRequestError(
            "bad_response",
            "%s: answer cut short (%d bytes read, %s more expected)"
            % (what, len(e.partial), e.expected if e.expected is not None else "some"),
            body=e.partial,
        ) from None
    except http.client.HTTPException as e:
        # BadStatusLine, LineTooLong, too many headers...: the answer is not HTTP.
        raise FederationRequestError(
            "bad_response", "%s: answer is not valid HTTP (%s: %s)" % (what, type(e).__name__, e)
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FederationRequestError("connection_error", "%s: %s" % (what, reason)) from None


def _read_error_body(e: urllib.error.HTTPError) -> bytes:
    """What can be read of an error answer's body (it may be cut short, or not arrive)."""
    try:
        data: bytes = e.read()
        return data
    except http.client.IncompleteRead as cut:
        return cut.partial
    except (http.client.HTTPException, OSError):
        return b""

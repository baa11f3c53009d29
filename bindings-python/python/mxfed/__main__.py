"""``python -m mxfed``: key queries and signed federation requests from the command line.

    python -m mxfed keys SERVER [--base-url URL] [--insecure]
    python -m mxfed request --key signing.key --origin NAME METHOD URL [--content FILE]
                            [--destination NAME] [--insecure]

``keys`` prints SERVER's ``/_matrix/key/v2/server`` response (canonical JSON) after checking it is
self-signed and SERVER's. ``request`` signs the request as ORIGIN with every key in the Synapse
``signing.key`` file (the first is sent) and prints the JSON answer. The destination server name
is the URL's host[:port] unless ``--destination`` says otherwise (for loopback tests).

Exit status 0 on success; any error is one line on stderr, ``mxfed: error[<code>]: <message>``,
and exit status 2.
"""

import argparse
import sys
import urllib.parse
from typing import List, Optional

from mxfed import MxfedError, SigningKey, canonical_json
from mxfed.client import FederationClient, fetch_server_keys

EXIT_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mxfed", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keys", help="fetch and check a server's signing keys")
    k.add_argument("server", metavar="SERVER", help="the server name")
    k.add_argument("--base-url", help="reach the server here instead of https://SERVER[:8448]")
    k.add_argument("--insecure", action="store_true", help="do not check TLS certificates")
    r = sub.add_parser("request", help="send a signed request")
    r.add_argument("--key", required=True, help="Synapse signing.key file")
    r.add_argument("--origin", required=True, help="our server name")
    r.add_argument("--destination", help="the destination server name (default: URL's host)")
    r.add_argument("--content", help="file with the JSON body (- for stdin)")
    r.add_argument("--insecure", action="store_true", help="do not check TLS certificates")
    r.add_argument("method", metavar="METHOD")
    r.add_argument("url", metavar="URL")
    return p


def _fail(code: str, message: str) -> int:
    line = " ".join(str(message).split())
    print("mxfed: error[%s]: %s" % (code, line), file=sys.stderr)
    return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    if args.command == "keys":
        response = fetch_server_keys(args.server, base_url=args.base_url, verify_tls=not args.insecure)
        _print(canonical_json(response))
        return 0
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        return _fail("bad_url", "URL must be http(s)://host[:port]/path, got %r" % args.url)
    destination = args.destination or url.netloc
    path = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
    keys = SigningKey.load(args.key)
    content: Optional[bytes] = None
    if args.content == "-":
        content = sys.stdin.buffer.read()
    elif args.content:
        with open(args.content, "rb") as f:
            content = f.read()
    client = FederationClient(
        args.origin,
        keys,
        base_url="%s://%s" % (url.scheme, url.netloc),
        verify_tls=not args.insecure,
    )
    answer = client.request(args.method.upper(), destination, path, content)
    _print(canonical_json(answer, room_version="1"))
    return 0


def _print(data: bytes) -> None:
    # The bytes themselves: canonical JSON is UTF-8 whatever the locale's encoding is.
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except MxfedError as e:
        return _fail(getattr(e, "code", "error"), str(e))
    except OSError as e:
        return _fail("io", str(e))


if __name__ == "__main__":
    sys.exit(main())

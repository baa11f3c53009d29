"""Shared fixtures: the repository's vectors, the spec's test key, and the native `mxfed` CLI."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
#: The spec's test key (appendix: Signing JSON), version "1".
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
KEY_FILES = [VECTORS / "synapse" / "keys" / (n + ".json") for n in ("localhost_8448", "localhost_8449", "localhost_8450")]


def load(rel: str) -> Any:
    with open(VECTORS / rel, "rb") as f:
        return json.load(f)


def spec_vectors() -> Dict[str, Any]:
    return load("spec_vectors.json")  # type: ignore[no-any-return]


def synapse_pdus() -> List[Dict[str, Any]]:
    with open(VECTORS / "synapse" / "pdus.jsonl", "rb") as f:
        return [json.loads(line) for line in f if line.strip()]


def key_responses() -> List[bytes]:
    return [p.read_bytes() for p in KEY_FILES]


def dumps(value: Any) -> bytes:
    """JSON text of a test input (not canonical: the code under test canonicalises)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _find_cli() -> Optional[str]:
    env = os.environ.get("MXFED_CLI")
    if env:
        return env
    targets = [os.environ.get("CARGO_TARGET_DIR"), str(ROOT / "target")]
    for t in targets:
        for profile in ("debug", "release"):
            if t and os.access(os.path.join(t, profile, "mxfed"), os.X_OK):
                return os.path.join(t, profile, "mxfed")
    return shutil.which("mxfed")


class Cli:
    """The native command line, for byte-for-byte comparisons."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, args: Sequence[str], stdin: bytes = b"") -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run([self.path, *args], input=stdin, capture_output=True, timeout=60)

    def ok(self, args: Sequence[str], stdin: bytes = b"") -> bytes:
        p = self.run(args, stdin)
        assert p.returncode == 0, (args, p.stderr)
        out: bytes = p.stdout
        assert out.endswith(b"\n")
        return out[:-1]


@pytest.fixture(scope="session")
def cli() -> Iterator[Cli]:
    path = _find_cli()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("the mxfed CLI is not built (set MXFED_CLI)")
        pytest.skip("the mxfed CLI is not built: cargo build -p mxfed-native, or set MXFED_CLI")
    yield Cli(path)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("keys") / "signing.key"
    p.write_text("ed25519 1 %s\n" % SEED)
    return p


# Hypothesis: no example database in the work tree, no per-example deadline (CI machines vary).
try:
    from hypothesis import settings

    settings.register_profile("mxfed", database=None, deadline=None)
    settings.load_profile("mxfed")
except ImportError:  # pragma: no cover
    pass

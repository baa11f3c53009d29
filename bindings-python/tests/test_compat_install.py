"""mxfed.compat as a drop-in for a whole program: `install()` makes `import signedjson` and
`import canonicaljson` give the compat modules everywhere (one callback registry, one exception
class), and refuses once the originals were imported. Each case runs in a fresh interpreter.
Also: a verify key that is not a point of the curve fails like a bad signature, as in signedjson."""

import subprocess
import sys
import textwrap

import nacl.signing
import pytest
import signedjson.sign as real_sign

import mxfed.compat.signedjson.sign as our_sign


def run(code: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_install_makes_every_import_the_compat_modules() -> None:
    r = run(
        """
        import mxfed.compat
        mxfed.compat.install()
        mxfed.compat.install()  # again: nothing changes
        import canonicaljson, signedjson, signedjson.key, signedjson.sign, signedjson.types
        from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
        import mxfed.compat.canonicaljson as cj
        import mxfed.compat.signedjson.sign as ours
        assert canonicaljson is cj and signedjson.sign is ours, (canonicaljson, signedjson.sign)
        assert SignatureVerifyException is ours.SignatureVerifyException

        # A callback registered through `canonicaljson` reaches `signedjson`'s signing.
        class Opaque:
            def __init__(self, v):
                self.v = v
        canonicaljson.register_preserialisation_callback(Opaque, lambda o: o.v)
        key = signedjson.key.generate_signing_key("1")
        signed = sign_json({"content": Opaque({"a": 1})}, "s", key)
        assert canonicaljson.encode_canonical_json({"x": Opaque(2)}) == b'{"x":2}'
        try:
            verify_signed_json({"content": {"a": 2}, "signatures": signed["signatures"]}, "s",
                               signedjson.key.get_verify_key(key))
        except SignatureVerifyException:
            print("refused")
        verify_signed_json({"content": {"a": 1}, "signatures": signed["signatures"]}, "s",
                           signedjson.key.get_verify_key(key))
        print("ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", "ok"]


@pytest.mark.parametrize("original", ["canonicaljson", "signedjson.sign"])
def test_install_refuses_after_the_originals_were_imported(original: str) -> None:
    r = run(
        f"""
        import {original}
        import mxfed.compat
        try:
            mxfed.compat.install()
        except RuntimeError as e:
            print(e)
        import sys
        assert sys.modules["{original}"].__name__ == "{original}", "left as it was"
        """
    )
    assert r.returncode == 0, r.stderr
    assert "must run before" in r.stdout and original.split(".")[0] in r.stdout


def test_a_verify_key_off_the_curve_is_a_bad_signature() -> None:
    # 32 bytes PyNaCl accepts as a key but that decode to no point of the curve.
    bad = next(
        nacl.signing.VerifyKey(bytes([b]) + bytes(31))
        for b in range(2, 256)
        if _off_curve(bytes([b]) + bytes(31))
    )
    bad.alg, bad.version = "ed25519", "1"  # type: ignore[attr-defined]
    obj = {"a": 1, "signatures": {"d": {"ed25519:1": "A" * 86}}}
    errors = []
    for sign in (real_sign, our_sign):
        with pytest.raises(sign.SignatureVerifyException) as e:
            sign.verify_signed_json(obj, "d", bad)
        errors.append(str(e.value))
    assert errors[0] == errors[1]


def _off_curve(key: bytes) -> bool:
    """Whether the core refuses `key` as a point (the case the fast path must not let out)."""
    try:
        our_sign._core_verify_key(key)
    except ValueError:
        return True
    return False

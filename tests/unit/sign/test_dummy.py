"""ostree's test-only dummy engine: off by default, signature = key string, behind the one Verifier."""

from __future__ import annotations

import pytest

from bootree.errors import SignatureError, VerificationError
from bootree.sign import Verifier, add_dummy, detached, dummy


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dummy.ENV, "1")


def test_disabled_unless_the_environment_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dummy.ENV, raising=False)
    with pytest.raises(VerificationError, match="only for ostree testing"):
        dummy.sign("k")
    with pytest.raises(VerificationError):
        dummy.verify([b"k"], ["k"])
    monkeypatch.setenv(dummy.ENV, "yes")  # ostree accepts exactly "1"
    assert not dummy.enabled()


def test_signature_is_the_key_in_an_aay(enabled: None) -> None:
    meta = add_dummy(None, ["dummysign"])
    assert detached.signatures(detached.decode(meta), dummy.METADATA_KEY) == [b"dummysign"]
    meta = add_dummy(meta, ["second"])  # appended, as ostree sign appends
    assert detached.signatures(detached.decode(meta), dummy.METADATA_KEY) == [b"dummysign", b"second"]


def test_verifier_requires_a_matching_dummy_signature(enabled: None) -> None:
    meta = add_dummy(None, ["dummysign"])
    result = Verifier(dummy=("other", "dummysign")).check("commit x", b"data", meta, require_sign=True)
    assert result.valid_for("dummy")
    with pytest.raises(SignatureError) as e:
        Verifier(dummy=("somewrongkey",)).check("commit x", b"data", meta, require_sign=True)
    assert e.value.reason == "untrusted"
    with pytest.raises(SignatureError) as e:
        Verifier(dummy=("dummysign",)).check("commit x", b"data", None, require_sign=True)
    assert e.value.reason == "unsigned"
    with pytest.raises(SignatureError, match="no key is trusted"):
        Verifier().check("commit x", b"data", meta, require_sign=True)

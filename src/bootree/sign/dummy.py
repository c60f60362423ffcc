"""ostree's test-only ``dummy`` signature engine: the signature is the key string itself.

Layer: sign. libostree ships this engine (``ostree-sign-dummy.c``) so that its own tests can
exercise the signing and verification paths without cryptography: signing stores the "secret
key" string as the signature (``ostree.sign.dummy``, type ``aay``), and a signature verifies
when it equals the "public key" string. It proves nothing about who signed (anyone who has seen
a signature can make another), so, as in ostree, it refuses to work unless the environment
says ``OSTREE_DUMMY_SIGN_ENABLED=1``; bootree never uses it by default and never suggests it.
It exists so that scripts written for ostree's signing interface (its test suite among them)
run unchanged against bootree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bootree.errors import SignatureError, VerificationError
from bootree.sign.result import SignatureCheck

__all__ = ["ENV", "METADATA_KEY", "NAME", "enabled", "require_enabled", "sign", "verify", "verify_key"]

NAME = "dummy"
#: The detached-metadata key of dummy signatures (an ``aay``, as ed25519's).
METADATA_KEY = "ostree.sign.dummy"
#: The environment switch that ostree, too, requires before the engine signs or verifies.
ENV = "OSTREE_DUMMY_SIGN_ENABLED"


def enabled() -> bool:
    """Whether the environment enables the engine (``OSTREE_DUMMY_SIGN_ENABLED=1``)."""
    return os.environ.get(ENV) == "1"


def require_enabled() -> None:
    """Raise unless the engine is enabled.

    Raises:
        VerificationError: ostree's "dummy signature type is only for ostree testing".
    """
    if not enabled():
        raise VerificationError(
            "dummy signature type is only for ostree testing",
            hint=f"set {ENV}=1 to use it in a test; real signatures use ed25519 or GPG",
        )


def sign(key: str) -> bytes:
    """The dummy signature made with ``key``: its UTF-8 bytes, whatever is signed.

    Raises:
        VerificationError: the engine is not enabled.
    """
    require_enabled()
    return key.encode()


def verify(signatures: Sequence[bytes], trusted: Sequence[str]) -> list[SignatureCheck]:
    """One check per signature: valid when it equals one of the ``trusted`` key strings.

    A signature is compared up to its first NUL byte, as ostree compares C strings.

    Raises:
        VerificationError: the engine is not enabled.
    """
    require_enabled()
    keys = set(trusted)
    checks = []
    for sig in signatures:
        text = sig.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        if text in keys:
            checks.append(SignatureCheck(NAME, True, "good", text))
        else:
            checks.append(SignatureCheck(NAME, False, "untrusted", "no trusted key made this signature"))
    return checks


def verify_key(subject: str, signatures: Sequence[bytes], key: str) -> None:
    """Accept when one of ``signatures`` is ``key``'s dummy signature, with libostree's error
    texts otherwise (``static-delta verify`` and signed superblocks check one key this way).

    Raises:
        VerificationError: the engine is not enabled.
        SignatureError: none matches (or there is none).
    """
    require_enabled()
    if any(check.valid for check in verify(signatures, [key])):
        return
    if signatures:
        raise SignatureError(subject, "untrusted", f"signature: dummy: incorrect signatures found: {len(signatures)}")
    raise SignatureError(subject, "unsigned", "signature: dummy: no signatures")

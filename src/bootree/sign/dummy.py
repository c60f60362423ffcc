"""ostree's test-only ``dummy`` signature type, for running ostree's own test scripts.

Layer: sign. libostree ships an engine whose "signature" is the signing key's text and whose
check compares that text with the expected key; it refuses to work unless the environment has
``OSTREE_DUMMY_SIGN_ENABLED=1``. It proves nothing about the data and exists only so that
ostree's tests (``test-delta-sign.sh``) can exercise signed formats without real keys. bootree
keeps the same gate and the same error texts, which those tests grep for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bootree.errors import SignatureError

__all__ = ["METADATA_KEY", "enabled", "require_enabled", "sign", "verify"]

#: The key its signatures live under (``aay``), in detached metadata and signed superblocks.
METADATA_KEY = "ostree.sign.dummy"
_ENV = "OSTREE_DUMMY_SIGN_ENABLED"


def enabled() -> bool:
    """Whether the environment opts in (``OSTREE_DUMMY_SIGN_ENABLED=1``), as libostree requires."""
    return os.environ.get(_ENV) == "1"


def require_enabled(subject: str) -> None:
    """Refuse unless the dummy engine is enabled.

    Raises:
        SignatureError: the environment does not opt in.
    """
    if not enabled():
        raise SignatureError(subject, "untrusted", "dummy signature type is only for ostree testing")


def sign(key: str) -> bytes:
    """The dummy "signature" made with ``key``: the key's text (the data plays no part)."""
    return key.encode()


def verify(subject: str, signatures: Sequence[bytes], key: str) -> None:
    """Accept when one signature equals ``key``'s text, with libostree's error texts otherwise.

    Raises:
        SignatureError: dummy signatures are disabled, or none matches.
    """
    require_enabled(subject)
    if key.encode() in signatures:
        return
    if signatures:
        raise SignatureError(subject, "untrusted", f"signature: dummy: incorrect signatures found: {len(signatures)}")
    raise SignatureError(subject, "unsigned", "signature: dummy: no signatures")

"""Signing and checking a commit or summary against a set of trusted keys, over bytes.

Layer: sign. The pull builds a :class:`Verifier` from a remote's policy (which keys, which
engines are required) and calls :meth:`Verifier.check` on the exact bytes it received, before
it trusts or writes anything they lead to. The CLI's ``sign`` / ``gpg-sign`` use
:func:`add_ed25519` and :func:`add_gpg` to produce new detached metadata bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bootree.errors import FormatError, SignatureError
from bootree.sign import detached, dummy, ed25519, gpg
from bootree.sign.ed25519 import PublicKey, SecretKey
from bootree.sign.result import SignatureCheck, VerifyResult

__all__ = ["Verifier", "add_dummy", "add_ed25519", "add_gpg"]


def add_ed25519(data: bytes, meta: bytes | None, keys: Sequence[SecretKey]) -> bytes:
    """Detached metadata ``meta`` with an ed25519 signature of ``data`` by each of ``keys`` appended.

    Raises:
        FormatError: ``meta`` is malformed.
    """
    entries = detached.decode(meta)
    return detached.encode(detached.add_signatures(entries, ed25519.METADATA_KEY, [k.sign(data) for k in keys]))


def add_dummy(meta: bytes | None, keys: Sequence[str]) -> bytes:
    """Detached metadata ``meta`` with a dummy signature (:mod:`bootree.sign.dummy`) per key appended.

    Raises:
        FormatError: ``meta`` is malformed.
        VerificationError: the dummy engine is not enabled.
    """
    entries = detached.decode(meta)
    return detached.encode(detached.add_signatures(entries, dummy.METADATA_KEY, [dummy.sign(k) for k in keys]))


def add_gpg(data: bytes, meta: bytes | None, key_ids: Sequence[str], *, homedir: Path | None = None) -> bytes:
    """Detached metadata ``meta`` with a GPG signature of ``data`` by each key ID appended.

    Raises:
        FormatError: ``meta`` is malformed.
        SignatureError: gpg could not sign with a key.
    """
    entries = detached.decode(meta)
    sigs = [gpg.sign(data, k, homedir=homedir) for k in key_ids]
    return detached.encode(detached.add_signatures(entries, detached.GPG_KEY, sigs))


@dataclass
class Verifier:
    """Trusted keys of every engine, and the engines a policy requires.

    ``gpg``: a verifier over the trusted GPG keyrings (``None``: GPG signatures are not
    consulted). ``ed25519``: trusted public keys; ``revoked``: keys whose signatures never
    count, even if also trusted. ``dummy``: key strings of ostree's test-only engine
    (:mod:`bootree.sign.dummy`; consulted only when set, and then only if enabled).
    """

    gpg: gpg.GpgVerifier | None = None
    ed25519: tuple[PublicKey, ...] = ()
    revoked: tuple[PublicKey, ...] = ()
    dummy: tuple[str, ...] = ()
    _closed: bool = field(default=False, repr=False)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the GPG verifier's temporary home."""
        if self.gpg is not None:
            self.gpg.close()

    def check(
        self,
        subject: str,
        data: bytes,
        meta: bytes | None,
        *,
        require_gpg: bool = False,
        require_ed25519: bool = False,
        require_sign: bool = False,
    ) -> VerifyResult:
        """Check the signatures in detached metadata ``meta`` over ``data``; raise if a requirement fails.

        ``subject`` (``commit <csum>``, ``summary of <url>``) starts every error message.
        Engines not required are still reported when they have keys (for ``show``-style
        output), but never fail the check. ``require_sign`` is ostree's ``sign-verify``: a valid
        signature of any of its sign engines (ed25519, dummy) that has trusted keys.

        Raises:
            SignatureError: ``meta`` malformed (``reason="malformed"``), or a required engine
                without a valid signature (``unsigned``, ``untrusted``, ``revoked``, ``invalid``).
        """
        try:
            entries = detached.decode(meta)
            gpg_sigs = detached.signatures(entries, detached.GPG_KEY)
            ed_sigs = detached.signatures(entries, ed25519.METADATA_KEY)
            dummy_sigs = detached.signatures(entries, dummy.METADATA_KEY)
        except FormatError as e:
            # ostree reads such bytes as an empty dictionary, so it reports no signatures (in
            # its GPG or its sign-engine wording); the reason stays "malformed".
            found = "GPG verification enabled, but no signatures found" if require_gpg else "No signatures found"
            raise SignatureError(
                subject, "malformed", f"{found}: the detached signature metadata is corrupt ({e})"
            ) from e
        checks: list[SignatureCheck] = []
        if self.gpg is not None and (require_gpg or gpg_sigs):
            checks.extend(self.gpg.verify(data, gpg_sigs))
        elif require_gpg:
            raise SignatureError(subject, "untrusted", "GPG verification is required but no trusted GPG key is configured",
                                 hint="import the publisher's key with 'bootree remote gpg-import NAME -k KEYRING'")
        if self.ed25519 or self.revoked or require_ed25519:
            if require_ed25519 and not self.ed25519:
                raise SignatureError(subject, "untrusted", "signature verification is required but no ed25519 key is trusted",
                                     hint="set verification-ed25519-key or verification-ed25519-file for the remote")
            checks.extend(ed25519.verify(data, ed_sigs, self.ed25519, self.revoked))
        if self.dummy:
            checks.extend(dummy.verify(dummy_sigs, self.dummy))
        if require_sign and not (self.ed25519 or self.dummy):
            raise SignatureError(subject, "untrusted", "signature verification is required but no key is trusted",
                                 hint="set verification-ed25519-key or verification-ed25519-file for the remote")
        result = VerifyResult(subject, tuple(checks))
        if require_gpg:
            result.require("gpg")
        if require_ed25519:
            result.require("ed25519")
        if require_sign:
            result.require(*(e for e, keys in (("ed25519", self.ed25519), (dummy.NAME, self.dummy)) if keys))
        return result

"""Outcomes of signature checks, shared by the ed25519 and GPG engines.

Layer: sign. Plain records, so that the CLI can render ``show --gpg-verify``-style lines and the
pull can decide, without either knowing how a signature was checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootree.errors import SignatureError

__all__ = ["SignatureCheck", "VerifyResult"]


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """One signature and what became of it.

    ``status`` is ``good`` for a valid signature, else why not: ``untrusted`` (no trusted key
    made it), ``revoked``, ``expired`` (key or signature), ``bad`` (the key matches, the data
    does not), ``malformed``. ``key`` identifies the public key (base64 for ed25519, the
    fingerprint or key ID for GPG), or explains what is missing.
    """

    engine: str
    valid: bool
    status: str
    key: str
    #: Signature creation time (seconds since the epoch), when the engine reports it.
    timestamp: int | None = None
    #: The signer's user ID (GPG), if known.
    user: str | None = None
    #: The public-key algorithm (``EdDSA``, ``RSA``...), if known.
    algorithm: str | None = None
    #: The engine's own words for the outcome (gpg: ``Key expired``, ``Key revoked``...), if any.
    detail: str | None = None

    def describe(self) -> str:
        """One line, like ostree's ``show --gpg-verify`` summary of a signature."""
        if self.engine == "gpg":
            who = f' from "{self.user}"' if self.user else ""
            state = {"good": "Good signature", "bad": "BAD signature"}.get(self.status, f"{self.status} signature")
            return f"{state}{who} (key {self.key})"
        state = "good" if self.valid else self.status
        return f"ed25519 signature: {state} (key {self.key})"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Every signature found on one commit or summary, by every engine consulted."""

    subject: str
    checks: tuple[SignatureCheck, ...]

    def valid_for(self, engine: str) -> bool:
        """Whether at least one signature of ``engine`` is valid."""
        return any(c.valid and c.engine == engine for c in self.checks)

    def require(self, *engines: str) -> None:
        """Raise unless one of ``engines`` produced at least one valid signature.

        The reason is the most telling failure: a revoked key beats an untrusted one, which
        beats no signature at all.

        Raises:
            SignatureError: with ``reason`` ``unsigned``, ``revoked``, ``untrusted``,
                ``invalid`` or ``malformed``.
        """
        if any(self.valid_for(e) for e in engines):
            return
        mine = [c for c in self.checks if c.engine in engines]
        label = "/".join("GPG" if e == "gpg" else e for e in engines)
        if not mine:
            raise SignatureError(
                self.subject, "unsigned", f"no {label} signature", hint="sign it, or trust an unsigned remote explicitly"
            )
        for status, reason in (
            ("revoked", "revoked"),
            ("expired", "revoked"),
            ("bad", "invalid"),
            ("untrusted", "untrusted"),
            ("malformed", "malformed"),
        ):
            hit = next((c for c in mine if c.status == status), None)
            if hit is not None:
                words = f": {hit.detail}" if hit.detail else ""  # the engine's (gpg's, ostree's) words
                raise SignatureError(self.subject, reason, f"{label} signature: {status}{words} ({hit.key})")
        raise SignatureError(self.subject, "invalid", f"no valid {label} signature")

"""ed25519 signatures as ostree makes them (``ostree sign --sign-type=ed25519``).

Layer: sign (services). Pure over bytes: the caller reads key files and commit objects.

Formats (ostree-format.md §8): a signature is the 64-byte RFC 8032 pure Ed25519 signature
(libsodium's ``crypto_sign_detached``) over the exact bytes of the ``.commit`` file, the
``summary`` file or a plain delta superblock. Public keys are base64 of 32 bytes, secret keys
base64 of 64 bytes in libsodium's layout (the 32-byte seed, then the public key). Key files hold
one base64 key per line; ostree's trusted and revoked key files use the same layout.

Secret keys are wrapped in :class:`SecretKey`, whose ``repr`` shows only the public half, and
no error raised here quotes key text: a secret must never reach a log or an error message.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # cryptography costs ~50 ms to import: every pull loads this module, few sign
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bootree.errors import FormatError
from bootree.sign.result import SignatureCheck

__all__ = [
    "METADATA_KEY",
    "PUBLIC_KEY_SIZE",
    "SECRET_KEY_SIZE",
    "SIGNATURE_SIZE",
    "PublicKey",
    "SecretKey",
    "parse_public_keys",
    "parse_secret_keys",
    "verify",
]

#: The detached-metadata (and ``summary.sig``) key holding ``aay`` of signatures.
METADATA_KEY = "ostree.sign.ed25519"
PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 64
SIGNATURE_SIZE = 64

_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A trusted (or revoked) ed25519 public key: 32 raw bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_SIZE:
            raise FormatError(f"an ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(self.raw)}")

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        """Parse ostree's text form (base64 of 32 bytes).

        Raises:
            FormatError: not base64 of 32 bytes.
        """
        raw = _b64decode(text, "public key")
        if len(raw) != PUBLIC_KEY_SIZE:
            raise FormatError(f"an ed25519 public key is base64 of {PUBLIC_KEY_SIZE} bytes, not {len(raw)}")
        return cls(raw)

    @property
    def base64(self) -> str:
        """ostree's text form, as shown by ``ostree sign --verify`` and written to key files."""
        return base64.b64encode(self.raw).decode()

    def __str__(self) -> str:
        return self.base64

    def verifies(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature over ``data``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class SecretKey:
    """An ed25519 secret key in libsodium's 64-byte layout (seed ‖ public key).

    The bytes are excluded from ``repr`` and comparisons print nothing: only :attr:`public`
    may be shown.
    """

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != SECRET_KEY_SIZE:
            raise FormatError(f"an ed25519 secret key is {SECRET_KEY_SIZE} bytes")
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        derived = _private(self.raw[:32]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if derived != self.raw[32:]:
            # libsodium would sign with the seed and publish the wrong public half; refuse.
            raise FormatError("ed25519 secret key: its public half does not match its seed")

    @classmethod
    def generate(cls) -> SecretKey:
        """A new random key (``cryptography`` reads the OS's CSPRNG)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        key = Ed25519PrivateKey.generate()
        return cls.from_seed(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    @classmethod
    def from_seed(cls, seed: bytes) -> SecretKey:
        """The key of a 32-byte seed (as libsodium's ``crypto_sign_seed_keypair``)."""
        if len(seed) != 32:
            raise FormatError("an ed25519 seed is 32 bytes")
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pub = _private(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(seed + pub)

    @classmethod
    def from_base64(cls, text: str) -> SecretKey:
        """Parse ostree's text form (base64 of 64 bytes); errors never quote the text.

        Raises:
            FormatError: not base64 of a valid 64-byte secret key.
        """
        raw = _b64decode(text, "secret key")
        if len(raw) != SECRET_KEY_SIZE:
            raise FormatError(f"an ed25519 secret key is base64 of {SECRET_KEY_SIZE} bytes, not {len(raw)}")
        return cls(raw)

    @property
    def base64(self) -> str:
        """ostree's text form; for writing a key file, never for printing."""
        return base64.b64encode(self.raw).decode()

    @property
    def public(self) -> PublicKey:
        """The public half (bytes 32..63)."""
        return PublicKey(self.raw[32:])

    def sign(self, data: bytes) -> bytes:
        """The 64-byte detached signature over ``data`` (deterministic, RFC 8032)."""
        return _private(self.raw[:32]).sign(data)


def _private(seed: bytes) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        # Never echo the text: it may be a secret key.
        raise FormatError(f"ed25519 {what} is not valid base64") from e


def _key_lines(data: bytes) -> list[str]:
    """The key lines of a key file: one base64 key per line; blank lines and ``#`` comments skipped."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise FormatError("an ed25519 key file must be ASCII (one base64 key per line)") from e
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _parse_keys(data: bytes, parse: Callable[[str], _K]) -> list[_K]:
    out: list[_K] = []
    for n, line in enumerate(_key_lines(data), 1):
        try:
            out.append(parse(line))
        except FormatError as e:
            # The message names the line, never its text; no chained cause carries it either.
            raise FormatError(f"key {n}: {e}") from None
    return out


def parse_public_keys(data: bytes) -> list[PublicKey]:
    """Every public key of a key file (``verification-ed25519-file``, ``trusted.ed25519``, ``revoked.ed25519``).

    Raises:
        FormatError: a line that is not a base64 public key (its line number is given).
    """
    return _parse_keys(data, PublicKey.from_base64)


def parse_secret_keys(data: bytes) -> list[SecretKey]:
    """Every secret key of a key file (``ostree sign --keys-file``); errors never quote a key.

    Raises:
        FormatError: a line that is not a base64 secret key (its line number is given).
    """
    return _parse_keys(data, SecretKey.from_base64)


def verify(
    data: bytes,
    signatures: Sequence[bytes],
    trusted: Iterable[PublicKey],
    revoked: Iterable[PublicKey] = (),
) -> list[SignatureCheck]:
    """Check each signature against the trusted keys: one :class:`SignatureCheck` per signature.

    A signature is valid when a trusted key that is not revoked verifies it. One made by a
    revoked key is reported as such, even when the key is also listed as trusted (revocation
    wins, as in ostree, which skips revoked keys).
    """
    revoked_set = {k.raw for k in revoked}
    keys = list(dict.fromkeys(trusted))  # dedupe, keep order
    checks: list[SignatureCheck] = []
    for sig in signatures:
        if len(sig) != SIGNATURE_SIZE:
            checks.append(SignatureCheck("ed25519", False, "malformed", f"{len(sig)}-byte signature"))
            continue
        found: SignatureCheck | None = None
        for key in keys:
            if key.verifies(data, sig):
                if key.raw in revoked_set:
                    found = SignatureCheck("ed25519", False, "revoked", key.base64)
                    continue
                found = SignatureCheck("ed25519", True, "good", key.base64)
                break
        if found is None:
            for raw in revoked_set:
                if PublicKey(raw).verifies(data, sig):
                    found = SignatureCheck("ed25519", False, "revoked", PublicKey(raw).base64)
                    break
        checks.append(found or SignatureCheck("ed25519", False, "untrusted", "no trusted key made this signature"))
    return checks

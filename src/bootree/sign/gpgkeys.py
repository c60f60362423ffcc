"""The GPG keys of keyrings, as ``ostree remote gpg-list-keys`` describes them.

Layer: sign. ``gpg --show-keys --with-colons`` reads the keys (no GnuPG home is touched); each
key becomes a :class:`GpgKey` with its primary key, user IDs and subkeys, their creation and
expiry times and revocation state. For every user ID with an e-mail address the Web Key
Directory URLs are derived as libostree does (the z-base-32 SHA-1 of the lower-cased local
part; "advanced" and "direct" methods), so a user can see where an updated key would be found.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootree import _run
from bootree.sign.gpg import export_keys, gpg_program

__all__ = ["GpgKey", "GpgSubkey", "GpgUid", "list_keys", "wkd_urls", "zbase32"]

_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_TIMEOUT = 60


@dataclass(frozen=True, slots=True)
class GpgSubkey:
    """A primary key or a subkey."""

    fingerprint: str
    created: int
    expires: int = 0
    """Seconds since the epoch; 0: never."""
    revoked: bool = False
    expired: bool = False
    invalid: bool = False


@dataclass(frozen=True, slots=True)
class GpgUid:
    """A user ID and the Web Key Directory URLs of its address (``None`` without an address)."""

    uid: str
    revoked: bool = False
    invalid: bool = False
    advanced_url: str | None = None
    direct_url: str | None = None


@dataclass(frozen=True, slots=True)
class GpgKey:
    """One public key: its primary key, user IDs and subkeys, in keyring order."""

    primary: GpgSubkey
    uids: tuple[GpgUid, ...] = ()
    subkeys: tuple[GpgSubkey, ...] = field(default_factory=tuple)


def zbase32(data: bytes) -> str:
    """z-base-32 (RFC 6189), as the Web Key Directory encodes its hashes."""
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    pad = (-nbits) % 5
    bits <<= pad
    n = (nbits + pad) // 5
    return "".join(_ZBASE32[(bits >> (5 * (n - 1 - i))) & 31] for i in range(n))


def wkd_urls(uid: str) -> tuple[str | None, str | None]:
    """The advanced and direct Web Key Directory URLs of a user ID's address, if it has one."""
    m = re.search(r"<([^<>@\s]+)@([^<>@\s]+)>", uid) or re.fullmatch(r"\s*([^<>@\s]+)@([^<>@\s]+)\s*", uid)
    if m is None:
        return None, None
    local, domain = m.group(1), m.group(2).lower()
    digest = zbase32(hashlib.sha1(local.lower().encode()).digest())
    return (f"https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{digest}?l={local}",
            f"https://{domain}/.well-known/openpgpkey/hu/{digest}?l={local}")


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def list_keys(keyrings: Sequence[Path]) -> list[GpgKey]:
    """Every key of ``keyrings`` (binary or armored files), in order.

    Raises:
        VerificationError: a keyring gpg cannot read.
    """
    files = [k for k in keyrings if k.is_file()]
    if not files:
        return []
    data = export_keys(files)
    proc = _run.run([gpg_program(), "--batch", "--no-tty", "--with-colons", "--fixed-list-mode", "--show-keys"],
                    input=data, timeout=_TIMEOUT, check=False)
    keys: list[GpgKey] = []
    primary: GpgSubkey | None = None
    uids: list[GpgUid] = []
    subs: list[GpgSubkey] = []
    pending: list[str] | None = None  # the pub/sub record waiting for its fpr

    def flush() -> None:
        if primary is not None:
            keys.append(GpgKey(primary, tuple(uids), tuple(subs)))

    for line in proc.stdout.decode(errors="replace").splitlines():
        f = line.split(":")
        kind = f[0]
        if kind in ("pub", "sub"):
            if kind == "pub":
                flush()
                primary, uids, subs = None, [], []
            pending = f
        elif kind == "fpr" and pending is not None and len(f) > 9:
            valid = pending[1] if len(pending) > 1 else ""
            key = GpgSubkey(f[9], _int(pending[5]), _int(pending[6]), valid == "r", valid == "e", valid == "i")
            if pending[0] == "pub":
                primary = key
            else:
                subs.append(key)
            pending = None
        elif kind == "uid" and len(f) > 9:
            text = _unescape(f[9])
            advanced, direct = wkd_urls(text)
            uids.append(GpgUid(text, f[1] == "r", f[1] == "i", advanced, direct))
    flush()
    return keys

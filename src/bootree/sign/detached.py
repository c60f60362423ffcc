"""Signatures inside detached metadata (``.commitmeta``) and ``summary.sig``, both ``a{sv}``.

Layer: sign. Both files are a GVariant dictionary whose signature keys (``ostree.gpgsigs``,
``ostree.sign.ed25519``) map to ``aay``, one element per signature. Adding a signature keeps
every other key and every earlier signature (``ostree gpg-sign`` and ``ostree sign`` append),
so a commit signed by two keys during a key rotation carries both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from bootree.errors import FormatError
from bootree.format import gvariant
from bootree.format.gvariant import Variant

__all__ = ["GPG_KEY", "Metadata", "add_signatures", "decode", "encode", "remove_signatures", "signatures"]

#: The key of GPG signatures (binary OpenPGP detached signatures).
GPG_KEY = "ostree.gpgsigs"

Metadata = list[tuple[str, Variant]]


def decode(data: bytes | None) -> Metadata:
    """The entries of detached metadata (``None``, a missing file, is empty).

    Raises:
        FormatError: malformed (e.g. truncated) data.
    """
    if not data:
        return []
    entries = gvariant.decode_vardict(data)
    return [(str(k), v) for k, v in entries]


def encode(entries: Metadata) -> bytes:
    """Normal-form ``a{sv}`` bytes of ``entries`` (order kept)."""
    return gvariant.encode("a{sv}", list(entries))


def signatures(entries: Metadata, key: str) -> list[bytes]:
    """The signatures under ``key`` (empty if absent).

    Raises:
        FormatError: the key holds something other than ``aay``.
    """
    for k, v in entries:
        if k == key:
            if v.type != "aay":
                raise FormatError(f"detached metadata {key} is {v.type!r}, not 'aay'")
            return [bytes(s) for s in cast("list[bytes]", v.value)]
    return []


def add_signatures(entries: Metadata, key: str, new: Sequence[bytes]) -> Metadata:
    """``entries`` with ``new`` appended under ``key``; signatures already there are not repeated."""
    old = signatures(entries, key)
    merged = old + [s for s in new if s not in old]
    out = [(k, v) for k, v in entries if k != key]
    pos = next((i for i, (k, _v) in enumerate(entries) if k == key), len(out))
    out.insert(pos, (key, Variant("aay", merged)))
    return out


def remove_signatures(entries: Metadata, key: str, drop: Callable[[bytes], bool]) -> tuple[Metadata, int]:
    """``entries`` without the signatures under ``key`` for which ``drop`` is true, and how many went.

    The key itself disappears when no signature is left.
    """
    old = signatures(entries, key)
    kept = [s for s in old if not drop(s)]
    removed = len(old) - len(kept)
    out: Metadata = []
    for k, v in entries:
        if k != key:
            out.append((k, v))
        elif kept:
            out.append((k, Variant("aay", kept)))
    return out, removed

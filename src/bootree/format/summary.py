"""The repository summary file ``(a(s(taya{sv}))a{sv})`` and its signature file, to and from bytes.

Layer: format (pure). A remote's ``summary`` lists its refs with each commit's checksum and size,
so a client resolves refs with one request instead of one per ref, and carries repository-wide
metadata (mode, static-delta digests). We must read what ostree writes and write what ostree
reads, byte for byte: ostree signs the exact summary bytes (``summary.sig``), and a mirror
copies them verbatim.

Encoding facts (checked against ostree 2022.7): refs are sorted by name (strcmp); the per-ref
commit size is little-endian (unlike most ostree integers); ``ostree.commit.timestamp`` and
``ostree.summary.last-modified`` are big-endian; the C writer emits the metadata keys in the
order ``mode, last-modified, tombstone-commits, static-deltas, collection-map, indexed-deltas,
collection-id`` followed by user keys (the order of a GVariantDict holding those keys; extra user
keys change it in ostree, which bootree does not reproduce), and the per-ref keys as ``version, timestamp``. Unknown keys are kept verbatim on read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from bootree.errors import FormatError
from bootree.format import gvariant
from bootree.format.checksum import Checksum, from_raw, to_raw
from bootree.format.gvariant import Variant, vardict_get
from bootree.format.objects import Commit, bswap64

__all__ = [
    "SUMMARY_EXPIRES_KEY",
    "SUMMARY_SIG_TYPE",
    "SUMMARY_TYPE",
    "Summary",
    "SummaryRef",
    "commit_ref_metadata",
    "decode_summary_sig",
]

SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"
#: bootree's summary expiry (``t``, big-endian seconds since the epoch; ostree ignores it): a
#: client refuses the summary after that time, so a frozen mirror is noticed.
SUMMARY_EXPIRES_KEY = "bootree.summary.expires"
SUMMARY_SIG_TYPE = "a{sv}"
#: Refs of collections other than the main one: ``{collection ID: refs as in the main list}``.
COLLECTION_MAP_KEY = "ostree.summary.collection-map"
COLLECTION_MAP_TYPE = "a{sa(s(taya{sv}))}"

Metadata = tuple[tuple[str, Variant], ...]




@dataclass(frozen=True, slots=True)
class SummaryRef:
    """One ref of a summary: its commit, the commit object's size, and per-ref metadata."""

    name: str
    commit: Checksum
    commit_size: int
    metadata: Metadata = ()

    def get(self, key: str, default: object = None) -> object:
        """The unboxed value of metadata ``key``, or ``default``."""
        return vardict_get(self.metadata, key, default)

    @property
    def timestamp(self) -> int | None:
        """``ostree.commit.timestamp`` (seconds since the epoch), if present."""
        v = self.get("ostree.commit.timestamp")
        return bswap64(v) if isinstance(v, int) else None

    @property
    def version(self) -> str | None:
        """``ostree.commit.version``, if present."""
        v = self.get("ostree.commit.version")
        return v if isinstance(v, str) else None


@dataclass(frozen=True, slots=True)
class Summary:
    """A parsed summary; ``to_bytes(from_bytes(b)) == b`` for every summary ostree writes."""

    refs: tuple[SummaryRef, ...] = ()
    metadata: Metadata = ()

    def __post_init__(self) -> None:
        names = [r.name.encode() for r in self.refs]
        if names != sorted(names) or len(set(names)) != len(names):
            raise FormatError("summary refs are not sorted by name or contain duplicates")

    # --- codec --------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize in GVariant normal form."""
        return gvariant.encode(
            SUMMARY_TYPE,
            (
                [(r.name, (r.commit_size, to_raw(r.commit), list(r.metadata))) for r in self.refs],
                list(self.metadata),
            ),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Summary:
        """Parse summary bytes.

        Raises:
            FormatError: for malformed data, unsorted refs or bad checksums.
        """
        refs_raw, meta = cast(
            "tuple[list[tuple[str, tuple[int, bytes, gvariant.VarDict]]], gvariant.VarDict]",
            gvariant.decode(SUMMARY_TYPE, data),
        )
        refs = []
        for name, (size, csum, rmeta) in refs_raw:
            refs.append(SummaryRef(name, from_raw(csum), size, tuple(rmeta)))
        return cls(tuple(refs), tuple(meta))

    # --- queries ------------------------------------------------------------------------------

    def ref(self, name: str) -> SummaryRef | None:
        """The entry for ref ``name``, if listed."""
        for r in self.refs:
            if r.name == name:
                return r
        return None

    def get(self, key: str, default: object = None) -> object:
        """The unboxed value of summary metadata ``key``, or ``default``."""
        return vardict_get(self.metadata, key, default)

    @property
    def mode(self) -> str | None:
        """The remote repository's mode (``ostree.summary.mode``)."""
        v = self.get("ostree.summary.mode")
        return v if isinstance(v, str) else None

    @property
    def last_modified(self) -> int | None:
        """``ostree.summary.last-modified`` in seconds since the epoch."""
        v = self.get("ostree.summary.last-modified")
        return bswap64(v) if isinstance(v, int) else None

    @property
    def collection_id(self) -> str | None:
        """The collection of the main refs list (``ostree.summary.collection-id``), if any."""
        v = self.get("ostree.summary.collection-id")
        return v if isinstance(v, str) else None

    @property
    def collection_map(self) -> dict[str, tuple[SummaryRef, ...]]:
        """Refs of other collections (``ostree.summary.collection-map``), by collection ID."""
        for key, value in self.metadata:
            if key == COLLECTION_MAP_KEY and value.type == COLLECTION_MAP_TYPE:
                collections: Any = value.value  # checked by its type string
                return {
                    cid: tuple(SummaryRef(n, from_raw(c), size, tuple(m)) for n, (size, c, m) in entries)
                    for cid, entries in collections
                }
        return {}

    @property
    def static_deltas(self) -> dict[str, bytes]:
        """Delta name (``FROM-TO`` or ``TO``, hex) to the SHA-256 of its superblock."""
        v = self.get("ostree.static-deltas")
        out: dict[str, bytes] = {}
        if isinstance(v, list):
            for name, digest in v:
                if isinstance(digest, Variant) and isinstance(digest.value, bytes):
                    out[name] = digest.value
        return out

    # --- building -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        refs: Mapping[str, tuple[Checksum, bytes]],
        *,
        mode: str,
        last_modified: int,
        tombstone_commits: bool = False,
        deltas: Mapping[str, bytes] | None = None,
        extra_metadata: Iterable[tuple[str, Variant]] = (),
        collection_id: str | None = None,
        collection_map: Mapping[str, Mapping[str, tuple[Checksum, bytes]]] | None = None,
    ) -> Summary:
        """The summary ostree's ``summary -u`` would write.

        ``refs`` maps each ref to its commit checksum and the commit object's bytes (for the
        size and the per-ref metadata). ``deltas`` maps delta names to superblock digests.
        ``collection_id`` is the collection of ``refs``; ``collection_map`` holds the refs of
        other collections (mirrors, remotes with a collection ID), in the same shape.
        """
        entries = _ref_entries(refs)
        meta: list[tuple[str, Variant]] = [
            ("ostree.summary.mode", Variant("s", mode)),
            ("ostree.summary.last-modified", Variant("t", bswap64(last_modified))),
            ("ostree.summary.tombstone-commits", Variant("b", tombstone_commits)),
        ]
        if deltas:
            meta.append(
                (
                    "ostree.static-deltas",
                    Variant("a{sv}", [(n, Variant("ay", deltas[n])) for n in sorted(deltas)]),
                )
            )
        others = {cid: m for cid, m in (collection_map or {}).items() if m}
        if others:
            value = [
                (cid, [(r.name, (r.commit_size, to_raw(r.commit), list(r.metadata))) for r in _ref_entries(others[cid])])
                for cid in sorted(others, key=lambda c: c.encode())
            ]
            meta.append((COLLECTION_MAP_KEY, Variant(COLLECTION_MAP_TYPE, value)))
        meta.append(("ostree.summary.indexed-deltas", Variant("b", True)))
        if collection_id is not None:
            meta.append(("ostree.summary.collection-id", Variant("s", collection_id)))
        meta.extend(extra_metadata)
        return cls(tuple(entries), tuple(meta))


def _ref_entries(refs: Mapping[str, tuple[Checksum, bytes]]) -> list[SummaryRef]:
    """Summary entries for refs and their commits' bytes, sorted by name (strcmp)."""
    entries = []
    for name in sorted(refs, key=lambda n: n.encode()):
        csum, commit_bytes = refs[name]
        commit = Commit.from_bytes(commit_bytes)
        entries.append(SummaryRef(name, csum, len(commit_bytes), commit_ref_metadata(commit)))
    return entries


def commit_ref_metadata(commit: Commit) -> Metadata:
    """Per-ref summary metadata for a commit: its version (if any) and timestamp (big-endian)."""
    out: list[tuple[str, Variant]] = []
    if commit.version is not None:
        out.append(("ostree.commit.version", Variant("s", commit.version)))
    out.append(("ostree.commit.timestamp", Variant("t", bswap64(commit.timestamp))))
    return tuple(out)


def decode_summary_sig(data: bytes) -> dict[str, list[bytes]]:
    """Signatures in a ``summary.sig`` (``a{sv}``): key (``ostree.gpgsigs``, ...) to signature list.

    Raises:
        FormatError: for malformed data.
    """
    out: dict[str, list[bytes]] = {}
    for key, value in gvariant.decode_vardict(data):
        if isinstance(value, Variant) and value.type == "aay":
            out[key] = list(cast("list[bytes]", value.value))
    return out


def superblock_digest(data: bytes) -> bytes:
    """The digest a summary or delta index records for a static-delta superblock file."""
    return hashlib.sha256(data).digest()

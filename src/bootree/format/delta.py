"""Static deltas as libostree writes them: names and paths, the superblock, part files, indexes.

Layer: format (bytes in, values out; no files, no network). A static delta moves a commit's new
objects as a few large files instead of thousands of small ones: a *superblock* (which parts and
fallback objects make up the delta, the ``to`` commit embedded) and numbered *part* files, each a
(usually xz-compressed) payload blob with an operation stream that cuts objects out of it or
patches old objects (``bootree.format.deltaops``). ostree must read what we write and we must
read what it writes, so every byte follows libostree 2022.7:

* superblock ``(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))``: metadata (user keys,
  then ``ostree.endianness``, inline parts, the ``to`` commit's detached metadata), generation
  time (big-endian), ``from`` (empty for a scratch delta), ``to``, the ``to`` commit object,
  an always-empty dependency list, the part entries and the fallback objects;
* part entries and fallback sizes are in the delta's endianness (``ostree.endianness``, ``l`` or
  ``B``), the generation timestamp always big-endian, part mode tables big-endian;
* a part file is ``(yay)`` on disk: one compression byte (``0`` none, ``x`` xz) and the
  (compressed) ``(a(uuu)aa(ayay)ayay)``: modes, xattr sets, payload, operations.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from bootree.errors import DeltaFormatError, FormatError, GVariantError, InvalidChecksum
from bootree.format import gvariant
from bootree.format.checksum import Checksum, from_raw, to_raw
from bootree.format.deltapart import (
    PART_PAYLOAD_TYPE,
    Compression,
    PartPayload,
    PartTables,
    decode_part,
    encode_part,
    encode_part_chunks,
    part_digest,
    xz_dict_size,
)
from bootree.format.gvariant import Variant, vardict_get
from bootree.format.objects import COMMIT_TYPE, ObjectType, bswap32, bswap64

__all__ = [
    "DELTA_INDEX_TYPE",
    "PART_PAYLOAD_TYPE",
    "SUPERBLOCK_TYPE",
    "Compression",
    "DeltaName",
    "FallbackEntry",
    "PartEntry",
    "PartPayload",
    "PartTables",
    "SignedSuperblock",
    "Superblock",
    "checksum_from_b64",
    "checksum_to_b64",
    "decode_delta_index",
    "decode_part",
    "encode_delta_index",
    "encode_part",
    "encode_part_chunks",
    "part_digest",
    "xz_dict_size",
]

SUPERBLOCK_TYPE = f"(a{{sv}}tayay{COMMIT_TYPE}aya(uayttay)a(yaytt))"
DELTA_INDEX_TYPE = "a{sv}"
SIGNED_SUPERBLOCK_TYPE = "(taya{sv})"

#: What :data:`SUPERBLOCK_TYPE` decodes to: metadata, timestamp, from, to, the commit, dependencies
#: (unused), parts ``(version, checksum, size, usize, objects)`` and fallbacks.
_SuperblockValue: TypeAlias = (
    "tuple[gvariant.VarDict, int, bytes, bytes, gvariant.GValue, bytes, list[tuple[int, bytes, int, int, bytes]], list[tuple[int, bytes, int, int]]]"
)
#: ``OSTSGNDT`` read as a big-endian u64: the magic of a signed superblock file.
SIGNED_SUPERBLOCK_MAGIC = 0x4F535453474E4454
#: ``ostree.endianness`` values.
LITTLE_ENDIAN = ord("l")
BIG_ENDIAN = ord("B")
#: The only part format version libostree knows.
PART_VERSION = 0
#: One object record in a part's object list: type byte and raw checksum.
OBJECT_RECORD_SIZE = 33
#: Where bootree's own delta format lives in a repository (ostree only reads ``deltas/``), and
#: the summary key listing those deltas (name -> superblock SHA-256), which ostree ignores.
BOOTREE_DELTAS_ROOT = "bootree-deltas"
BOOTREE_SUMMARY_KEY = "bootree.static-deltas"
#: bootree-format superblock key (``ay``: raw checksums, at most :data:`MAX_PREFETCH_HINTS`): old
#: objects the first part reads decompressed, so a client can start decompressing them (an
#: old initramfs: a third of a second) while it still decodes that part. A hint only.
BOOTREE_PREFETCH_KEY = "bootree.prefetch-decompressed"
MAX_PREFETCH_HINTS = 16

Metadata = tuple[tuple[str, Variant], ...]
_Swap = Callable[[int], int]
ObjectRef = tuple[ObjectType, Checksum]


# --- names and paths ------------------------------------------------------------------------


def checksum_to_b64(csum: Checksum) -> str:
    """ostree's modified base64 of a checksum (standard base64, ``/`` -> ``_``, no ``=``)."""
    return base64.b64encode(to_raw(csum)).decode("ascii").rstrip("=").replace("/", "_")


def checksum_from_b64(text: str) -> Checksum:
    """The checksum of a 43-character modified base64 string.

    Raises:
        InvalidChecksum: if ``text`` is not the modified base64 of 32 bytes.
    """
    if len(text) != 43:
        raise InvalidChecksum(f"invalid modified base64 checksum {text!r}")
    try:
        raw = base64.b64decode(text.replace("_", "/") + "=", validate=True)
    except ValueError as exc:
        raise InvalidChecksum(f"invalid modified base64 checksum {text!r}") from exc
    return from_raw(raw)


@dataclass(frozen=True, slots=True)
class DeltaName:
    """A delta's identity: ``from`` (``None`` for a scratch ``--empty`` delta) and ``to``."""

    from_commit: Checksum | None
    to_commit: Checksum

    def __str__(self) -> str:
        """The hex name ostree lists and indexes: ``FROM-TO`` or ``TO``."""
        return f"{self.from_commit}-{self.to_commit}" if self.from_commit else self.to_commit

    @classmethod
    def parse(cls, text: str) -> DeltaName:
        """Parse a hex ``FROM-TO`` or ``TO`` name.

        Raises:
            InvalidChecksum: if either half is not a full checksum.
        """
        from bootree.format.checksum import parse_checksum

        frm, sep, to = text.partition("-")
        if sep:
            return cls(parse_checksum(frm), parse_checksum(to))
        return cls(None, parse_checksum(frm))

    @property
    def relpath(self) -> str:
        """The delta's directory in a repository: ``deltas/XX/YYY…[-ZZZ…]``."""
        to = checksum_to_b64(self.to_commit)
        if self.from_commit is None:
            return f"deltas/{to[:2]}/{to[2:]}"
        frm = checksum_to_b64(self.from_commit)
        return f"deltas/{frm[:2]}/{frm[2:]}-{to}"

    @classmethod
    def from_relpath(cls, prefix: str, rest: str) -> DeltaName:
        """The name of the delta stored in ``deltas/<prefix>/<rest>``.

        Raises:
            InvalidChecksum: if the directory names are not modified base64 checksums.
        """
        frm, sep, to = rest.partition("-")
        if sep:
            return cls(checksum_from_b64(prefix + frm), checksum_from_b64(to))
        return cls(None, checksum_from_b64(prefix + rest))

    def part_relpath(self, index: int) -> str:
        """Path of part ``index`` (also its key in the superblock when inline)."""
        return f"{self.relpath}/{index}"

    @property
    def superblock_relpath(self) -> str:
        """Path of the superblock file."""
        return f"{self.relpath}/superblock"

    @property
    def commitmeta_key(self) -> str:
        """Superblock metadata key carrying the ``to`` commit's detached metadata."""
        return f"{self.relpath}/commitmeta"


def delta_index_relpath(to: Checksum) -> str:
    """Path of the index of every delta ending at ``to``: ``delta-indexes/XX/YYY….index``."""
    b64 = checksum_to_b64(to)
    return f"delta-indexes/{b64[:2]}/{b64[2:]}.index"


def encode_delta_index(deltas: dict[str, bytes]) -> bytes:
    """A delta index file: ``{"ostree.static-deltas": {name: <ay superblock sha256>}}``."""
    inner = [(name, Variant("ay", deltas[name])) for name in sorted(deltas)]
    return gvariant.encode(DELTA_INDEX_TYPE, [("ostree.static-deltas", Variant("a{sv}", inner))])


def decode_delta_index(data: bytes) -> dict[str, bytes]:
    """Delta name to superblock digest, from a delta index file.

    Raises:
        DeltaFormatError: for malformed data.
    """
    try:
        entries = gvariant.decode_vardict(data)
    except GVariantError as exc:
        raise DeltaFormatError(f"malformed delta index: {exc}") from exc
    out: dict[str, bytes] = {}
    inner = vardict_get(entries, "ostree.static-deltas", [])
    if not isinstance(inner, list):
        raise DeltaFormatError("delta index: ostree.static-deltas is not a dictionary")
    for name, digest in inner:
        if isinstance(digest, Variant) and isinstance(digest.value, bytes) and len(digest.value) == 32:
            out[name] = digest.value
    return out


# --- superblock -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One part as the superblock describes it: its digest, sizes and the objects it makes."""

    checksum: bytes  # sha256 of the part file (compression byte included)
    size: int  # size of the part file
    uncompressed_size: int  # total size of the objects it produces
    objects: tuple[ObjectRef, ...]
    version: int = PART_VERSION

    def __post_init__(self) -> None:
        if len(self.checksum) != 32:
            raise DeltaFormatError("part checksum is not 32 bytes")


@dataclass(frozen=True, slots=True)
class FallbackEntry:
    """An object the client fetches whole (``objects/…``) instead of from a part."""

    otype: ObjectType
    checksum: Checksum
    compressed_size: int
    uncompressed_size: int


@dataclass(frozen=True, slots=True)
class Superblock:
    """A parsed superblock. ``timestamp`` is seconds since the epoch (stored big-endian)."""

    to_commit: Checksum
    commit: bytes  # the ``to`` commit object, byte for byte
    parts: tuple[PartEntry, ...] = ()
    fallbacks: tuple[FallbackEntry, ...] = ()
    from_commit: Checksum | None = None
    timestamp: int = 0
    metadata: Metadata = ()  # every key, in file order (endianness and inline parts included)
    endianness: int = LITTLE_ENDIAN
    #: How :attr:`endianness` was found: ``key`` (``ostree.endianness``), ``heuristic`` (a legacy
    #: delta without the key whose sizes read byte-swapped), ``invalid`` (no key, nothing
    #: looked swapped: native order assumed, as libostree assumes it).
    endianness_source: str = "key"

    @property
    def name(self) -> DeltaName:
        """The delta's name."""
        return DeltaName(self.from_commit, self.to_commit)

    def get(self, key: str, default: object = None) -> object:
        """The unboxed value of metadata ``key``, or ``default``."""
        return vardict_get(self.metadata, key, default)

    def inline_part(self, index: int) -> bytes | None:
        """The bytes of part ``index`` if the delta carries it inline (``--inline``)."""
        value = self.get(self.name.part_relpath(index))
        if isinstance(value, tuple) and len(value) == 2:
            comp, data = value
            return bytes([comp]) + bytes(data)
        return None

    @property
    def commitmeta(self) -> bytes | None:
        """The ``to`` commit's detached metadata (``a{sv}`` bytes), if the delta carries it."""
        for key, value in self.metadata:
            if key == self.name.commitmeta_key and value.type == "a{sv}":
                return gvariant.encode("a{sv}", value.value)
        return None

    @property
    def total_size(self) -> int:
        """Bytes a client downloads: every part file plus every fallback object."""
        return sum(p.size for p in self.parts) + sum(f.compressed_size for f in self.fallbacks)

    @classmethod
    def build(
        cls,
        *,
        to_commit: Checksum,
        commit: bytes,
        parts: Sequence[PartEntry],
        fallbacks: Sequence[FallbackEntry] = (),
        from_commit: Checksum | None = None,
        timestamp: int,
        user_metadata: Iterable[tuple[str, Variant]] = (),
        inline_parts: Sequence[bytes] = (),
        commitmeta: bytes | None = None,
        endianness: int = LITTLE_ENDIAN,
    ) -> Superblock:
        """The superblock ``ostree static-delta generate`` writes, metadata keys in its order.

        ``inline_parts`` are the part files themselves (``--inline``), stored under their paths.
        """
        name = DeltaName(from_commit, to_commit)
        meta: list[tuple[str, Variant]] = list(user_metadata)
        meta.append(("ostree.endianness", Variant("y", endianness)))
        for i, part in enumerate(inline_parts):
            meta.append((name.part_relpath(i), Variant("(yay)", (part[0], part[1:]))))
        if commitmeta is not None:
            meta.append((name.commitmeta_key, Variant("a{sv}", gvariant.decode_vardict(commitmeta))))
        return cls(to_commit, commit, tuple(parts), tuple(fallbacks), from_commit, timestamp, tuple(meta), endianness)

    def to_bytes(self) -> bytes:
        """Serialize in GVariant normal form."""
        swap32, swap64 = _swappers(self.endianness)
        parts = [
            (
                swap32(p.version),
                p.checksum,
                swap64(p.size),
                swap64(p.uncompressed_size),
                b"".join(bytes([t.number]) + to_raw(c) for t, c in p.objects),
            )
            for p in self.parts
        ]
        fallbacks = [
            (f.otype.number, to_raw(f.checksum), swap64(f.compressed_size), swap64(f.uncompressed_size))
            for f in self.fallbacks
        ]
        try:
            commit_value = gvariant.decode(COMMIT_TYPE, self.commit)
        except GVariantError as exc:
            raise DeltaFormatError(f"superblock commit is not a commit: {exc}") from exc
        return gvariant.encode(
            SUPERBLOCK_TYPE,
            (
                list(self.metadata),
                bswap64(self.timestamp),
                to_raw(self.from_commit) if self.from_commit else b"",
                to_raw(self.to_commit),
                commit_value,
                b"",
                parts,
                fallbacks,
            ),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Superblock:
        """Parse a superblock file (a signed one is unwrapped; its signatures are not checked here).

        Raises:
            DeltaFormatError: for malformed data, bad checksums, or an object list that is not a
                whole number of records.
        """
        data = unwrap_signed_superblock(data)
        try:
            meta, ts, frm, to, commit_value, _deps, parts_raw, fallbacks_raw = cast(_SuperblockValue, gvariant.decode(SUPERBLOCK_TYPE, data))
        except FormatError as exc:
            raise DeltaFormatError(f"malformed static-delta superblock: {exc}") from exc
        return cls.from_value(meta, ts, frm, to, commit_value, parts_raw, fallbacks_raw)

    @classmethod
    def from_value(
        cls,
        meta: gvariant.VarDict,
        ts: int,
        frm: bytes,
        to: bytes,
        commit_value: gvariant.GValue,
        parts_raw: list[tuple[int, bytes, int, int, bytes]],
        fallbacks_raw: list[tuple[int, bytes, int, int]],
    ) -> Superblock:
        """A superblock from its decoded members (:meth:`from_bytes`, and
        :mod:`bootree.format.deltascan`, which leaves inline parts out of ``meta``).

        Raises:
            DeltaFormatError: for bad checksums, an unknown endianness or a malformed object list.
        """
        try:
            endianness, source = _endianness(meta, parts_raw)
            swap32, swap64 = _swappers(endianness)
            parts = []
            for version, csum, size, usize, objs in parts_raw:
                parts.append(PartEntry(csum, swap64(size), swap64(usize), _parse_objects(objs), swap32(version)))
            fallbacks = [
                FallbackEntry(ObjectType.from_number(t), from_raw(c), swap64(cs), swap64(us))
                for t, c, cs, us in fallbacks_raw
            ]
            return cls(
                from_raw(to),
                gvariant.encode(COMMIT_TYPE, commit_value),
                tuple(parts),
                tuple(fallbacks),
                from_raw(frm) if frm else None,
                bswap64(ts),
                tuple(meta),
                endianness,
                source,
            )
        except DeltaFormatError:
            raise
        except FormatError as exc:
            raise DeltaFormatError(f"malformed static-delta superblock: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SignedSuperblock:
    """A signed superblock file: ``(taya{sv})``, the magic ``OSTSGNDT`` (big-endian), the plain
    superblock's bytes and the signatures over exactly those bytes, one ``a{sv}`` key per
    engine (``ostree.sign.ed25519`` → ``aay``), as ``ostree static-delta generate --sign`` writes.
    """

    superblock: bytes
    signatures: Metadata = ()

    def to_bytes(self) -> bytes:
        """Serialize in GVariant normal form."""
        return gvariant.encode(
            SIGNED_SUPERBLOCK_TYPE, (bswap64(SIGNED_SUPERBLOCK_MAGIC), self.superblock, list(self.signatures))
        )

    @property
    def engines(self) -> tuple[str, ...]:
        """The signature engines present (``ed25519``...), as ``ostree.sign.<engine>`` keys name them."""
        return tuple(k.removeprefix("ostree.sign.") for k, _v in self.signatures if k.startswith("ostree.sign."))

    def signatures_of(self, key: str) -> list[bytes]:
        """The signatures stored under ``key`` (empty if absent or not ``aay``)."""
        for k, v in self.signatures:
            if k == key and v.type == "aay":
                return [bytes(s) for s in cast("list[bytes]", v.value)]
        return []

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedSuperblock | None:
        """The signed superblock in ``data``, or ``None`` when ``data`` is a plain superblock.

        Raises:
            DeltaFormatError: the magic is there but the container is malformed.
        """
        if len(data) < 16 or int.from_bytes(data[:8], "big") != SIGNED_SUPERBLOCK_MAGIC:
            return None
        try:
            _magic, inner, sigs = cast("tuple[int, bytes, gvariant.VarDict]", gvariant.decode(SIGNED_SUPERBLOCK_TYPE, data))
        except GVariantError as exc:
            raise DeltaFormatError(f"malformed signed static-delta superblock: {exc}") from exc
        return cls(bytes(inner), tuple((str(k), v) for k, v in sigs))


def unwrap_signed_superblock(data: bytes) -> bytes:
    """The plain superblock inside a signed superblock file; other data is returned unchanged.

    Raises:
        DeltaFormatError: a signed container that is malformed.
    """
    signed = SignedSuperblock.from_bytes(data)
    return data if signed is None else signed.superblock


def _swappers(endianness: int) -> tuple[_Swap, _Swap]:
    if endianness == BIG_ENDIAN:
        return bswap32, bswap64
    if endianness == LITTLE_ENDIAN:
        return _identity, _identity
    raise DeltaFormatError(f"unknown delta endianness {endianness!r}")


def _identity(v: int) -> int:
    return v


def _endianness(meta: list[tuple[str, Variant]], parts_raw: list[tuple[int, bytes, int, int, bytes]]) -> tuple[int, str]:
    """The delta's endianness and how it was found (see :attr:`Superblock.endianness_source`).

    Old deltas lack ``ostree.endianness``; libostree then reads them byte-swapped when a part's
    stored size is more than 1.2 times its uncompressed size (compression never does that), or
    when objects would average more than 4 GiB, and otherwise assumes native order.
    """
    value = vardict_get(meta, "ostree.endianness")
    if isinstance(value, int):
        return value, "key"
    swapped = any(size > usize and size / max(usize, 1) > 1.2 for _v, _c, size, usize, _o in parts_raw)
    n_objects = sum(len(p[4]) // OBJECT_RECORD_SIZE for p in parts_raw)
    if not swapped and n_objects and sum(p[2] for p in parts_raw) // n_objects > 0xFFFFFFFF:
        swapped = True
    return (BIG_ENDIAN, "heuristic") if swapped else (LITTLE_ENDIAN, "invalid")


def _parse_objects(raw: bytes) -> tuple[ObjectRef, ...]:
    if len(raw) % OBJECT_RECORD_SIZE:
        raise DeltaFormatError(f"part object list of {len(raw)} bytes is not made of 33-byte records")
    return tuple(
        (ObjectType.from_number(raw[i]), from_raw(raw[i + 1 : i + OBJECT_RECORD_SIZE]))
        for i in range(0, len(raw), OBJECT_RECORD_SIZE)
    )

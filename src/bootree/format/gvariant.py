"""A pure GVariant codec, normal form only, for the type strings ostree uses.

Layer: format (bytes in, values out). No filesystem, no network, no other bootree layer.

Why our own codec: ostree names every metadata object by the SHA-256 of its serialized bytes, so
we must emit exactly the bytes GLib emits (the *normal form*: zero padding, minimal framing
offsets, reversed tuple offsets). Decoding is strict: data that GLib would accept but that is
not in normal form is rejected, as ostree does ("Not normal form"), because two encodings of
one value would give one value two checksums.

Python values used for each type:

======================  =========================================================
``y n q i u x t h``     ``int``
``b``                   ``bool``
``d``                   ``float``
``s o g``               ``str``
``ay``                  ``bytes``
``aT`` (other)          ``list``
``a{KV}``               ``list`` of ``(key, value)`` tuples, order kept: dict order is hashed
``mT``                  ``None`` or the value
``(T...)`` and ``{KV}`` ``tuple``
``v``                   :class:`Variant`
======================  =========================================================
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias, cast

from bootree.errors import GVariantError

__all__ = ["GValue", "GVariantType", "VarDict", "Variant", "container_offset_size", "decode", "decode_vardict", "encode", "offset_size", "parse_type", "vardict_get"]


#: A decoded GVariant value, as the table above maps types to Python values. Callers that know
#: the type string they decoded narrow it (``cast``) to the shape that string guarantees.
GValue: TypeAlias = "bool | int | float | str | bytes | Variant | tuple[GValue, ...] | Sequence[GValue] | None"

#: ``a{sv}``, the metadata dictionary of commits, summaries and detached metadata, decoded.
VarDict: TypeAlias = "list[tuple[str, Variant]]"


@dataclass(frozen=True, slots=True)
class Variant:
    """A boxed value with its type string, the GVariant ``v`` type."""

    type: str
    value: GValue

    def __post_init__(self) -> None:
        parse_type(self.type)  # validates the type string


@dataclass(frozen=True, slots=True)
class GVariantType:
    """A parsed type string: its kind, alignment, fixed size and children."""

    string: str
    kind: str  # basic type char, or 'a', 'm', '(' (tuple) and '{' (dict entry)
    alignment: int
    fixed_size: int | None
    children: tuple[GVariantType, ...] = ()


_BASIC: dict[str, tuple[int, int | None]] = {
    "y": (1, 1),
    "b": (1, 1),
    "n": (2, 2),
    "q": (2, 2),
    "i": (4, 4),
    "u": (4, 4),
    "h": (4, 4),
    "x": (8, 8),
    "t": (8, 8),
    "d": (8, 8),
    "s": (1, None),
    "o": (1, None),
    "g": (1, None),
    "v": (8, None),
}
_INT_FORMATS = {"y": "<B", "n": "<h", "q": "<H", "i": "<i", "u": "<I", "h": "<i", "x": "<q", "t": "<Q"}


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _parse_one(s: str, i: int) -> tuple[GVariantType, int]:
    if i >= len(s):
        raise GVariantError(f"truncated type string {s!r}")
    c = s[i]
    if c in _BASIC:
        align, size = _BASIC[c]
        return GVariantType(c, c, align, size), i + 1
    if c in "am":
        child, j = _parse_one(s, i + 1)
        return GVariantType(s[i:j], c, child.alignment, None, (child,)), j
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        members: list[GVariantType] = []
        while True:
            if j >= len(s):
                raise GVariantError(f"unterminated container in type string {s!r}")
            if s[j] == close:
                j += 1
                break
            m, j = _parse_one(s, j)
            members.append(m)
        if c == "{" and (len(members) != 2 or members[0].kind not in _BASIC or members[0].kind == "v"):
            raise GVariantError(f"invalid dict entry type in {s!r}")
        alignment = max((m.alignment for m in members), default=1)
        fixed: int | None
        if all(m.fixed_size is not None for m in members):
            pos = 0
            for m in members:
                assert m.fixed_size is not None
                pos = _align(pos, m.alignment) + m.fixed_size
            fixed = _align(pos, alignment) if members else 1
        else:
            fixed = None
        return GVariantType(s[i:j], c, alignment, fixed, tuple(members)), j
    raise GVariantError(f"unsupported type character {c!r} in {s!r}")


@lru_cache(maxsize=256)
def parse_type(type_string: str) -> GVariantType:
    """Parse a complete GVariant type string.

    Raises:
        GVariantError: if the string is not exactly one valid type.
    """
    t, end = _parse_one(type_string, 0)
    if end != len(type_string):
        raise GVariantError(f"trailing characters in type string {type_string!r}")
    return t


def vardict_get(entries: Iterable[tuple[str, Variant]], key: str, default: object = None) -> object:
    """The unboxed value of ``key`` in an ``a{sv}`` (the first one if repeated), or ``default``."""
    for k, v in entries:
        if k == key:
            return v.value
    return default


# --- encoding --------------------------------------------------------------------------------


def offset_size(body_len: int, n_offsets: int) -> int:
    """Width of the framing offsets a container of ``body_len`` bytes and ``n_offsets`` needs."""
    if n_offsets == 0:
        return 0
    for w, limit in ((1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)):
        if body_len + n_offsets * w <= limit:
            return w
    return 8


def _pack_offsets(offsets: list[int], w: int) -> bytes:
    return b"".join(o.to_bytes(w, "little") for o in offsets)


def _encode(t: GVariantType, v: Any) -> bytes:
    k = t.kind
    if k in _INT_FORMATS:
        try:
            return struct.pack(_INT_FORMATS[k], v)
        except (struct.error, TypeError) as e:
            raise GVariantError(f"value {v!r} does not fit type {k}") from e
    if k == "b":
        return b"\x01" if v else b"\x00"
    if k == "d":
        return struct.pack("<d", v)
    if k in "sog":
        if not isinstance(v, str):
            raise GVariantError(f"expected str for type {k}, got {type(v).__name__}")
        try:
            raw = v.encode("utf-8")
        except UnicodeEncodeError as e:  # a str holding surrogate escapes of non-UTF-8 bytes
            raise GVariantError(f"string {v!r} is not valid UTF-8") from e
        if b"\0" in raw:
            raise GVariantError("string contains a NUL byte")
        return raw + b"\0"
    if k == "v":
        if not isinstance(v, Variant):
            raise GVariantError(f"expected Variant, got {type(v).__name__}")
        return _encode(parse_type(v.type), v.value) + b"\0" + v.type.encode("ascii")
    if k == "m":
        if v is None:
            return b""
        child = t.children[0]
        data = _encode(child, v)
        return data if child.fixed_size is not None else data + b"\0"
    if k == "a":
        child = t.children[0]
        if child.kind == "y":
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise GVariantError(f"expected bytes for ay, got {type(v).__name__}")
            return bytes(v)
        if child.fixed_size is not None:
            return b"".join(_encode(child, elem) for elem in v)
        buf = bytearray()
        offsets = []
        for elem in v:
            buf += b"\0" * (_align(len(buf), child.alignment) - len(buf))
            buf += _encode(child, elem)
            offsets.append(len(buf))
        w = offset_size(len(buf), len(offsets))
        return bytes(buf) + _pack_offsets(offsets, w)
    # tuple or dict entry
    members = t.children
    if not isinstance(v, (tuple, list)) or len(v) != len(members):
        raise GVariantError(f"expected a {len(members)}-tuple for {t.string}")
    if not members:
        return b"\0"
    buf = bytearray()
    offsets = []
    last = len(members) - 1
    for i, (m, mv) in enumerate(zip(members, v, strict=True)):
        buf += b"\0" * (_align(len(buf), m.alignment) - len(buf))
        buf += _encode(m, mv)
        if m.fixed_size is None and i != last:
            offsets.append(len(buf))
    if t.fixed_size is not None:
        buf += b"\0" * (t.fixed_size - len(buf))
        return bytes(buf)
    w = offset_size(len(buf), len(offsets))
    return bytes(buf) + _pack_offsets(offsets[::-1], w)


def encode(type_string: str, value: object) -> bytes:
    """Serialize ``value`` as ``type_string`` in GVariant normal form.

    Raises:
        GVariantError: if the value does not match the type.
    """
    return _encode(parse_type(type_string), value)


# --- decoding --------------------------------------------------------------------------------


def _read_offset(data: bytes | memoryview, pos: int, w: int) -> int:
    return int.from_bytes(data[pos : pos + w], "little")


def container_offset_size(size: int) -> int:
    """Width of the framing offsets of a serialized container of ``size`` bytes (as a reader)."""
    if size == 0:
        return 0
    if size <= 0xFF:
        return 1
    if size <= 0xFFFF:
        return 2
    if size <= 0xFFFFFFFF:
        return 4
    return 8


def _decode(t: GVariantType, data: memoryview) -> Any:
    k = t.kind
    n = len(data)
    if t.fixed_size is not None and n != t.fixed_size:
        raise GVariantError(f"{t.string}: expected {t.fixed_size} bytes, got {n}")
    if k in _INT_FORMATS:
        return struct.unpack(_INT_FORMATS[k], data)[0]
    if k == "b":
        if data[0] not in (0, 1):
            raise GVariantError("boolean is not 0 or 1")
        return data[0] == 1
    if k == "d":
        return struct.unpack("<d", data)[0]
    if k in "sog":
        raw = bytes(data)
        if not raw or raw[-1] != 0 or b"\0" in raw[:-1]:
            raise GVariantError("string is not NUL-terminated or has an interior NUL")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise GVariantError("string is not valid UTF-8") from e
    if k == "v":
        raw = bytes(data)
        sep = raw.rfind(b"\0")
        if sep < 0:
            raise GVariantError("variant without type string")
        try:
            tstr = raw[sep + 1 :].decode("ascii")
        except UnicodeDecodeError as e:
            raise GVariantError("variant type string is not ASCII") from e
        child_t = parse_type(tstr)
        return Variant(tstr, _decode(child_t, data[:sep]))
    if k == "m":
        if n == 0:
            return None
        child = t.children[0]
        if child.fixed_size is not None:
            return _decode(child, data)
        if data[n - 1] != 0:
            raise GVariantError("maybe of variable type lacks its trailing zero")
        return _decode(child, data[: n - 1])
    if k == "a":
        child = t.children[0]
        if child.kind == "y":
            return bytes(data)
        if child.fixed_size is not None:
            size = child.fixed_size
            if n % size:
                raise GVariantError(f"{t.string}: length {n} is not a multiple of {size}")
            return [_decode(child, data[i : i + size]) for i in range(0, n, size)]
        if n == 0:
            return []
        w = container_offset_size(n)
        last_end = _read_offset(data, n - w, w)
        if last_end > n or (n - last_end) % w:
            raise GVariantError(f"{t.string}: bad framing offsets")
        count = (n - last_end) // w
        if count == 0:
            raise GVariantError(f"{t.string}: bad framing offsets")
        out = []
        start = 0
        for i in range(count):
            end = _read_offset(data, last_end + i * w, w)
            start = _align(start, child.alignment)
            if not start <= end <= last_end:
                raise GVariantError(f"{t.string}: element offsets out of range")
            out.append(_decode(child, data[start:end]))
            start = end
        return out
    # tuple / dict entry
    members = t.children
    if not members:
        if bytes(data) != b"\0":
            raise GVariantError("unit tuple must be one zero byte")
        return ()
    w = container_offset_size(n)
    n_var = sum(1 for m in members[:-1] if m.fixed_size is None)
    table = n - n_var * w
    if table < 0:
        raise GVariantError(f"{t.string}: too short for its framing offsets")
    values = []
    pos = 0
    k_off = 0
    last = len(members) - 1
    for i, m in enumerate(members):
        pos = _align(pos, m.alignment)
        if m.fixed_size is not None:
            end = pos + m.fixed_size
        elif i == last:
            end = table
        else:
            k_off += 1
            end = _read_offset(data, n - k_off * w, w)
        if not pos <= end <= table:
            raise GVariantError(f"{t.string}: member {i} out of range")
        values.append(_decode(m, data[pos:end]))
        pos = end
    return tuple(values)


def decode(type_string: str, data: bytes | bytearray | memoryview) -> GValue:
    """Deserialize ``data`` as ``type_string``; reject anything not in normal form.

    Raises:
        GVariantError: if the data is malformed, or valid but not in normal form.
    """
    t = parse_type(type_string)
    raw = bytes(data)
    try:
        value: GValue = _decode(t, memoryview(raw))
    except GVariantError:
        raise
    except (IndexError, ValueError, struct.error) as exc:
        raise GVariantError(f"malformed {type_string} data: {exc}") from exc
    if _encode(t, value) != raw:
        raise GVariantError(f"{type_string} data is not in normal form")
    return value


def decode_vardict(data: bytes | bytearray | memoryview) -> VarDict:
    """:func:`decode` of ``a{sv}`` (metadata dictionaries), typed as what that string yields.

    Raises:
        GVariantError: as :func:`decode`.
    """
    return cast(VarDict, decode("a{sv}", data))

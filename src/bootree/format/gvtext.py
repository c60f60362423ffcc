"""GVariant text format (what ``g_variant_parse`` reads), for ``--add-metadata=KEY=VALUE``.

Layer: format (text in, typed values out). ostree's ``commit --add-metadata`` and ``summary
--add-metadata`` both parse VALUE as GVariant text; one parser serves both so that they agree.

Supported, as GLib writes and reads them: ``true``/``false``; integers (decimal, ``0x`` hex;
int32 unless typed) and floats (double); single- or double-quoted strings with C escapes and
``\\uXXXX``; ``b'...'`` byte strings (``ay``); arrays ``[...]``; dictionaries ``{k: v, ...}``;
dict entries ``{k, v}``; tuples ``(...)``; variants ``<...>``; maybes ``just X`` / ``nothing``;
type annotations ``@TYPE VALUE`` and the type keywords (``uint64 5``, ``string 'x'``, ...).
Untyped empty containers need an annotation (``@a{sv} {}``), as in GLib.
"""

from __future__ import annotations

from typing import Any

from bootree.errors import GVariantError
from bootree.format.gvariant import GValue, GVariantType, Variant, parse_type

__all__ = ["byteswap", "parse_text", "print_text"]

_KEYWORDS = {
    "boolean": "b", "byte": "y", "int16": "n", "uint16": "q", "int32": "i", "uint32": "u", "handle": "h",
    "int64": "x", "uint64": "t", "double": "d", "string": "s", "objectpath": "o", "signature": "g",
}
_INT_RANGES = {
    "y": (0, 2**8), "n": (-(2**15), 2**15), "q": (0, 2**16), "i": (-(2**31), 2**31), "h": (-(2**31), 2**31),
    "u": (0, 2**32), "x": (-(2**63), 2**63), "t": (0, 2**64),
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a", "\\": "\\", "'": "'", '"': '"'}
_WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-"


def parse_text(text: str) -> Variant:
    """Parse one GVariant text value into a :class:`Variant` (its type and Python value).

    Raises:
        GVariantError: for text GLib would not parse, or that needs a type it cannot infer.
    """
    p = _Parser(text)
    type_string, value = p.value(None)
    p.skip_ws()
    if p.i != len(text):
        raise GVariantError(f"unexpected {text[p.i:p.i + 10]!r} after a GVariant value in {text!r}")
    return Variant(type_string, value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def error(self, what: str) -> GVariantError:
        return GVariantError(f"invalid GVariant text {self.s!r} at offset {self.i}: {what}")

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, c: str) -> None:
        if self.peek() != c:
            raise self.error(f"expected {c!r}")
        self.i += 1

    def word(self) -> str:
        self.skip_ws()
        j = self.i
        while j < len(self.s) and self.s[j] in _WORD_CHARS:
            j += 1
        return self.s[self.i : j]

    def value(self, want: GVariantType | None) -> tuple[str, Any]:
        """Parse a value; ``want`` is the type the context requires, if known."""
        c = self.peek()
        if c == "@":
            self.i += 1
            j = self.i
            while j < len(self.s) and not self.s[j].isspace():
                j += 1
            t = parse_type(self.s[self.i : j])
            self.i = j
            self._check(want, t.string)
            return t.string, self.value(t)[1]
        w = self.word()
        if w in _KEYWORDS:
            self.i += len(w)
            t = parse_type(_KEYWORDS[w])
            self._check(want, t.string)
            return t.string, self.value(t)[1]
        if want is not None and want.kind == "v":
            if c != "<":
                raise self.error("expected a variant <...>")
        if c == "<":
            self.i += 1
            inner = self.value(None)
            self.expect(">")
            self._check(want, "v")
            return "v", Variant(*inner)
        if (want is not None and want.kind == "m") or w in ("just", "nothing"):
            return self.maybe(want)
        if c == "[":
            return self.array(want)
        if c == "{":
            return self.brace(want)
        if c == "(":
            return self.tuple_(want)
        if c in "'\"" or (c == "b" and self.s[self.i + 1 : self.i + 2] in ("'", '"')):
            return self.string(want)
        if w in ("true", "false"):
            self.i += len(w)
            self._check(want, "b")
            return "b", w == "true"
        if w:
            return self.number(w, want)
        raise self.error("expected a value")

    def _check(self, want: GVariantType | None, got: str) -> None:
        if want is not None and want.string != got:
            raise self.error(f"type {got!r} where {want.string!r} is needed")

    def number(self, w: str, want: GVariantType | None) -> tuple[str, Any]:
        self.i += len(w)
        is_float = any(ch in w for ch in ".eE") and not w.lower().lstrip("+-").startswith("0x")
        code = want.kind if want is not None else ("d" if is_float or w in ("inf", "nan") else "i")
        try:
            if code == "d":
                return "d", float(w)
            if code not in _INT_RANGES or is_float:
                raise self.error(f"number {w!r} where {code!r} is needed")
            value = int(w, 0) if w.lower().lstrip("+-").startswith("0x") else int(w, 10)
        except ValueError:
            raise self.error(f"not a number: {w!r}") from None
        lo, hi = _INT_RANGES[code]
        if not lo <= value < hi:
            raise self.error(f"{w} is out of range for type {code!r}")
        return code, value

    def string(self, want: GVariantType | None) -> tuple[str, Any]:
        is_bytes = self.s[self.i] == "b"
        if is_bytes:
            self.i += 1
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise self.error("unterminated string")
            ch = self.s[self.i]
            self.i += 1
            if ch == quote:
                break
            if ch == "\\":
                if self.i >= len(self.s):
                    raise self.error("unterminated escape")
                e = self.s[self.i]
                self.i += 1
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                elif e in "uU":
                    n = 4 if e == "u" else 8
                    try:
                        out.append(chr(int(self.s[self.i : self.i + n], 16)))
                    except ValueError:
                        raise self.error("bad unicode escape") from None
                    self.i += n
                else:
                    out.append(e)
            else:
                out.append(ch)
        text = "".join(out)
        if is_bytes:
            self._check(want, "ay")
            return "ay", text.encode("utf-8") + b"\0"  # GLib byte strings end with a NUL
        code = want.kind if want is not None and want.kind in "sog" else "s"
        self._check(want, code)
        return code, text

    def array(self, want: GVariantType | None) -> tuple[str, Any]:
        self.expect("[")
        elem = want.children[0] if want is not None and want.kind == "a" else None
        if want is not None and want.kind != "a":
            raise self.error(f"an array where {want.string!r} is needed")
        items: list[Any] = []
        while self.peek() != "]":
            if items:
                self.expect(",")
            t, v = self.value(elem)
            elem = parse_type(t)
            items.append(v)
        self.i += 1
        if elem is None:
            raise self.error("cannot infer the type of an empty array: annotate it (@as [])")
        if elem.string == "y":
            return "ay", bytes(items)
        return "a" + elem.string, items

    def brace(self, want: GVariantType | None) -> tuple[str, Any]:
        """A dictionary ``{k: v, ...}`` (an ``a{..}``) or a dict entry ``{k, v}``."""
        self.expect("{")
        if want is not None and want.kind == "{":
            kt, k = self.value(want.children[0])
            self.expect(",")
            vt, v = self.value(want.children[1])
            self.expect("}")
            return want.string, (k, v)
        if want is not None and not (want.kind == "a" and want.children[0].kind == "{"):
            raise self.error(f"a dictionary where {want.string!r} is needed")
        key_t = want.children[0].children[0] if want is not None else None
        val_t = want.children[0].children[1] if want is not None else None
        if self.peek() == "}":
            self.i += 1
            if want is None:
                raise self.error("cannot infer the type of an empty dictionary: annotate it (@a{sv} {})")
            return want.string, []
        kt, k = self.value(key_t)
        if want is None and self.peek() == ",":  # an untyped dict entry
            self.i += 1
            vt, v = self.value(None)
            self.expect("}")
            return "{" + kt + vt + "}", (k, v)
        self.expect(":")
        vt, v = self.value(val_t)
        entries = [(k, v)]
        key_t, val_t = parse_type(kt), parse_type(vt)
        while self.peek() != "}":
            self.expect(",")
            _, k = self.value(key_t)
            self.expect(":")
            _, v = self.value(val_t)
            entries.append((k, v))
        self.i += 1
        type_string = "a{" + kt + vt + "}"
        parse_type(type_string)  # keys must be basic types
        return type_string, entries

    def tuple_(self, want: GVariantType | None) -> tuple[str, Any]:
        self.expect("(")
        if want is not None and want.kind != "(":
            raise self.error(f"a tuple where {want.string!r} is needed")
        members = list(want.children) if want is not None else None
        types: list[str] = []
        values: list[Any] = []
        while self.peek() != ")":
            if values:
                self.expect(",")
                if self.peek() == ")":
                    break
            t = members[len(values)] if members is not None and len(values) < len(members) else None
            if members is not None and t is None:
                raise self.error("too many tuple members")
            ts, v = self.value(t)
            types.append(ts)
            values.append(v)
        self.i += 1
        if members is not None and len(values) != len(members):
            raise self.error("too few tuple members")
        return "(" + "".join(types) + ")", tuple(values)

    def maybe(self, want: GVariantType | None) -> tuple[str, Any]:
        w = self.word()
        if w == "nothing":
            self.i += len(w)
            if want is None:
                raise self.error("cannot infer the type of 'nothing': annotate it (@ms nothing)")
            return want.string, None
        inner_want = want.children[0] if want is not None else None
        if w == "just":
            self.i += len(w)
        t, v = self.value(inner_want)
        return "m" + t, v


_PRINT_KEYWORDS = {
    "y": "byte", "n": "int16", "q": "uint16", "u": "uint32", "h": "handle", "x": "int64", "t": "uint64",
    "o": "objectpath", "g": "signature",
}


def print_text(type_string: str, value: GValue, *, annotate: bool = False) -> str:
    """Format a value as ``g_variant_print`` does (what ``summary --view`` and ``--raw`` show).

    ``annotate`` adds the type keywords or ``@TYPE`` prefixes that make the text re-parse to
    the same type; GLib always annotates inside variants, and in arrays only the first element.
    """
    out: list[str] = []
    _print(parse_type(type_string), value, annotate, out)
    return "".join(out)


def _quote(text: str) -> str:
    quote = '"' if "'" in text and '"' not in text else "'"
    parts = [quote]
    for ch in text:
        if ch == quote or ch == "\\":
            parts.append("\\" + ch)
        elif ch in "\n\t\r\b\f\v\a":
            parts.append("\\" + {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f", "\v": "v", "\a": "a"}[ch])
        elif not ch.isprintable():
            parts.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
        else:
            parts.append(ch)
    parts.append(quote)
    return "".join(parts)


def _print(t: GVariantType, v: Any, annotate: bool, out: list[str]) -> None:
    k = t.kind
    if k == "b":
        out.append("true" if v else "false")
    elif k in "ynqiuhxt":
        if annotate and k in _PRINT_KEYWORDS:
            out.append(_PRINT_KEYWORDS[k] + " ")
        out.append(f"0x{v:02x}" if k == "y" else str(v))
    elif k == "d":
        text = f"{v:.17g}"
        out.append(text if any(c in text for c in ".en") else text + ".0")
    elif k in "sog":
        if annotate and k in _PRINT_KEYWORDS:
            out.append(_PRINT_KEYWORDS[k] + " ")
        out.append(_quote(v))
    elif k == "v":
        out.append("<")
        _print(parse_type(v.type), v.value, True, out)
        out.append(">")
    elif k == "m":
        if annotate:
            out.append(f"@{t.string} ")
        if v is None:
            out.append("nothing")
        else:
            _print(t.children[0], v, False, out)
    elif k == "a":
        _print_array(t, v, annotate, out)
    elif k == "(":
        out.append("(")
        for i, (child, item) in enumerate(zip(t.children, v, strict=True)):
            if i:
                out.append(", ")
            _print(child, item, annotate, out)
        out.append(",)" if len(t.children) == 1 else ")")
    else:  # a dict entry on its own
        out.append("{")
        _print(t.children[0], v[0], annotate, out)
        out.append(", ")
        _print(t.children[1], v[1], annotate, out)
        out.append("}")


def _print_array(t: GVariantType, v: Any, annotate: bool, out: list[str]) -> None:
    elem = t.children[0]
    items = list(v)
    if not items:
        if annotate:
            out.append(f"@{t.string} ")
        out.append("{}" if elem.kind == "{" else "[]")
        return
    if elem.kind == "y" and items[-1] == 0 and all(0x20 <= b < 0x7F for b in items[:-1]):
        out.append("b" + _quote(bytes(items[:-1]).decode("ascii")))
        return
    if elem.kind == "{":
        out.append("{")
        for i, (key, val) in enumerate(items):
            if i:
                out.append(", ")
            _print(elem.children[0], key, annotate and i == 0, out)
            out.append(": ")
            _print(elem.children[1], val, annotate and i == 0, out)
        out.append("}")
        return
    out.append("[")
    for i, item in enumerate(items):
        if i:
            out.append(", ")
        _print(elem, item, annotate and i == 0, out)
    out.append("]")


_SWAP_SIZES = {"n": (2, True), "q": (2, False), "i": (4, True), "u": (4, False), "h": (4, True), "x": (8, True), "t": (8, False)}


def byteswap(type_string: str, value: Any) -> Any:
    """``value`` with every multi-byte number byte-swapped, as ``g_variant_byteswap``: ostree's
    ``--raw`` output prints data swapped on little-endian hosts (so big-endian fields such as a
    commit's timestamp read as numbers)."""
    return _swap(parse_type(type_string), value)


def _swap(t: GVariantType, v: Any) -> Any:
    k = t.kind
    if k in _SWAP_SIZES:
        size, signed = _SWAP_SIZES[k]
        return int.from_bytes(int(v).to_bytes(size, "little", signed=signed), "big", signed=signed)
    if k == "d":
        import struct

        return struct.unpack("<d", struct.pack(">d", v))[0]
    if k == "v":
        return Variant(v.type, _swap(parse_type(v.type), v.value))
    if k == "m":
        return None if v is None else _swap(t.children[0], v)
    if k == "a":
        elem = t.children[0]
        return v if elem.kind in "ybsog" else [_swap(elem, item) for item in v]
    if k in "({":
        return tuple(_swap(c, item) for c, item in zip(t.children, v, strict=True))
    return v

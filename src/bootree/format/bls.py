"""Boot Loader Specification entries (``/boot/loader/entries/*.conf``), parsed and written as ostree does.

Layer: format (pure). ostree writes its entries in a fixed key order (``title``, ``version``,
``options``, ``devicetree``, ``linux``, ``initrd``, then overlay initrds, then any other key)
with one space between key and value; bootree must write the same bytes so that ``ostree admin``
and bootree can each read the other's sysroot, and so that a sysroot rewritten by one looks the
same to the other.

Parsing follows libostree's bootconfig parser: a line that starts with a letter is
``KEY<space or tab>VALUE`` (the value is the rest of the line, kept verbatim), anything else is
ignored; a repeated key keeps its last value, except ``initrd`` whose later occurrences are
overlay initrds. Unknown keys keep their file order (ostree writes them in hash order, which is
not reproducible; file order is the stable choice).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bootree.errors import FormatError

__all__ = ["FIXED_KEYS", "BlsEntry", "strverscmp"]

#: The keys ostree writes first, in this order.
FIXED_KEYS = ("title", "version", "options", "devicetree", "linux", "initrd")


@dataclass(frozen=True, slots=True)
class BlsEntry:
    """One boot entry: ``fields`` are unique ``(key, value)`` pairs, ``overlay_initrds`` the extra
    ``initrd`` lines after the first."""

    fields: tuple[tuple[str, str], ...] = ()
    overlay_initrds: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> BlsEntry:
        """Parse an entry file's text (libostree's rules; blank and comment lines are skipped)."""
        fields: dict[str, str] = {}
        overlays: list[str] = []
        for line in text.split("\n"):
            if not line or not line[0].isascii() or not line[0].isalpha():
                continue
            cut = min((i for i in (line.find(" "), line.find("\t")) if i >= 0), default=-1)
            if cut <= 0:
                continue
            key, value = line[:cut], line[cut + 1 :]
            if key == "initrd" and "initrd" in fields:
                overlays.append(value)
            else:
                fields[key] = value
        return cls(tuple(fields.items()), tuple(overlays))

    def to_text(self) -> str:
        """Serialize in ostree's order: fixed keys, overlay initrds, then the other keys.

        Raises:
            FormatError: for overlay initrds without a primary ``initrd``, or a key or value
                that would not read back (empty, containing a newline, key with whitespace).
        """
        values = dict(self.fields)
        for key, value in self.fields:
            if not key or not key[0].isalpha() or any(c in key for c in " \t\n") or "\n" in value:
                raise FormatError(f"BLS entry key or value cannot be written: {key!r} {value!r}")
        if self.overlay_initrds and "initrd" not in values:
            raise FormatError("BLS entry has overlay initrds but no initrd")
        lines = [f"{k} {values[k]}" for k in FIXED_KEYS if k in values]
        lines.extend(f"initrd {v}" for v in self.overlay_initrds)
        lines.extend(f"{k} {v}" for k, v in self.fields if k not in FIXED_KEYS)
        return "".join(line + "\n" for line in lines)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default``."""
        for k, v in self.fields:
            if k == key:
                return v
        return default

    def set(self, key: str, value: str) -> BlsEntry:
        """A copy with ``key`` set (replaced in place, or added at the end)."""
        if any(k == key for k, _ in self.fields):
            return replace(self, fields=tuple((k, value if k == key else v) for k, v in self.fields))
        return replace(self, fields=(*self.fields, (key, value)))

    def remove(self, key: str) -> BlsEntry:
        """A copy without ``key``."""
        return replace(self, fields=tuple((k, v) for k, v in self.fields if k != key))

    @property
    def title(self) -> str | None:
        """The ``title`` line."""
        return self.get("title")

    @property
    def version(self) -> str | None:
        """The ``version`` line (ostree: the entry's position counted from the oldest, as text)."""
        return self.get("version")

    @property
    def options(self) -> str:
        """The kernel command line (empty when absent)."""
        return self.get("options") or ""


def _digit_key(run: str) -> tuple[int, int, str]:
    # glibc: a run with a leading zero (and more than one digit) is a "fractional part" and sorts
    # before any integral run; more leading zeros sort first, then the rest compares as text.
    if len(run) > 1 and run[0] == "0":
        zeros = len(run) - len(run.lstrip("0"))
        return (0, -zeros, run.lstrip("0"))
    return (1, len(run), run)


def _digit_run(s: str, start: int) -> str:
    end = start
    while end < len(s) and "0" <= s[end] <= "9":  # ASCII digits only, as glibc (str.isdigit has more)
        end += 1
    return s[start:end]


def strverscmp(a: str, b: str) -> int:
    """glibc's ``strverscmp`` ordering (ostree sorts boot entries by ``version`` with it).

    Returns a negative number, zero or a positive number as ``a`` sorts before, equal to or
    after ``b``: digit runs compare as numbers (``"9" < "10"``), the rest byte-wise.
    """
    if a == b:
        return 0
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    j = i
    while j > 0 and "0" <= a[j - 1] <= "9":
        j -= 1
    da, db = _digit_run(a, j), _digit_run(b, j)
    if da and db and da != db:
        ka, kb = _digit_key(da), _digit_key(db)
        if ka != kb:
            return -1 if ka < kb else 1
    # surrogateescape: a version read from a non-UTF-8 file compares by its bytes, never raises.
    ca = a[i].encode("utf-8", "surrogateescape") if i < len(a) else b""
    cb = b[i].encode("utf-8", "surrogateescape") if i < len(b) else b""
    return -1 if ca < cb else 1

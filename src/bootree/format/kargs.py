"""Kernel command lines (``options`` of a boot entry), edited the way ``ostree admin`` edits them.

Layer: format (pure). A :class:`Kargs` is an ordered tuple of ``(key, value)`` arguments where
``value`` is ``None`` for a bare flag (``quiet``) and ``""`` for ``key=``; the distinction is kept
because the kernel sees them differently and because a round trip must give back the same
bytes as the BLS entry it came from.

The edit operations follow libostree's ``OstreeKernelArgs`` (2022.7), since ``bootree admin
deploy --karg`` must produce the same ``options`` line as ``ostree admin deploy --karg``:

* :meth:`Kargs.replace` (``--karg``): the first argument with that key takes the new value and
  the other arguments with that key are dropped; an absent key is appended.
* :meth:`Kargs.append` (``--karg-append``): always appended, duplicates allowed.
* :meth:`Kargs.delete` (``--karg-delete``): ``key=value`` removes that exact argument; a bare
  ``key`` removes the key only when it has exactly one value.

Double quotes group spaces (``foo="a b"``) and are kept verbatim in the value, as the kernel's
own parser and ostree's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bootree.errors import FormatError

__all__ = ["Karg", "Kargs", "split_cmdline"]

#: One argument: ``(key, value)``; ``value`` is ``None`` for a flag without ``=``.
Karg = tuple[str, str | None]


def split_cmdline(cmdline: str) -> list[str]:
    """Split a command line on spaces and tabs outside double quotes; quotes stay in the words."""
    words: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in cmdline:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch in " \t\n" and not quoted:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def _split_arg(arg: str) -> Karg:
    if not arg:
        raise FormatError("empty kernel argument")
    key, eq, value = arg.partition("=")
    if not key:
        raise FormatError(f"kernel argument {arg!r} has an empty key")
    return (key, value if eq else None)


def _join(karg: Karg) -> str:
    key, value = karg
    return key if value is None else f"{key}={value}"


@dataclass(frozen=True, slots=True)
class Kargs:
    """An ordered, immutable kernel command line; every edit returns a new value."""

    args: tuple[Karg, ...] = ()

    @classmethod
    def parse(cls, cmdline: str) -> Kargs:
        """Parse a command line such as the ``options`` value of a BLS entry.

        Raises:
            FormatError: for an argument with an empty key (``=x``).
        """
        return cls(tuple(_split_arg(w) for w in split_cmdline(cmdline)))

    @classmethod
    def from_argv(cls, argv: Iterable[str]) -> Kargs:
        """Build from separate arguments (each may itself hold several space-separated words)."""
        out: list[Karg] = []
        for a in argv:
            out.extend(_split_arg(w) for w in split_cmdline(a))
        return cls(tuple(out))

    def __str__(self) -> str:
        return " ".join(_join(a) for a in self.args)

    def __iter__(self) -> Iterator[str]:
        return (_join(a) for a in self.args)

    def __len__(self) -> int:
        return len(self.args)

    def get(self, key: str) -> str | None:
        """The value of the last argument named ``key`` (``None`` if absent or a bare flag)."""
        found: str | None = None
        for k, v in self.args:
            if k == key:
                found = v
        return found

    def get_all(self, key: str) -> list[str | None]:
        """Every value of ``key`` in order."""
        return [v for k, v in self.args if k == key]

    def has(self, key: str) -> bool:
        """Whether an argument named ``key`` is present."""
        return any(k == key for k, _ in self.args)

    def contains(self, arg: str) -> bool:
        """Whether exactly this argument (``key`` or ``key=value``) is present."""
        return _split_arg(arg) in self.args

    def replace(self, arg: str) -> Kargs:
        """ostree's ``replace``: set ``key`` to this value at its first position, dropping repeats."""
        new = _split_arg(arg)
        out: list[Karg] = []
        placed = False
        for a in self.args:
            if a[0] == new[0]:
                if not placed:
                    out.append(new)
                    placed = True
                continue
            out.append(a)
        if not placed:
            out.append(new)
        return Kargs(tuple(out))

    def replace_all(self, argv: Iterable[str]) -> Kargs:
        """:meth:`replace` each argument in turn."""
        k = self
        for a in Kargs.from_argv(argv):
            k = k.replace(a)
        return k

    def append(self, arg: str) -> Kargs:
        """Append ``arg`` (and any further words in it) at the end, even if the key exists."""
        return Kargs(self.args + Kargs.from_argv([arg]).args)

    def append_all(self, argv: Iterable[str]) -> Kargs:
        """:meth:`append` each argument in turn."""
        return Kargs(self.args + Kargs.from_argv(argv).args)

    def append_if_missing(self, arg: str) -> Kargs:
        """Append ``arg`` unless exactly that argument is already present."""
        return self if self.contains(arg) else self.append(arg)

    def delete(self, arg: str) -> Kargs:
        """ostree's ``delete``.

        Raises:
            FormatError: if the key is absent, or if a bare key has several values (ostree's
                "Multiple values for key"), or if ``key=value`` is not present.
        """
        key, value = _split_arg(arg)
        matches = [i for i, a in enumerate(self.args) if a[0] == key]
        if not matches:
            raise FormatError(f"no kernel argument {key!r} found")
        if value is None and "=" not in arg:
            if len(matches) > 1:
                raise FormatError(f"multiple values for kernel argument {key!r}; say which with {key}=VALUE")
            drop = matches[0]
        else:
            exact = [i for i in matches if self.args[i][1] == value]
            if not exact:
                raise FormatError(f"no kernel argument {arg!r} found")
            drop = exact[0]
        return Kargs(self.args[:drop] + self.args[drop + 1 :])

    def delete_if_present(self, arg: str) -> Kargs:
        """Remove every occurrence of exactly ``arg``; a no-op when absent."""
        target = _split_arg(arg)
        return Kargs(tuple(a for a in self.args if a != target))

    def without(self, key: str) -> Kargs:
        """Every argument except those named ``key`` (e.g. to compare kargs without ``ostree=``)."""
        return Kargs(tuple(a for a in self.args if a[0] != key))

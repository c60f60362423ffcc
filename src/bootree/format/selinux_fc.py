"""SELinux ``file_contexts``: which label a path gets, as libselinux's ``selabel_lookup`` answers.

Layer: format (pure). What ``ostree commit --selinux-policy`` asks the policy for each path,
written down from libselinux's label backend (``label_file``) and ``file_contexts(5)``:

* a line is ``REGEX [TYPE] CONTEXT``; ``#`` starts a comment; TYPE is ``--`` (regular file),
  ``-d`` (directory), ``-l`` (symlink), ``-c``, ``-b``, ``-s``, ``-p`` (char/block device,
  socket, fifo), absent = any type; CONTEXT ``<<none>>`` means "leave unlabeled";
* the regex must match the *whole* path (it is anchored at both ends);
* among the specs that match, the **last** one wins, after libselinux's one reordering: specs
  whose regex has no meta character (``.^$?*+|[({``, a backslash escaping the next character)
  are moved after all the others, so an exact path beats any pattern;
* the specs are ``file_contexts`` then ``file_contexts.homedirs`` then ``file_contexts.local``;
* ``file_contexts.subs`` then ``file_contexts.subs_dist`` hold path aliases (``/usr/etc /etc``:
  a path under the first is looked up as the same path under the second), the first matching
  alias of each file is applied, before the lookup.

Patterns are PCRE in libselinux and compiled with Python's :mod:`re` here; the constructs
policies use (classes, groups, ``.*``, ``(/.*)?``, ``[^/]+``) mean the same in both.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bootree.errors import FormatError

__all__ = ["FileContexts", "Spec", "parse_file_contexts", "parse_subs"]

_TYPES = {"--": stat.S_IFREG, "-d": stat.S_IFDIR, "-l": stat.S_IFLNK, "-c": stat.S_IFCHR,
          "-b": stat.S_IFBLK, "-s": stat.S_IFSOCK, "-p": stat.S_IFIFO}
_META = frozenset(".^$?*+|[({")
NONE = "<<none>>"


@dataclass(frozen=True, slots=True)
class Spec:
    """One ``file_contexts`` line."""

    regex: str
    file_type: int
    """``stat.S_IFMT`` bits the spec is limited to, 0 for any type."""
    context: str | None
    """``None`` for ``<<none>>``."""
    line: int
    source: str

    @property
    def has_meta(self) -> bool:
        """Whether the regex has a meta character (libselinux's ``spec_hasMetaChars``)."""
        i = 0
        while i < len(self.regex):
            c = self.regex[i]
            if c == "\\":
                i += 2
                continue
            if c in _META:
                return True
            i += 1
        return False


def _lines(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each line that is not blank or a ``#`` comment."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield n, line.split()


def parse_file_contexts(text: str, source: str = "file_contexts") -> list[Spec]:
    """The specs of one ``file_contexts`` file.

    Raises:
        FormatError: a line with too few or too many fields, an unknown file type, a bad regex.
    """
    out = []
    for n, fields in _lines(text):
        if len(fields) == 2:
            regex, ftype, ctx = fields[0], 0, fields[1]
        elif len(fields) == 3:
            if fields[1] not in _TYPES:
                raise FormatError(f"{source}:{n}: unknown file type {fields[1]!r}")
            regex, ftype, ctx = fields[0], _TYPES[fields[1]], fields[2]
        else:
            raise FormatError(f"{source}:{n}: expected 'REGEX [TYPE] CONTEXT', got {len(fields)} fields")
        try:
            re.compile(regex)
        except re.error as e:
            raise FormatError(f"{source}:{n}: bad regex {regex!r}: {e}") from None
        out.append(Spec(regex, ftype, None if ctx == NONE else ctx, n, source))
    return out


def parse_subs(text: str, source: str = "file_contexts.subs") -> list[tuple[str, str]]:
    """The ``(alias, target)`` pairs of a ``.subs`` / ``.subs_dist`` file.

    Raises:
        FormatError: a line that is not two fields.
    """
    out = []
    for n, fields in _lines(text):
        if len(fields) != 2:
            raise FormatError(f"{source}:{n}: expected 'ALIAS TARGET'")
        out.append((fields[0].rstrip("/") or "/", fields[1].rstrip("/") or "/"))
    return out


class FileContexts:
    """A compiled policy: specs in lookup order, aliases, and a cache of compiled patterns."""

    def __init__(self, specs: Sequence[Spec], subs: Sequence[tuple[str, str]] = ()) -> None:
        # Exact paths after the patterns; lookup walks from the end (the last match wins).
        ordered = [s for s in specs if s.has_meta] + [s for s in specs if not s.has_meta]
        self.specs = ordered
        self.subs = list(subs)
        self._compiled = [re.compile(s.regex) for s in ordered]

    def _alias(self, path: str) -> str:
        for src, dst in self.subs:
            if src != "/" and (path == src or path.startswith(src + "/")):
                return ((dst if dst != "/" else "") + path[len(src) :]) or "/"
        return path

    def lookup(self, path: str, mode: int) -> str | None:
        """The context for ``path`` (absolute) of type ``mode`` (``st_mode`` bits), or ``None``."""
        key = self._alias(re.sub(r"/+", "/", path) if "//" in path else path)
        if len(key) > 1:
            key = key.rstrip("/")
        ftype = stat.S_IFMT(mode)
        for spec, rx in zip(reversed(self.specs), reversed(self._compiled), strict=True):
            if spec.file_type and spec.file_type != ftype:
                continue
            if rx.fullmatch(key):
                return spec.context
        return None

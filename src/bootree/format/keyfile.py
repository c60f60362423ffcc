"""GLib key files (``[group]`` and ``key=value`` lines): repo ``config``, origin files, remotes.

Layer: format. A :class:`KeyFile` keeps groups, keys and comments in their original order and
writes back what it read, so that settings bootree does not understand (``gpg-verify``,
``tls-*``, tool-specific keys) survive every rewrite, as they do with ostree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootree.errors import KeyFileError

__all__ = ["KeyFile", "parse_bool"]


def parse_bool(value: str) -> bool:
    """Parse a GKeyFile boolean (``true``/``false``, also ``1``/``0`` as GLib accepts).

    Raises:
        KeyFileError: for anything else.
    """
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise KeyFileError(f"invalid boolean value {value!r}")


@dataclass
class _Group:
    name: str
    # Comment and blank lines just above the group header, kept with it.
    leading: list[str] = field(default_factory=list)
    # Each line is either ("key", value) for an entry or (None, raw) for a comment/blank line.
    lines: list[tuple[str | None, str]] = field(default_factory=list)


class KeyFile:
    """An ordered, comment-preserving GLib key file."""

    def __init__(self) -> None:
        self._head: list[str] = []  # comments before the first group
        self._groups: list[_Group] = []

    # --- parsing and writing -----------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str) -> KeyFile:
        """Parse key-file text.

        Raises:
            KeyFileError: for a line that is neither a group, an entry nor a comment.
        """
        kf = cls()
        current: _Group | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                if current is None:
                    kf._head.append(raw)
                else:
                    current.lines.append((None, raw))
                continue
            if line.startswith("["):
                if not line.endswith("]") or len(line) < 3:
                    raise KeyFileError(f"line {lineno}: malformed group header {raw!r}")
                leading: list[str] = []
                if current is not None:
                    while current.lines and current.lines[-1][0] is None:
                        leading.insert(0, current.lines.pop()[1])
                else:
                    leading, kf._head = kf._head, []
                current = kf._group(line[1:-1], create=True)
                assert current is not None
                current.leading.extend(leading)
                continue
            if "=" not in line or current is None:
                raise KeyFileError(f"line {lineno}: expected key=value inside a group, got {raw!r}")
            key, _, value = line.partition("=")
            current.lines.append((key.strip(), value.strip()))
        return kf

    def to_text(self) -> str:
        """Serialize: groups in order, a blank line between groups, as GLib writes them."""
        out: list[str] = list(self._head)
        for i, g in enumerate(self._groups):
            if g.leading:
                out.extend(g.leading)
            elif i > 0 and (not out or out[-1].strip()):
                out.append("")
            out.append(f"[{g.name}]")
            body = [f"{k}={v}" if k is not None else v for k, v in g.lines]
            while body and not body[-1].strip():
                body.pop()
            out.extend(body)
        return "\n".join(out) + "\n" if out else ""

    # --- access ------------------------------------------------------------------------------

    def _group(self, name: str, *, create: bool = False) -> _Group | None:
        for g in self._groups:
            if g.name == name:
                return g
        if create:
            g = _Group(name)
            self._groups.append(g)
            return g
        return None

    @property
    def groups(self) -> list[str]:
        """Group names in file order."""
        return [g.name for g in self._groups]

    def has_group(self, group: str) -> bool:
        """Whether ``group`` exists."""
        return self._group(group) is not None

    def keys(self, group: str) -> list[str]:
        """Keys of ``group`` in file order (empty if the group is absent)."""
        g = self._group(group)
        return [k for k, _ in g.lines if k is not None] if g else []

    def get(self, group: str, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` in ``group`` (the last one if repeated), or ``default``."""
        g = self._group(group)
        if g is None:
            return default
        found = default
        for k, v in g.lines:
            if k == key:
                found = v
        return found

    def get_bool(self, group: str, key: str, default: bool) -> bool:
        """A boolean value, or ``default`` when absent.

        Raises:
            KeyFileError: for a value that is not a boolean.
        """
        v = self.get(group, key)
        return default if v is None else parse_bool(v)

    def get_int(self, group: str, key: str, default: int) -> int:
        """An integer value, or ``default`` when absent.

        Raises:
            KeyFileError: for a value that is not an integer.
        """
        v = self.get(group, key)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError as e:
            raise KeyFileError(f"[{group}] {key}: invalid integer {v!r}") from e

    def get_list(self, group: str, key: str) -> list[str]:
        """A ``;``-separated list value (empty when absent)."""
        v = self.get(group, key)
        if not v:
            return []
        return [item for item in v.split(";") if item]

    def set(self, group: str, key: str, value: str) -> None:
        """Set ``key`` (replacing it in place, or appending it to the group, created if needed).

        Raises:
            KeyFileError: for a newline or ``=`` in the key, a newline in the value, or text
                that is not UTF-8 (a str holding surrogate escapes of undecodable bytes).
        """
        if "\n" in value or "\n" in key or "=" in key:
            raise KeyFileError(f"invalid key or value for [{group}] {key}")
        for text in (group, key, value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise KeyFileError(f"[{group}] {key}: {text!r} is not valid UTF-8") from None
        g = self._group(group, create=True)
        assert g is not None
        for i, (k, _) in enumerate(g.lines):
            if k == key:
                g.lines[i] = (key, value)
                g.lines = [entry for j, entry in enumerate(g.lines) if j <= i or entry[0] != key]
                return
        # Insert after the last entry, before trailing blank lines.
        pos = len(g.lines)
        while pos > 0 and g.lines[pos - 1][0] is None and not g.lines[pos - 1][1].strip():
            pos -= 1
        g.lines.insert(pos, (key, value))

    def remove_key(self, group: str, key: str) -> bool:
        """Remove ``key`` from ``group``; whether it was there."""
        g = self._group(group)
        if g is None:
            return False
        before = len(g.lines)
        g.lines = [entry for entry in g.lines if entry[0] != key]
        return len(g.lines) != before

    def remove_group(self, group: str) -> bool:
        """Remove a whole group; whether it was there."""
        before = len(self._groups)
        self._groups = [g for g in self._groups if g.name != group]
        return len(self._groups) != before

    def items(self, group: str) -> list[tuple[str, str]]:
        """``(key, value)`` pairs of ``group`` in order."""
        g = self._group(group)
        return [(k, v) for k, v in g.lines if k is not None] if g else []

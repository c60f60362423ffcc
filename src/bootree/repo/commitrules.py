"""ostree's commit filters: ``--statoverride``, ``--skip-list`` and ``--tar-pathname-filter``.

Layer: repo. ostree applies these to every path a commit imports, by its path in the commit
(``/usr/bin/foo``): a statoverride line ``[+]MODE PATH`` ORs MODE (decimal) into the mode,
``=MODE PATH`` replaces the permission bits; a skip-list line ``PATH`` leaves the entry out. Each
rule is used once (ostree removes it when it matches), and a ``[+]MODE`` rule that matched
nothing fails the commit ("Unmatched statoverride paths"), as does an unused skip-list line.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from bootree.errors import RepoError, SourceError

__all__ = ["PathRules", "PathnameFilter"]


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise SourceError(str(path), e.strerror or str(e)) from e
    except UnicodeDecodeError:
        raise SourceError(str(path), "not valid UTF-8") from None
    return [line for line in text.split("\n") if line]


def _decimal(text: str) -> int:
    """The leading number of ``text``, as ``g_ascii_strtod`` reads it (0 when there is none)."""
    m = re.match(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)", text)
    return int(float(m.group(0))) & 0xFFFFFFFF if m else 0


@dataclass
class PathRules:
    """The statoverride and skip-list rules of one commit (consumed as they match)."""

    mode_adds: dict[str, int] = field(default_factory=dict)
    mode_overrides: dict[str, int] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, statoverride: Path | None = None, skip_list: Path | None = None) -> PathRules:
        """Read ostree's ``--statoverride`` and ``--skip-list`` files.

        Raises:
            SourceError: for an unreadable file or a statoverride line without a space.
        """
        rules = cls()
        for line in _lines(statoverride) if statoverride is not None else []:
            mode, space, path = line.partition(" ")
            if not space:
                raise SourceError(str(statoverride), "Malformed statoverride file (no space found)")
            if mode.startswith("="):
                rules.mode_overrides[path] = _decimal(mode[1:])
            else:
                rules.mode_adds[path] = _decimal(mode)
        rules.skip.update(_lines(skip_list) if skip_list is not None else [])
        return rules

    def skipped(self, path: str) -> bool:
        """Whether the entry at ``path`` is left out (the rule is then used up)."""
        if path in self.skip:
            self.skip.discard(path)
            return True
        return False

    def mode(self, path: str, mode: int) -> int:
        """``mode`` (type bits included) with the statoverride rule of ``path`` applied."""
        add = self.mode_adds.pop(path, None)
        if add is not None:
            return mode | add
        override = self.mode_overrides.pop(path, None)
        if override is not None:
            return stat.S_IFMT(mode) | override
        return mode

    def check_all_used(self) -> None:
        """Raise if a ``[+]MODE`` or skip-list rule matched nothing, as ostree does.

        Raises:
            RepoError: naming the unmatched paths.
        """
        if self.mode_adds:
            raise RepoError(f"Unmatched statoverride paths: {', '.join(sorted(self.mode_adds))}")
        if self.skip:
            raise RepoError(f"Unmatched skip-list paths: {', '.join(sorted(self.skip))}")


@dataclass(frozen=True, slots=True)
class PathnameFilter:
    """ostree's ``--tar-pathname-filter=REGEX,REPLACEMENT``: every match in a path replaced."""

    regex: re.Pattern[str]
    replacement: str

    @classmethod
    def parse(cls, spec: str) -> PathnameFilter:
        """Parse ``REGEX,REPLACEMENT`` (split at the first comma).

        Raises:
            SourceError: without a comma, or for a regular expression that does not compile.
        """
        regex, comma, replacement = spec.partition(",")
        if not comma:
            raise SourceError(spec, "Missing ',' in --tar-pathname-filter")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise SourceError(spec, f"--tar-pathname-filter: {e}") from None
        # GRegex's \0 (the whole match) is Python's \g<0>.
        return cls(compiled, replacement.replace("\\0", "\\g<0>"))

    def apply(self, path: str) -> str:
        """``path`` with every match replaced."""
        return self.regex.sub(self.replacement, path)

"""Ref names and refspecs (``REMOTE:REF``) with ostree's validation rules.

Layer: format. A ref name is ``(F/)*F`` where each component ``F`` starts with a letter, digit or
underscore and continues with letters, digits, ``-``, ``.`` and ``_``. Validating here keeps
``..``, absolute paths and empty components out of ``refs/``, which are real directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bootree.errors import InvalidRefName

__all__ = ["RefSpec", "parse_refspec", "validate_ref_name", "validate_remote_name"]

_COMPONENT = r"[\w\d][-._\w\d]*"
_REF_RE = re.compile(rf"(?:{_COMPONENT}/)*{_COMPONENT}", re.ASCII)
_REMOTE_RE = re.compile(_COMPONENT, re.ASCII)


def validate_ref_name(name: str) -> str:
    """Return ``name`` if it is a valid ref name.

    Raises:
        InvalidRefName: otherwise.
    """
    if not _REF_RE.fullmatch(name):
        raise InvalidRefName(name)
    return name


def validate_remote_name(name: str) -> str:
    """Return ``name`` if it is a valid remote name (one component, no ``/``).

    Raises:
        InvalidRefName: otherwise.
    """
    if not _REMOTE_RE.fullmatch(name):
        raise InvalidRefName(name, "not a valid remote name")
    return name


@dataclass(frozen=True, slots=True)
class RefSpec:
    """A ref with an optional remote: ``os/main`` or ``origin:os/main``."""

    remote: str | None
    ref: str

    def __str__(self) -> str:
        return f"{self.remote}:{self.ref}" if self.remote else self.ref


def parse_refspec(spec: str) -> RefSpec:
    """Split and validate ``[REMOTE:]REF``.

    Raises:
        InvalidRefName: if either part is invalid.
    """
    remote, sep, ref = spec.partition(":")
    if not sep:
        return RefSpec(None, validate_ref_name(spec))
    return RefSpec(validate_remote_name(remote), validate_ref_name(ref))

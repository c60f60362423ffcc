"""One renderer for every query command: a value in, ostree's text or ``--json`` out.

Layer: cli. A query command builds a value (a library result, or a list or dict of them) and
hands it to :func:`emit` with the function that turns it into text lines; ``--json`` prints
the same value through :func:`to_json`, so the two outputs cannot drift apart and no command
assembles JSON of its own. Library values render themselves to JSON with a ``to_json()``
method (the sysroot status is a versioned schema: ``docs/status-schema.md``); plain
dataclasses become objects of their fields.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["emit", "print_json", "to_json"]

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """``value`` as JSON-ready data: ``to_json()`` if it has one, dataclasses as objects,
    enums by value, bytes as hex, tuples and sets as lists (sets sorted)."""
    method = getattr(value, "to_json", None)
    if callable(method):
        return to_json(method())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [to_json(v) for v in sorted(value)]
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """Print ``value`` (see :func:`to_json`) as indented JSON on stdout."""
    sys.stdout.write(json.dumps(to_json(value), indent=2, sort_keys=False) + "\n")


def emit(value: T, *, as_json: bool, text: Callable[[T], Iterable[str]]) -> None:
    """Print ``value`` as JSON (``as_json``) or as the lines ``text(value)`` returns.

    Text goes out in one write (status of a big sysroot, ``ls -R`` of a whole OS: one call
    instead of thousands of ``echo``\\ s); nothing is printed for no lines.
    """
    if as_json:
        print_json(value)
        return
    lines = list(text(value))
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")

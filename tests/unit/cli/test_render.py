"""The shared renderer: one value, printed as text lines or as JSON."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

import pytest

from bootree.cli.render import emit, to_json


class Color(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Plain:
    name: str
    raw: bytes
    tags: tuple[str, ...]
    color: Color


@dataclass(frozen=True)
class Custom:
    n: int

    def to_json(self) -> dict[str, int]:
        return {"double": self.n * 2}


def test_to_json_converts_library_values() -> None:
    value = {"a": [Plain("x", b"\x01\xff", ("t",), Color.RED), Custom(2)], "s": {3, 1}}
    assert to_json(value) == {"a": [{"name": "x", "raw": "01ff", "tags": ["t"], "color": "red"}, {"double": 4}],
                              "s": [1, 3]}


def test_emit_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit([Custom(1), Custom(5)], as_json=False, text=lambda vs: [f"n={v.n}" for v in vs])
    assert capsys.readouterr().out == "n=1\nn=5\n"
    emit([Custom(1)], as_json=True, text=lambda vs: ["unused"])
    assert json.loads(capsys.readouterr().out) == [{"double": 2}]
    emit([], as_json=False, text=lambda vs: [])
    assert capsys.readouterr().out == ""

"""ostree takes a command's options before the command name too; bootree moves them after it."""

from __future__ import annotations

import pytest

from bootree.cli import ostree_argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--repo=r", "--print-metadata-key=k", "show", "x"], ["--repo=r", "show", "--print-metadata-key=k", "x"]),
        (["--repo", "r", "-v", "refs"], ["--repo", "r", "refs", "-v"]),
        (["refs", "--list"], ["refs", "--list"]),
        (["--version"], ["--version"]),
        (["--debug", "init", "--mode=archive"], ["--debug", "init", "--mode=archive"]),
        (["--", "refs"], ["--", "refs"]),
    ],
)
def test_ostree_argv(argv: list[str], expected: list[str]) -> None:
    assert ostree_argv(argv) == expected

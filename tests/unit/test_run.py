"""bootree._run: the one place that runs programs; every failure is an ExternalCommandError."""

from __future__ import annotations

import pytest

from bootree import _run
from bootree.errors import ExternalCommandError


def test_run_captures_and_raises() -> None:
    assert _run.run(["sh", "-c", "echo out; echo err >&2"]).stdout == b"out\n"
    assert _run.run(["sh", "-c", "cat"], input=b"x").stdout == b"x"
    assert _run.run(["sh", "-c", "echo $X"], env={"X": "1"}).stdout == b"1\n"
    with pytest.raises(ExternalCommandError) as e:
        _run.run(["sh", "-c", "echo boom >&2; exit 3"])
    assert e.value.returncode == 3 and "boom" in e.value.message and e.value.argv[0] == "sh"
    assert _run.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(ExternalCommandError) as e:
        _run.run(["/nonexistent/program"])
    assert e.value.returncode == 127
    with pytest.raises(ExternalCommandError, match="timed out"):
        _run.run(["sleep", "5"], timeout=0.2)
    assert _run.find_program("sh") is not None and _run.find_program("no-such-program-x") is None

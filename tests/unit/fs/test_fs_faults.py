"""The fault-injection seam of ``_fs``: counting, failing the N-th call, staying out of the way."""

from __future__ import annotations

import errno
import os
import timeit
from pathlib import Path

import pytest

from bootree import _fs
from bootree._fs import faults


def _writer(tmp_path: Path) -> None:
    _fs.write_atomic(tmp_path / "a", b"x" * 10)  # write, fsync, rename, dir fsync
    _fs.write_atomic(tmp_path / "b", b"y", fsync=False)  # write, rename


def test_counting_plan_counts_each_point(tmp_path: Path) -> None:
    with faults.armed() as plan:
        _writer(tmp_path)
    assert plan.total == 6 and dict(plan.per_point) == {"write": 2, "fsync": 2, "rename": 2}
    assert plan.fired is None and faults.plan is None


@pytest.mark.parametrize("k", range(1, 7))
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_fails_the_kth_call_and_leaves_no_temp_file(tmp_path: Path, k: int, err: int) -> None:
    with faults.armed(fail_at=k, err=err) as plan, pytest.raises(OSError) as ei:
        _writer(tmp_path)
    assert ei.value.errno == err and plan.fired is not None
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "a temporary file was left behind"


def test_points_filter_and_errors(tmp_path: Path) -> None:
    with faults.armed(fail_at=1, points=["rename"]) as plan, pytest.raises(OSError):
        _writer(tmp_path)
    assert plan.fired is not None and plan.fired.startswith("rename ")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError):
        with faults.armed(points=["unlink"]):
            pass
    with faults.armed(), pytest.raises(RuntimeError):
        with faults.armed():
            pass
    assert faults.plan is None


def test_disarmed_seam_costs_next_to_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disarmed, a wrapper only tests ``faults.plan is None``: no plan method is ever reached."""
    def boom(*_a: object) -> None:
        raise AssertionError("a disarmed seam called into the plan")

    monkeypatch.setattr(faults.FaultPlan, "hit", boom)
    monkeypatch.setattr(faults, "hit", boom)
    _writer(tmp_path)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        n = 20000
        raw = min(timeit.repeat(lambda: os.write(fd, b"x"), number=n, repeat=5))
        wrapped = min(timeit.repeat(lambda: _fs.write(fd, b"x"), number=n, repeat=5))
    finally:
        os.close(fd)
    # One global load, a None test and a call frame: a small fraction of the system call
    # (loose bound: the machine running the tests may be busy).
    assert wrapped < raw * 3 + 0.05

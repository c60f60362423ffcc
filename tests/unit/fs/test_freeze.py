"""The /boot freeze/thaw cycle: syncfs where /boot is no mount point; the watchdog protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree._fs import faults
from bootree._fs.freeze import freeze_thaw
from bootree.errors import FreezeError


def test_a_directory_that_is_no_mount_point_is_synced_not_frozen(tmp_path: Path) -> None:
    with faults.armed() as plan:  # counting only: the fallback is the seam's syncfs
        assert freeze_thaw(tmp_path) is False
    assert plan.per_point["fsync"] == 1


def test_watchdog_runs_then_the_cycle_fails_as_ostrees_test_hook(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FreezeError, match="During fsfreeze-thaw: aborting due to test-fifreeze"):
        freeze_thaw(tmp_path, test_watchdog=True)
    assert "fifreeze watchdog was run" in capfd.readouterr().err

"""Health check discovery (required/wanted, /etc overrides and masks) and running with timeouts."""

from __future__ import annotations

import os
from pathlib import Path

from bootree.health.checks import Kind, discover, run_checks


def check(root: Path, where: str, kind: str, name: str, body: str, mode: int = 0o755) -> Path:
    p = root / where / f"{kind}.d" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(body)
    os.chmod(p, mode)
    return p


def test_discover_orders_overrides_and_masks(tmp_path: Path) -> None:
    usr, etc = "usr/lib/bootree/health.d", "etc/bootree/health.d"
    check(tmp_path, usr, "required", "20-b", "#!/bin/sh\nexit 0\n")
    check(tmp_path, usr, "required", "10-a", "#!/bin/sh\nexit 0\n")
    check(tmp_path, usr, "wanted", "50-w", "#!/bin/sh\nexit 0\n")
    check(tmp_path, usr, "required", "30-masked", "#!/bin/sh\nexit 1\n")
    over = check(tmp_path, etc, "required", "20-b", "#!/bin/sh\nexit 0\n")
    check(tmp_path, etc, "required", "30-masked", "")
    (tmp_path / etc / "wanted.d").mkdir()
    os.symlink("/dev/null", tmp_path / etc / "wanted.d/50-w")
    check(tmp_path, etc, "required", ".hidden", "#!/bin/sh\nexit 1\n")
    got = discover(tmp_path)
    assert [(c.kind, c.name) for c in got] == [(Kind.REQUIRED, "10-a"), (Kind.REQUIRED, "20-b")]
    assert got[1].path == over
    assert discover(tmp_path / "nothing") == []


def test_run_checks_results(tmp_path: Path) -> None:
    d = "usr/lib/bootree/health.d"
    check(tmp_path, d, "required", "ok", "#!/bin/sh\necho fine\n")
    check(tmp_path, d, "required", "bad", "#!/bin/sh\necho broken >&2\nexit 3\n")
    check(tmp_path, d, "required", "slow", "#!/bin/sh\nsleep 5\n")
    check(tmp_path, d, "required", "noexec", "#!/bin/sh\nexit 0\n", mode=0o644)
    check(tmp_path, d, "wanted", "meh", "#!/bin/sh\nexit 1\n")
    res = {r.check.name: r for r in run_checks(discover(tmp_path), timeout=0.5)}
    assert res["ok"].ok and res["ok"].output == "fine" and not res["ok"].blocking
    assert not res["bad"].ok and res["bad"].returncode == 3 and "broken" in res["bad"].output and res["bad"].blocking
    assert not res["slow"].ok and res["slow"].seconds < 3 and "timed out" in res["slow"].output
    assert not res["noexec"].ok and res["noexec"].blocking
    assert not res["meh"].ok and not res["meh"].blocking

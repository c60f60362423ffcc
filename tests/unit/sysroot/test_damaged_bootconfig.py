"""A damaged boot configuration, on a sysroot bootree made (the library side of issue 10 #2).

The compat tests compare with ostree; these check the library's contract directly: what
``Sysroot.damage`` says, which deployments are unlisted, and that every write path (deploy,
cleanup, the list swap) refuses before touching anything when deployments were lost.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sysrootenv import SysrootEnv

from bootree.errors import BootConfigDamaged
from bootree.sysroot import Origin, deploy
from bootree.sysroot.cleanup import cleanup
from bootree.sysroot.swap import write_deployments

ORIGIN = Origin.for_refspec("sampleos/stable")


def _two(env: SysrootEnv) -> list[str]:
    for v in (1, 2):
        with env.sysroot.lock():
            deploy(env.sysroot, env.commit(v), stateroot="sampleos", origin=ORIGIN)
    return [d.name for d in env.reopen().deployments]


def _snapshot(path: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(path / "ostree/deploy"):
        dirs[:] = [d for d in dirs if d not in ("usr", "var")]
        out.extend(os.path.join(root, n) for n in sorted(dirs + files))
    return sorted(out)


def test_missing_loader_link_falls_back_to_loader0_and_deploy_keeps_everything(env: SysrootEnv) -> None:
    names = _two(env)
    assert os.readlink(env.path / "boot/loader") == "loader.0"  # two swaps: 0 → 1 → 0, as ostree
    os.unlink(env.path / "boot/loader")
    s = env.reopen()
    assert [d.name for d in s.deployments] == names
    assert s.damage == ["boot/loader is missing, read as loader.0 (as ostree does)"]
    assert s.unlisted_deployments() == ()
    s.check_writable()  # every deployment is accounted for: writes may go ahead
    with s.lock():
        r = deploy(s, env.commit(3), stateroot="sampleos", origin=ORIGIN)
    s = env.reopen()
    assert [d.name for d in s.deployments][:2] == [r.deployment.name, names[0]] and s.damage == []
    assert os.readlink(env.path / "boot/loader") in ("loader.0", "loader.1")


def _dangling(p: Path) -> None:
    target = os.readlink(p / "boot/loader")
    os.unlink(p / "boot/loader")
    os.symlink("loader.1" if target == "loader.0" else "loader.0", p / "boot/loader")


def _no_entries(p: Path) -> None:
    shutil.rmtree(p / "boot/loader/entries")


def _no_link_no_loader0(p: Path) -> None:
    target = os.readlink(p / "boot/loader")
    os.unlink(p / "boot/loader")
    if target == "loader.0":
        os.rename(p / "boot/loader.0", p / "boot/loader.1")


@pytest.mark.parametrize("damage", [_dangling, _no_entries, _no_link_no_loader0],
                         ids=["dangling", "entries-missing", "link-missing-and-loader0-missing"])
def test_lost_deployments_make_every_write_refuse(env: SysrootEnv, damage: Callable[[Path], None]) -> None:
    names = _two(env)
    damage(env.path)
    s = env.reopen()
    assert s.deployments == () and s.damage
    assert sorted(s.unlisted_deployments()) == sorted(f"sampleos/{n}" for n in names)
    before = _snapshot(env.path)
    c3 = env.commit(3)
    with s.lock():
        with pytest.raises(BootConfigDamaged) as e:
            deploy(s, c3, stateroot="sampleos", origin=ORIGIN)
        with pytest.raises(BootConfigDamaged):
            cleanup(s)
        with pytest.raises(BootConfigDamaged):
            write_deployments(s, [])
    assert set(e.value.unlisted) == {f"sampleos/{n}" for n in names}
    assert _snapshot(env.path) == before  # not even the new deployment was left behind

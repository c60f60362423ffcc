"""ENOSPC and EIO at every write, fsync and rename of ``deploy`` and ``finalize-staged``.

After each injected failure: the previous default deployment is still the default (unless the
failure came after the commit point, the ``boot/loader`` rename, and the new one is complete),
it still boots in the namespace boot simulator, the repository fscks clean (``ostree fsck`` and
``ostree admin status`` on a sample), every visible object verifies, and the same operation
then succeeds without the fault and boots the new version. Trees are the small sample OS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from faultkit import ostree_fsck, scratch_dir, sweep, verify_visible_objects  # type: ignore[import-not-found]
from sampleos import make_tree  # type: ignore[import-not-found]

from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.repo import CommitOptions
from bootree.sysroot import Origin, Sysroot, deploy, finalize_staged, ops, stage
from bootree.sysroot.bootsim import boot, can_boot

_REASON = can_boot()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield from scratch_dir(tmp_path)

ORIGIN = Origin.for_refspec("sampleos/stable")
READ_V = ["/usr/bin/sh", "-c", 'read v < /usr/share/v; test "$v" = "$WANT"']


@pytest.fixture(autouse=True)
def _mutable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


def _commit(s: Sysroot, base: Path, version: int) -> Checksum:
    tree = make_tree(base / f"tree{version}", version, with_shell=True)
    return s.repo.commit([tree], branch="sampleos/stable", subject=f"v{version}", timestamp=1700000000 + version,
                         metadata=[("version", Variant("s", str(version)))],
                         options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True))


def _boots(path: Path, version: int) -> None:
    s = Sysroot.open(path)
    with s.lock():
        res = boot(s, READ_V, finalize=False, env={"WANT": str(version)})
    assert res.returncode == 0, f"the default deployment does not boot version {version}"


def _copies(template: Path) -> Callable[[], Path]:
    runs = iter(range(10**6))

    def setup() -> Path:
        p = template.parent / f"run{next(runs)}"
        subprocess.run(["cp", "-a", str(template), str(p)], check=True)  # keeps hardlinks and owners
        return p
    return setup


def _template(base: Path, *, staged: bool) -> tuple[Path, Checksum, Checksum]:
    """v1 deployed and booted with a local /etc change; v2 committed (and staged if asked)."""
    sr = base / "template"
    ops.init_fs(sr)
    s = Sysroot.open(sr)
    with s.lock():
        ops.os_init(s, "sampleos")
    v1 = _commit(s, base, 1)
    with s.lock():
        d1 = deploy(s, v1, stateroot="sampleos", origin=ORIGIN).deployment
    (s.deployment_dir(d1) / "etc/foo.conf").write_text("a=LOCAL\n")
    _boots(sr, 1)
    s = Sysroot.open(sr)
    v2 = _commit(s, base, 2)
    if staged:
        with s.lock():
            stage(s, v2, stateroot="sampleos", origin=ORIGIN)
    return sr, v1, v2


class _After:
    """The checks after each run (``ostree`` checks on every ``sample``-th run)."""

    def __init__(self, v1: Checksum, v2: Checksum, redo: Callable[[Sysroot], None], sample: int = 12) -> None:
        self.v1, self.v2, self.redo, self.sample = v1, v2, redo, sample
        self.calls = 0

    def __call__(self, p: object, exc: BaseException | None) -> None:
        assert isinstance(p, Path)
        self.calls += 1
        s = Sysroot.open(p)
        default = s.deployments[0]
        if exc is not None and default.csum != self.v1:
            # Past the commit point: the new deployment is the default and must be complete.
            assert default.csum == self.v2 and s.deployment_dir(default).is_dir()
        assert any(d.csum == self.v1 for d in s.deployments), "the old deployment was lost"
        assert s.repo.fsck().ok
        verify_visible_objects(s.repo)
        _boots(p, 1 if default.csum == self.v1 else 2)
        if self.calls % self.sample == 1 and shutil.which("ostree"):
            ostree_fsck(s.repo.path)
            st = subprocess.run(["ostree", "admin", "status", f"--sysroot={p}"], capture_output=True, text=True,
                                check=False)
            assert st.returncode == 0 and "sampleos" in st.stdout, st.stderr
        s = Sysroot.open(p)
        if s.deployments[0].csum != self.v2:
            with s.lock():
                self.redo(s)
        s = Sysroot.open(p)
        assert s.deployments[0].csum == self.v2
        assert s.repo.fsck().ok
        _boots(p, 2)
        shutil.rmtree(p)


def test_deploy_survives_a_failure_at_every_point(scratch: Path) -> None:
    sr, v1, v2 = _template(scratch, staged=False)

    def op(p: object) -> None:
        s = Sysroot.open(p)  # type: ignore[arg-type]
        with s.lock():
            deploy(s, v2, stateroot="sampleos", origin=ORIGIN)

    def redo(s: Sysroot) -> None:
        deploy(s, v2, stateroot="sampleos", origin=ORIGIN)

    res = sweep("deploy", _copies(sr), op, _After(v1, v2, redo))
    assert res.points > 10 and res.fired > 0


def test_finalize_survives_a_failure_at_every_point(scratch: Path) -> None:
    sr, v1, v2 = _template(scratch, staged=True)

    def op(p: object) -> None:
        s = Sysroot.open(p)  # type: ignore[arg-type]
        with s.lock():
            assert finalize_staged(s) is not None

    def redo(s: Sysroot) -> None:
        # A failed finalization leaves the staged deployment staged (ostree retries at the next
        # shutdown); if it is gone, deploying again must still work.
        if s.staged is not None:
            assert finalize_staged(s) is not None
        else:
            deploy(s, v2, stateroot="sampleos", origin=ORIGIN)

    res = sweep("finalize-staged", _copies(sr), op, _After(v1, v2, redo))
    assert res.points > 5 and res.fired > 0

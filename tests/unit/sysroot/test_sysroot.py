"""Deploy, the atomic swap, retention, pin/undeploy/cleanup, kargs, staging and rollback.

Library-level tests on a real directory sysroot (root needed for the bare repo).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sysrootenv import SysrootEnv

from bootree.errors import EtcMergeConflict, NoRollback, NotBooted
from bootree.format.bls import BlsEntry
from bootree.format.keyfile import KeyFile
from bootree.format.objects import ObjectType
from bootree.sysroot import DeployOptions, Origin, deploy, finalize_staged, immutable, ops, stage
from bootree.sysroot.cleanup import cleanup
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

ORIGIN = Origin.for_refspec("sampleos/stable")


def _deploy(env: SysrootEnv, csum: str, **kw: object) -> Deployment:
    s = env.sysroot
    with s.lock():
        return deploy(s, csum, stateroot="sampleos", origin=ORIGIN, opts=DeployOptions(**kw)).deployment  # type: ignore[arg-type]


def _entries(path: Path) -> dict[str, str]:
    d = path / "boot/loader/entries"
    return {n: (d / n).read_text() for n in sorted(os.listdir(d))}


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under ``root`` with its mode, link count and content hash or link target."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if os.path.islink(p):
                what = os.readlink(p)
            elif p.is_file():
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = ""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_nlink if p.is_file() else 0, what)
    return out


def _book_boot(s: Sysroot, d: Deployment) -> None:
    """Record ``d`` as booted the way the boot simulator does (no namespace needed here)."""
    kf = KeyFile()
    kf.set("booted", "stateroot", d.stateroot)
    kf.set("booted", "deployment", d.name)
    s.booted_record_path.parent.mkdir(parents=True, exist_ok=True)
    s.booted_record_path.write_text(kf.to_text())
    s.load()


def test_two_deployments_layout_entries_and_refs(env: SysrootEnv) -> None:
    c1 = env.commit(1)
    d1 = _deploy(env, c1, kargs=("root=LABEL=root", "quiet"))
    c2 = env.commit(2)
    d2 = _deploy(env, c2)
    s = env.reopen()
    assert [d.csum for d in s.deployments] == [c2, c1]
    assert s.bootversion == 0 and s.subbootversion == 1
    assert os.readlink(env.path / "boot/loader") == "loader.0"
    bootcsum = hashlib.sha256(b"fake-kernel 5.10.0\nfake-initramfs 5.10.0\n").hexdigest()
    assert d1.bootcsum == d2.bootcsum == bootcsum
    entries = _entries(env.path)
    assert entries["ostree-2-sampleos.conf"] == (
        "title SampleOS 2 (ostree:0)\n"
        "version 2\n"
        f"options root=LABEL=root quiet ostree=/ostree/boot.0/sampleos/{bootcsum}/0\n"
        f"linux /ostree/sampleos-{bootcsum}/vmlinuz-5.10.0\n"
        f"initrd /ostree/sampleos-{bootcsum}/initramfs-5.10.0.img\n"
    )
    assert BlsEntry.parse(entries["ostree-1-sampleos.conf"]).title == "SampleOS 1 (ostree:1)"
    refs = s.repo.list_refs("ostree")
    assert refs == {"ostree/0/1/0": c2, "ostree/0/1/1": c1}
    link = env.path / f"ostree/boot.0/sampleos/{bootcsum}/1"
    assert os.readlink(link) == f"../../../deploy/sampleos/deploy/{c1}.0"
    # Kernel files are hardlinks of the deployment's (no extra bytes), etc is a real copy.
    kdir = env.path / f"boot/ostree/sampleos-{bootcsum}"
    droot = s.deployment_dir(s.deployments[0])
    assert os.stat(kdir / "vmlinuz-5.10.0").st_ino == os.stat(droot / "usr/lib/modules/5.10.0/vmlinuz").st_ino
    assert os.stat(droot / "etc/foo.conf").st_ino != os.stat(droot / "usr/etc/foo.conf").st_ino
    assert (env.path / "ostree/deploy/sampleos/var/.ostree-selabeled").exists()
    assert not (env.path / "ostree/lock").exists()
    assert not (env.path / "ostree/deploy/sampleos/.bootree-staging").exists()


def test_etc_merge_and_kargs_inherited(env: SysrootEnv) -> None:
    d1 = _deploy(env, env.commit(1), kargs=("root=LABEL=root",))
    etc = env.sysroot.deployment_dir(d1) / "etc"
    (etc / "foo.conf").write_text("a=LOCAL\n")
    (etc / "new.conf").write_text("mine\n")
    (etc / "unchanged.conf").unlink()
    s = env.sysroot
    with s.lock():
        r = deploy(s, env.commit(2), stateroot="sampleos", origin=ORIGIN)
    assert r.etc is not None and r.etc.message == "Copying /etc changes: 1 modified, 1 removed, 1 added"
    new_etc = s.deployment_dir(r.deployment) / "etc"
    assert (new_etc / "foo.conf").read_text() == "a=LOCAL\n"
    assert (new_etc / "new.conf").read_text() == "mine\n"
    assert not (new_etc / "unchanged.conf").exists()
    assert str(r.deployment.kargs.without("ostree")) == "root=LABEL=root"
    # --karg on top of the merge deployment's kargs replaces in place; --no-merge starts empty.
    with s.lock():
        r3 = deploy(s, env.commit(3), stateroot="sampleos", origin=ORIGIN,
                    opts=DeployOptions(kargs=("root=/dev/vda",), kargs_append=("console=ttyS0",)))
    assert str(r3.deployment.kargs.without("ostree")) == "root=/dev/vda console=ttyS0"
    with s.lock():
        r4 = deploy(s, env.commit(4), stateroot="sampleos", origin=ORIGIN, opts=DeployOptions(no_merge=True))
    assert str(r4.deployment.kargs.without("ostree")) == ""
    assert r4.etc is None
    assert (s.deployment_dir(r4.deployment) / "etc/foo.conf").read_text() == "a=4\n"


def test_conflict_error_leaves_sysroot_exactly_as_it_was(env: SysrootEnv) -> None:
    d1 = _deploy(env, env.commit(1))
    (env.sysroot.deployment_dir(d1) / "etc/foo.conf").write_text("local\n")

    def foo_becomes_dir(tree: Path) -> None:
        (tree / "usr/etc/foo.conf").unlink()
        (tree / "usr/etc/foo.conf").mkdir()
        (tree / "usr/etc/foo.conf/inner").write_text("x\n")

    c2 = env.commit(2, edit=foo_becomes_dir)
    before = _snapshot(env.path)
    with pytest.raises(EtcMergeConflict) as exc:
        _deploy(env, c2)
    assert exc.value.path == "/etc/foo.conf"
    assert _snapshot(env.path) == before


def test_redeploy_same_commit_gets_next_serial_and_set_default_is_subbootversion_swap(env: SysrootEnv) -> None:
    c1 = env.commit(1)
    _deploy(env, c1)
    _deploy(env, c1)
    s = env.reopen()
    assert [d.deployserial for d in s.deployments] == [1, 0]
    bv, sv = s.bootversion, s.subbootversion
    entries_before = _entries(env.path)
    with s.lock():
        swap = ops.set_default(s, 1)
    assert swap is not None and not swap.bootconfig_swap
    assert (swap.bootversion, swap.subbootversion) == (bv, 1 - sv)
    assert _entries(env.path) == entries_before  # same entries, only the farm flipped
    assert [d.deployserial for d in env.reopen().deployments] == [0, 1]


def test_retention_pin_undeploy_cleanup(env: SysrootEnv) -> None:
    c1, c2, c3 = env.commit(1), env.commit(2, kernel="5.11.0"), env.commit(3)
    _deploy(env, c1)
    _deploy(env, c2)
    _deploy(env, c3)
    s = env.reopen()
    assert [d.csum for d in s.deployments] == [c3, c2]  # new + previous default
    assert not (env.path / f"ostree/deploy/sampleos/deploy/{c1}.0").exists()
    with s.lock():
        ops.set_pinned(s, 1, True)
    assert "[libostree-transient]\npinned=true\n" in (env.path / f"ostree/deploy/sampleos/deploy/{c2}.0.origin").read_text()
    _deploy(env, c1)
    s = env.reopen()
    assert [d.csum for d in s.deployments] == [c1, c3, c2]  # pinned kept
    assert s.deployments[2].pinned
    s.repo.set_ref("sampleos/v2", None)  # only the deployment ref keeps c2 now
    with s.lock():
        target, swap, cleaned = ops.undeploy(s, 2)  # pinned or not, as 2022.7
    assert target.csum == c2 and swap is not None
    assert cleaned.deployments_removed == (f"{c2}.0",)
    assert len(cleaned.boot_dirs_removed) == 1  # the 5.11.0 kernel dir
    assert os.listdir(env.path / "boot/ostree") == [f"sampleos-{s.deployments[0].bootcsum}"]
    assert cleaned.objects_pruned > 0
    assert not s.repo.has_object(ObjectType.COMMIT, c2)


def test_not_as_default_and_retain(env: SysrootEnv) -> None:
    c1, c2, c3 = env.commit(1), env.commit(2), env.commit(3)
    _deploy(env, c1)
    _deploy(env, c2, not_as_default=True)
    assert [d.csum for d in env.reopen().deployments] == [c1, c2]
    _deploy(env, c3, retain=True)
    assert [d.csum for d in env.reopen().deployments] == [c3, c1, c2]


def test_kargs_edit_in_place_rewrites_entries_without_swap(env: SysrootEnv) -> None:
    _deploy(env, env.commit(1), kargs=("quiet",))
    s = env.reopen()
    bv = s.bootversion
    with s.lock():
        n = ops.kargs_edit_in_place(s, append_if_missing=("console=ttyS0", "quiet"))
    assert n == 1
    s = env.reopen()
    assert s.bootversion == bv
    assert str(s.deployments[0].kargs.without("ostree")) == "quiet console=ttyS0"
    with s.lock():
        ops.kargs_edit_in_place(s, delete_if_present=("quiet",))
    assert str(env.reopen().deployments[0].kargs.without("ostree")) == "console=ttyS0"


def test_no_initramfs_adds_prepare_root_init(env: SysrootEnv) -> None:
    c = env.commit(1, edit=lambda t: (t / "usr/lib/modules/5.10.0/initramfs.img").unlink())
    d = _deploy(env, c)
    text = next(iter(_entries(env.path).values()))
    assert "initrd" not in text
    assert f"init=/ostree/boot.1/sampleos/{d.bootcsum}/0/usr/lib/ostree/ostree-prepare-root" in text


def test_stage_finalize_and_rollback(env: SysrootEnv) -> None:
    c1, c2 = env.commit(1), env.commit(2)
    d1 = _deploy(env, c1)
    s = env.sysroot
    with s.lock():
        with pytest.raises(NotBooted):
            stage(s, c2, stateroot="sampleos", origin=ORIGIN)
        with pytest.raises(NotBooted):
            ops.rollback(s)
    _book_boot(s, d1)
    var = env.path / "ostree/deploy/sampleos/var"
    (var / "data").write_text("kept\n")
    (s.deployment_dir(d1) / "etc/foo.conf").write_text("a=LOCAL\n")
    with s.lock():
        staged = stage(s, c2, stateroot="sampleos", origin=ORIGIN).deployment
        with pytest.raises(NoRollback):
            ops.rollback(s)
    assert s.staged is not None and s.staged.same(staged)
    assert [d.csum for d in s.all_deployments()] == [c2, c1]
    # Nothing is bootable yet: entries unchanged, and the merge waits for finalize.
    assert len(_entries(env.path)) == 1
    (s.deployment_dir(d1) / "etc/late.conf").write_text("edited after staging\n")
    with s.lock():
        r = finalize_staged(s)
    assert r is not None and r.etc is not None
    new_etc = s.deployment_dir(r.deployment) / "etc"
    assert (new_etc / "late.conf").read_text() == "edited after staging\n"
    assert (new_etc / "foo.conf").read_text() == "a=LOCAL\n"
    assert s.staged is None and not s.staged_path.exists()
    assert [d.csum for d in s.deployments] == [c2, c1]
    pending, rollback = s.pending_and_rollback()
    assert pending is not None and pending.csum == c2
    assert rollback is None
    # Rollback while the update is only queued: the booted deployment goes back to the front.
    with s.lock():
        rb = ops.rollback(s)
    assert rb.reverted and [d.csum for d in s.deployments] == [c1, c2]
    with s.lock():
        rb = ops.rollback(s)
    assert not rb.reverted and [d.csum for d in s.deployments] == [c2, c1]
    assert (var / "data").read_text() == "kept\n"


def test_rollback_drops_staged(env: SysrootEnv) -> None:
    c1, c2, c3 = env.commit(1), env.commit(2), env.commit(3)
    _deploy(env, c1)
    d2 = _deploy(env, c2)
    s = env.sysroot
    _book_boot(s, d2)
    with s.lock():
        staged = stage(s, c3, stateroot="sampleos", origin=ORIGIN).deployment
        ops.rollback(s)
    assert s.staged is None
    assert [d.csum for d in s.deployments] == [c1, c2]
    assert not s.deployment_dir(staged).exists()


def test_immutable_bit_is_set_unless_debug_env_and_cleared_for_removal(env: SysrootEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSTREE_SYSROOT_DEBUG")
    d1 = _deploy(env, env.commit(1))
    root = env.sysroot.deployment_dir(d1)
    if not immutable.is_immutable(root):
        pytest.skip("this filesystem does not support the immutable flag")
    with pytest.raises(PermissionError):
        (root / "newfile").write_text("x")
    (root / "etc/ok").write_text("etc stays writable\n")
    _deploy(env, env.commit(2))
    _deploy(env, env.commit(3))  # drops d1: cleanup must clear +i first
    assert not root.exists()
    for d in env.reopen().deployments:
        immutable.set_immutable(env.sysroot.deployment_dir(d), False)


def test_cleanup_removes_leftovers_of_killed_deploys(env: SysrootEnv) -> None:
    d1 = _deploy(env, env.commit(1))
    s = env.sysroot
    stray = env.path / "ostree/deploy/sampleos/deploy" / f"{'0' * 64}.0"
    stray.mkdir()
    (env.path / "ostree/deploy/sampleos/.bootree-staging/junk").mkdir(parents=True)
    (env.path / "boot/ostree/.tmp-sampleos-abc").mkdir()
    (env.path / "boot/loader.0").mkdir()
    with s.lock():
        result = cleanup(s)
    assert result.deployments_removed == (f"{'0' * 64}.0",)
    assert not stray.exists()
    assert not (env.path / "ostree/deploy/sampleos/.bootree-staging").exists()
    assert not (env.path / "boot/ostree/.tmp-sampleos-abc").exists()
    assert not (env.path / "boot/loader.0").exists()
    assert s.deployment_dir(d1).is_dir()

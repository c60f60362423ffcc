"""A composefs mount of a deployment equals its hardlink checkout, file by file (root, EROFS, overlay).

The sample OS (with a real shell, setuid, xattrs, symlinks, empty and large files) is committed
with ``--generate-composefs-metadata`` and deployed with ``[composefs] enabled = yes``. In a
private mount namespace (``unshare -m``) its ``.ostree.cfs`` is mounted as EROFS and stacked with
overlayfs on ``ostree/repo/objects`` as the data-only layer; every path, type, mode, owner,
xattr and content hash under the mount equals the hardlink deployment's. Then one object is
replaced by other bytes of the same size: ``fsck --composefs`` names it, and deploying the
commit again is refused because the image no longer has the commit's digest. With
``verity=require`` (no fs-verity on the objects here) reading a file fails with EIO.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

SKIP_TOP = {"etc", "var", ".ostree.cfs", "boot", "sysroot"}  # deployment-only or image-added top dirs


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mounts in a private namespace)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    try:
        fs = Path("/proc/filesystems").read_text()
    except OSError:
        return "no /proc/filesystems"
    if "erofs" not in fs or "overlay" not in fs:
        return "the kernel has no EROFS or overlayfs"
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) < (6, 5):
        return "overlayfs data-only layers need Linux 6.5"
    return None


_REASON = _why_not()
pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def snapshot(root: Path) -> dict[str, list[object]]:
    """Every path under ``root`` (minus SKIP_TOP): type+mode, owner, size, xattrs, content/target."""
    out: dict[str, list[object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in SKIP_TOP]
            filenames = [f for f in filenames if f not in SKIP_TOP]
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in sorted(os.listxattr(p, follow_symlinks=False))}
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = ""
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            out[os.path.normpath(os.path.join(rel_dir, name))] = [st.st_mode, st.st_uid, st.st_gid, size, xattrs, what]
    return out


def _mounted(image: Path, objects: Path, work: Path, *, verity: bool = False, read: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run this file in a private mount namespace: mount the image, print a snapshot (or read a file)."""
    args = [sys.executable, __file__, str(image), str(objects), str(work), "verity" if verity else "plain", read or ""]
    return subprocess.run(["unshare", "-m", "--propagation", "private", *args], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))


def bootree(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")
    proc = subprocess.run([sys.executable, "-m", "bootree", *args], env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"bootree {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _tree(tmp: Path) -> Path:
    tree = make_tree(tmp / "v1", 1, with_shell=True)
    (tree / "usr/lib/ostree").mkdir(parents=True, exist_ok=True)
    (tree / "usr/lib/ostree/prepare-root.conf").write_text("[composefs]\nenabled = yes\n")
    (tree / "usr/share/big.bin").write_bytes(bytes(i % 251 for i in range(300000)))
    (tree / "usr/share/empty").write_bytes(b"")
    (tree / "usr/share/tagged").write_bytes(b"tagged\n")
    os.setxattr(tree / "usr/share/tagged", "user.note", b"composefs keeps xattrs")
    os.setxattr(tree / "usr/share", "user.dirnote", b"on a directory")
    (tree / "usr/bin/suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(tree / "usr/bin/suid", 0o4755)
    os.symlink("../share/big.bin", tree / "usr/bin/biglink")
    return tree


def test_composefs_mount_equals_hardlink_deployment(tmp_path: Path) -> None:
    sr = tmp_path / "sysroot"
    bootree("admin", "init-fs", str(sr))
    bootree("admin", "os-init", f"--sysroot={sr}", "sampleos")
    tree = _tree(tmp_path)
    bootree(f"--repo={sr}/ostree/repo", "commit", "-b", "sampleos/stable", f"--tree=dir={tree}", "--subject=v1",
            "--owner-uid=0", "--owner-gid=0", "--generate-composefs-metadata")
    bootree("admin", "deploy", f"--sysroot={sr}", "--os=sampleos", "sampleos/stable")
    (dep,) = (sr / "ostree/deploy/sampleos/deploy").glob("*.0")
    image = dep / ".ostree.cfs"
    assert image.is_file()
    assert "composefs: " in bootree("admin", "status", f"--sysroot={sr}").stdout
    objects = sr / "ostree/repo/objects"

    proc = _mounted(image, objects, tmp_path / "mnt")
    assert proc.returncode == 0, proc.stderr
    mounted = json.loads(proc.stdout)
    expected = snapshot(dep)
    assert len(expected) > 20
    assert mounted.keys() == expected.keys()
    for path in expected:
        assert mounted[path] == expected[path], path
    assert mounted["usr/share/tagged"][4] == {"user.note": b"composefs keeps xattrs".hex()}
    assert stat.S_IMODE(mounted["usr/bin/suid"][0]) == 0o4755

    # verity=require: the objects carry no fs-verity here, so reading a stub's data fails.
    proc = _mounted(image, objects, tmp_path / "mnt", verity=True, read="usr/share/big.bin")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["error"] == "EIO"  # (objects never get fs-verity in this test)

    # Replace one object's bytes (same size): fsck names it, and a new deploy is refused.
    assert bootree(f"--repo={sr}/ostree/repo", "fsck", "--composefs").returncode == 0
    listing = bootree(f"--repo={sr}/ostree/repo", "ls", "-C", "sampleos/stable", "/usr/share/big.bin").stdout.split()
    obj = next(w for w in listing if len(w) == 64)
    path = objects / obj[:2] / f"{obj[2:]}.file"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x55
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(bytes(data))
    fsck = bootree(f"--repo={sr}/ostree/repo", "fsck", "--composefs", check=False)
    assert fsck.returncode == 1
    assert obj in fsck.stderr
    assert "fs-verity digest" in fsck.stderr  # the deployment's image pins the old digest
    again = bootree("admin", "deploy", f"--sysroot={sr}", "--os=sampleos", "sampleos/stable", check=False)
    assert again.returncode == 1
    assert "composefs image" in again.stderr and "digest" in again.stderr
    assert len(list((sr / "ostree/deploy/sampleos/deploy").glob("*.[0-9]"))) == 1


def _main(argv: list[str]) -> int:
    """In the private namespace: mount, then print a snapshot or the result of one read."""
    from bootree.composefs.mount import mount_composefs, unmount

    image, objects, work, mode, read = Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3], argv[4]
    target, lower = work / "root", work / "lower"
    target.mkdir(parents=True, exist_ok=True)
    lower.mkdir(parents=True, exist_ok=True)
    mount_composefs(image, objects, target, lower, verity_require=mode == "verity")
    try:
        if read:
            try:
                (target / read).read_bytes()
                result = "ok-with-verity"
            except OSError as e:
                import errno

                result = errno.errorcode.get(e.errno or 0, str(e))
            print(json.dumps({"error": result}))
        else:
            print(json.dumps(snapshot(target)))
    finally:
        unmount(target, lower)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

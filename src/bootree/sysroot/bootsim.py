"""Booting a directory sysroot: play the bootloader, then ostree-prepare-root, then chroot.

Layer: sysroot. On a real machine the bootloader picks the default BLS entry, the kernel gets
its ``ostree=`` argument, and ``ostree-prepare-root`` in the initramfs turns the deployment it
names into ``/``: ``/usr`` read-only, the stateroot's ``/var`` bind-mounted, the physical root at
``/sysroot``. :func:`boot` does the same for a sysroot that is just a directory, so that tests
and the demo exercise the real semantics (what is booted, what survives an update) without a
VM:

1. *shutdown* of the previous boot: finalize a staged deployment (ostree-finalize-staged);
2. *bootloader*: read ``boot/loader/entries``, pick the entry with the highest ``version`` (the
   default, index 0), take its ``ostree=`` argument and resolve it through the symlink farm;
3. *record* the booted deployment in ``<sysroot>/run/bootree/booted`` (the runtime directory of
   a directory sysroot plays ``/run``, and a new boot clears it), so that ``status``,
   ``--stage``, ``finalize-staged`` and ``rollback`` see it;
4. *prepare-root*, in a child process with a private mount namespace (``unshare(CLONE_NEWNS)``,
   propagation private, so nothing leaks to the host): bind ``/usr`` read-only, the stateroot's
   ``var`` on ``/var``, the sysroot on ``/sysroot``, ``proc``, ``/dev``, a tmpfs on ``/run`` and
   ``/tmp``; then ``chroot`` into the deployment and exec the command.

Needs root (mount namespaces). Nothing else in bootree calls mount(2).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.errors import BootSimulationError, SysrootError
from bootree.format.bls import BlsEntry, strverscmp
from bootree.format.kargs import Kargs
from bootree.format.keyfile import KeyFile
from bootree.sysroot import layout
from bootree.sysroot.deploy import DeployResult, finalize_staged
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

__all__ = ["BootChoice", "BootResult", "boot", "can_boot", "choose_entry", "run_in_deployment"]

log = logging.getLogger(__name__)

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


@dataclass(frozen=True, slots=True)
class BootChoice:
    """The entry the simulated bootloader picked and the deployment its ``ostree=`` names."""

    entry_file: str
    entry: BlsEntry
    ostree_arg: str
    deployment: Deployment


@dataclass(frozen=True, slots=True)
class BootResult:
    """A finished simulated boot: what was finalized first, what booted, the command's status."""

    finalized: DeployResult | None
    choice: BootChoice
    returncode: int


def can_boot() -> str | None:
    """``None`` if this process can create mount namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "booting a sysroot needs root (mount namespaces and bind mounts)"
    if not os.path.exists("/proc/self/ns/mnt"):
        return "this kernel has no mount namespaces"
    return None


def choose_entry(sysroot: Sysroot) -> BootChoice:
    """Play the bootloader: the default entry (highest ``version``) and its deployment.

    Raises:
        SysrootError: when there is no entry, or its ``ostree=`` does not resolve.
    """
    entries = sysroot.path / "boot/loader/entries"
    candidates: list[tuple[str, str, BlsEntry]] = []
    for name in sorted(os.listdir(entries)) if entries.is_dir() else []:
        if name.endswith(".conf"):
            e = BlsEntry.parse((entries / name).read_text("utf-8"))
            candidates.append((e.version or "", name, e))
    if not candidates:
        raise SysrootError("nothing to boot: no boot entries", hint="deploy something first")
    best = candidates[0]
    for c in candidates[1:]:
        if strverscmp(c[0], best[0]) > 0:
            best = c
    _, name, entry = best
    arg = Kargs.parse(entry.options).get("ostree")
    if not arg:
        raise SysrootError(f"boot entry {name} has no ostree= argument")
    real = os.path.realpath(sysroot.path / arg.lstrip("/"))
    for d in sysroot.deployments:
        if os.path.realpath(sysroot.deployment_dir(d)) == real:
            return BootChoice(name, entry, arg, d)
    raise SysrootError(f"boot entry {name}: ostree={arg} does not resolve to a deployment")


def _record_boot(sysroot: Sysroot, choice: BootChoice) -> None:
    """A new boot: clear the runtime dir's boot state and record what is booted."""
    run = sysroot.runtime_dir
    for rel in ("bootree", "ostree"):
        _fs.rmtree(run / rel)
    kf = KeyFile()
    kf.set("booted", "stateroot", choice.deployment.stateroot)
    kf.set("booted", "deployment", choice.deployment.name)
    kf.set("booted", "ostree", choice.ostree_arg)
    kf.set("booted", "entry", choice.entry_file)
    os.makedirs(sysroot.booted_record_path.parent, 0o755, exist_ok=True)
    _fs.write_atomic(sysroot.booted_record_path, kf.to_text().encode())


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, src: str | None, target: Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    def b(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    if libc.mount(b(src), os.fsencode(target), b(fstype), ctypes.c_ulong(flags), b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src or fstype} on {target}: {os.strerror(err)}")


def _is_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _prepare_root(sysroot: Path, root: Path, var: Path) -> None:
    """In the child, in its own mount namespace: ostree-prepare-root's mounts."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _mount(libc, None, Path("/"), None, _MS_REC | _MS_PRIVATE)
    if _is_dir(root / "sysroot"):
        _mount(libc, os.fspath(sysroot), root / "sysroot", None, _MS_BIND)
    else:
        log.warning("deployment has no /sysroot directory; the sysroot is not mounted there")
    if not _is_dir(root / "var"):
        raise OSError(2, "the deployment has no /var directory to mount the stateroot's var on")
    _mount(libc, os.fspath(var), root / "var", None, _MS_BIND | _MS_REC)
    if _is_dir(root / "usr"):
        _mount(libc, os.fspath(root / "usr"), root / "usr", None, _MS_BIND | _MS_REC)
        _mount(libc, None, root / "usr", None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
    if _is_dir(root / "proc"):
        _mount(libc, "proc", root / "proc", "proc", _MS_NOSUID | _MS_NODEV)
    if _is_dir(root / "dev"):
        _mount(libc, "/dev", root / "dev", None, _MS_BIND | _MS_REC)
    for d in ("run", "tmp"):
        if _is_dir(root / d):
            _mount(libc, "tmpfs", root / d, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777" if d == "tmp" else "mode=0755")
    if _is_dir(root / "run"):
        (root / "run/ostree-booted").touch()
    os.chroot(root)
    os.chdir("/")


def run_in_deployment(sysroot: Sysroot, deployment: Deployment, command: Sequence[str],
                      *, env: dict[str, str] | None = None) -> int:
    """Run ``command`` chrooted in ``deployment`` with prepare-root's mounts; returns its status.

    Raises:
        BootSimulationError: when the namespace or a mount cannot be set up, or the command
            cannot be executed.
    """
    reason = can_boot()
    if reason:
        raise BootSimulationError(reason)
    root = sysroot.deployment_dir(deployment)
    var = sysroot.path / layout.var_dir(deployment.stateroot)
    child_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                 "LANG": "C.UTF-8", "TERM": os.environ.get("TERM", "dumb")}
    child_env.update(env or {})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 127
        try:
            os.close(r)
            os.set_inheritable(w, False)
            _prepare_root(sysroot.path, root, var)
            exe = shutil.which(command[0], path=child_env["PATH"]) if "/" not in command[0] else command[0]
            if exe is None:
                raise OSError(2, f"{command[0]}: command not found in the deployment")
            os.execve(exe, list(command), child_env)
        except BaseException as e:  # report to the parent and leave without cleanup handlers
            with contextlib.suppress(Exception):
                os.write(w, str(e).encode(errors="replace")[:4000])
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    if err:
        raise BootSimulationError(f"could not boot {deployment.name}: {err.decode(errors='replace')}")
    return os.waitstatus_to_exitcode(status)


def boot(sysroot: Sysroot, command: Sequence[str], *, finalize: bool = True,
         env: dict[str, str] | None = None) -> BootResult:
    """Reboot a directory sysroot into its default entry and run ``command`` there.

    The sysroot must be locked by the caller for steps 1–3; the command runs after.

    Raises:
        BootSimulationError: see :func:`run_in_deployment`.
        SysrootError: when there is nothing to boot.
    """
    if sysroot.is_root:
        raise BootSimulationError("refusing to simulate a boot of the running system's /")
    finalized = finalize_staged(sysroot) if finalize else None
    choice = choose_entry(sysroot)
    _record_boot(sysroot, choice)
    sysroot.load()
    log.info("booted %s/%s from %s", choice.deployment.stateroot, choice.deployment.name, choice.entry_file)
    code = run_in_deployment(sysroot, choice.deployment, command, env=env) if command else 0
    return BootResult(finalized, choice, code)

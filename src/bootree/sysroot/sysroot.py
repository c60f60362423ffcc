"""The sysroot: open it, load its deployment list from the boot entries, lock it.

Layer: sysroot. A :class:`Sysroot` is a snapshot of what the bootloader would boot: the
deployment list is read back from ``boot/loader/entries`` exactly as libostree loads it
(``ostree-format.md`` §9.4: ``boot/loader`` → bootversion, ``ostree/boot.B`` → subbootversion,
entries sorted by ``version`` with strverscmp, descending, each ``ostree=`` resolved through the
symlink farm to ``<csum>.<serial>``), so bootree and ``ostree admin`` agree on the list. It is
cheap to :meth:`Sysroot.load` again after a change.

Runtime state (what is booted, the staged deployment) lives in the sysroot's *runtime
directory*: ``/run`` for the real root, ``<sysroot>/run`` for a directory sysroot, so that test
sysroots never see each other's state. On the real root the booted deployment is the one named
by ``ostree=`` on ``/proc/cmdline``; on a directory sysroot it is the one recorded by the boot
simulator (:mod:`bootree.sysroot.bootsim`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bootree import _fs
from bootree.errors import BootConfigDamaged, BootreeError, SysrootError, SysrootNotFound
from bootree.format import gvariant
from bootree.format.bls import BlsEntry, strverscmp
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.kargs import Kargs
from bootree.format.keyfile import KeyFile
from bootree.format.objects import ObjectType
from bootree.repo import Repo
from bootree.sysroot import layout
from bootree.sysroot.deployment import Deployment, Origin

__all__ = ["StagedState", "Sysroot"]

log = logging.getLogger(__name__)

#: Environment knob shared with ostree: ``mutable-deployments`` skips ``chattr +i``.
DEBUG_ENV = "OSTREE_SYSROOT_DEBUG"
_STAGED = "ostree/staged-deployment"
_STAGED_LOCKED = "ostree/staged-deployment-locked"
_BOOTED = "bootree/booted"


def _utf8(data: bytes, what: str) -> str:
    """Text of a sysroot file that must be UTF-8 (GKeyFile's and ostree's rule)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SysrootError(f"{what}: not valid UTF-8 (byte {e.start})") from None


def _readlink(p: Path) -> str | None:
    try:
        return os.readlink(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == 22:  # EINVAL: not a symlink
            return None
        raise


@dataclass(frozen=True, slots=True)
class StagedState:
    """What ``deploy --stage`` leaves for ``finalize-staged`` (``/run/ostree/staged-deployment``).

    Serialized as the ``a{sv}`` ostree uses: ``target`` and ``merge-deployment`` as
    ``a{sv}{name, osname, bootcsum}``, ``kargs`` and ``overlay-initrds`` as ``as``.
    """

    target: tuple[str, str, str]  # (stateroot, "<csum>.<serial>", bootcsum)
    merge: tuple[str, str, str] | None
    kargs: tuple[str, ...]
    overlay_initrds: tuple[str, ...] = ()

    @staticmethod
    def _dep(t: tuple[str, str, str]) -> list[tuple[str, Variant]]:
        return [("name", Variant("s", t[1])), ("osname", Variant("s", t[0])), ("bootcsum", Variant("s", t[2]))]

    def to_bytes(self) -> bytes:
        """The ``a{sv}`` bytes."""
        items: list[tuple[str, Variant]] = [("target", Variant("a{sv}", self._dep(self.target)))]
        if self.merge is not None:
            items.append(("merge-deployment", Variant("a{sv}", self._dep(self.merge))))
        items.append(("kargs", Variant("as", list(self.kargs))))
        items.append(("overlay-initrds", Variant("as", list(self.overlay_initrds))))
        return gvariant.encode("a{sv}", items)

    @classmethod
    def from_bytes(cls, data: bytes) -> StagedState:
        """Parse the ``a{sv}``.

        Raises:
            SysrootError: for a malformed file.
        """
        try:
            d = {k: v.value for k, v in gvariant.decode_vardict(data)}

            def dep(raw: list[tuple[str, Variant]]) -> tuple[str, str, str]:
                m = {k: v.value for k, v in raw}
                return (str(m["osname"]), str(m["name"]), str(m["bootcsum"]))

            target = cast("list[tuple[str, Variant]]", d["target"])
            merge = cast("list[tuple[str, Variant]] | None", d.get("merge-deployment"))
            return cls(
                dep(target),
                dep(merge) if merge is not None else None,
                tuple(cast("list[str]", d.get("kargs", []))),
                tuple(cast("list[str]", d.get("overlay-initrds", []))),
            )
        except (BootreeError, KeyError, TypeError, ValueError) as e:
            raise SysrootError(f"malformed staged deployment state: {e}") from e


class Sysroot:
    """An ostree sysroot on disk and the deployment list its boot entries describe."""

    def __init__(self, path: Path, repo: Repo) -> None:
        self.path = path
        self.repo = repo
        self.bootversion = 0
        self.subbootversion = 0
        self.deployments: tuple[Deployment, ...] = ()
        self.staged: Deployment | None = None
        self.staged_state: StagedState | None = None
        self.booted: Deployment | None = None
        self.loaded = False
        #: What :meth:`load` found damaged in the boot configuration (and how it read it).
        self.damage: list[str] = []

    # --- front doors ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: os.PathLike[str] | str) -> Sysroot:
        """Open and load a sysroot.

        Raises:
            SysrootNotFound: if ``path/ostree/repo`` is not a repository.
            SysrootError: for entries that do not parse or point nowhere.
        """
        p = Path(path)
        if not (p / layout.REPO / "config").is_file():
            raise SysrootNotFound(p)
        sysroot = cls(p, Repo.open(p / layout.REPO))
        sysroot.load()
        return sysroot

    @contextlib.contextmanager
    def lock(self, *, timeout: float = 30.0) -> Iterator[None]:
        """Hold the sysroot lock and reload: an exclusive OFD lock on ``ostree/lock``.

        Same protocol as libostree's (systemd-style lock files): the holder unlinks the file on
        release, so a waiter that wins the lock on an unlinked file retries on a fresh one.
        That keeps the sysroot free of a stray ``ostree/lock`` and interoperates with ostree.

        Raises:
            LockTimeout: when another process holds the lock for ``timeout`` seconds.
        """
        path = self.path / "ostree/lock"
        while True:
            lk = _fs.OfdLock(path)
            lk.acquire(exclusive=True, timeout=timeout)
            try:
                linked = os.stat(path).st_ino == os.fstat(lk.fd).st_ino if lk.fd is not None else False
            except FileNotFoundError:
                linked = False
            if linked:
                break
            lk.release()
        try:
            self.load()
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            lk.release()

    # --- paths -------------------------------------------------------------------------------

    @functools.cached_property
    def is_root(self) -> bool:
        """Whether this sysroot is the running system's ``/``."""
        try:
            return os.path.samefile(self.path, "/")
        except OSError:
            return False

    @property
    def runtime_dir(self) -> Path:
        """``/run`` for the real root, ``<sysroot>/run`` for a directory sysroot."""
        return Path("/run") if self.is_root else self.path / "run"

    @property
    def staged_path(self) -> Path:
        """Where the staged deployment's state is kept."""
        return self.runtime_dir / _STAGED

    @property
    def staged_locked_path(self) -> Path:
        """If this exists, ``finalize-staged`` does nothing (rpm-ostree's finalization lock)."""
        return self.runtime_dir / _STAGED_LOCKED

    @property
    def booted_record_path(self) -> Path:
        """Where the boot simulator records the booted deployment of a directory sysroot."""
        return self.runtime_dir / _BOOTED

    def deployment_dir(self, d: Deployment) -> Path:
        """Absolute path of a deployment's root."""
        return self.path / d.dir

    @property
    def mutable_deployments(self) -> bool:
        """``OSTREE_SYSROOT_DEBUG=mutable-deployments``: do not ``chattr +i`` deployment roots."""
        return "mutable-deployments" in os.environ.get(DEBUG_ENV, "").split(",")

    # --- loading -------------------------------------------------------------------------------

    def _read_origin(self, stateroot: str, csum: str, serial: int) -> Origin | None:
        rel = layout.origin_path(stateroot, csum, serial)
        try:
            data = (self.path / rel).read_bytes()
        except FileNotFoundError:
            return None
        return Origin(_utf8(data, str(rel)))

    def commit_version(self, csum: Checksum) -> str | None:
        """The ``version`` metadata of a commit, or ``None`` (also when the commit is gone)."""
        try:
            if not self.repo.has_object(ObjectType.COMMIT, csum):
                return None
            return self.repo.read_commit(csum).version
        except BootreeError:
            return None

    def _parse_entry(self, entry: BlsEntry, fname: str) -> Deployment:
        kargs = Kargs.parse(entry.options)
        ostree_arg = kargs.get("ostree")
        if not ostree_arg:
            raise SysrootError(f"boot entry {fname} has no ostree= argument")
        link = layout.parse_ostree_karg(ostree_arg)
        # Resolved as ostree resolves it: through the ostree/boot.B symlink named in the
        # argument, then the farm link; a step that is missing is an error in both tools.
        where = self.path / ostree_arg.lstrip("/")
        target = _readlink(where)
        if target is None:
            raise SysrootError(f"boot entry {fname}: {ostree_arg} does not resolve to a deployment "
                               f"(no link {ostree_arg.lstrip('/')})")
        csum, serial = layout.parse_deploy_name(target.rstrip("/").rsplit("/", 1)[-1])
        if not where.is_dir():
            raise SysrootError(f"boot entry {fname}: deployment {layout.deploy_dir(link.stateroot, csum, serial)} "
                               "is missing")
        return Deployment(
            stateroot=link.stateroot,
            csum=csum,
            deployserial=serial,
            bootcsum=link.bootcsum,
            kargs=kargs,
            origin=self._read_origin(link.stateroot, csum, serial),
            version=self.commit_version(csum),
            bootserial=link.bootserial,
            overlay_initrds=entry.overlay_initrds,
        )

    def _read_bootversion(self) -> int:
        """``boot/loader`` → bootversion, as libostree 2022.7 reads it.

        A missing link means bootversion 0 (ostree's fallback: ``loader.0`` is read, and its
        deployments are listed); anything but a symlink to ``loader.0``/``loader.1`` is an error.
        What looks damaged is noted in :attr:`damage`.
        """
        p = self.path / layout.LOADER_LINK
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            if any(os.path.lexists(self.path / layout.loader_dir(b)) for b in (0, 1)):
                self.damage.append("boot/loader is missing, read as loader.0 (as ostree does)")
            return 0
        if not stat.S_ISLNK(st.st_mode):
            raise SysrootError("boot/loader is not a symbolic link (it must point to loader.0 or loader.1)")
        target = os.readlink(p)
        if target not in ("loader.0", "loader.1"):
            raise SysrootError(f"unexpected boot/loader target {target!r}")
        bootversion = int(target[-1])
        if not (self.path / layout.loader_dir(bootversion)).is_dir():
            self.damage.append(f"boot/loader points to {target}, which is missing")
        return bootversion

    def load(self) -> None:
        """(Re)read bootversion, subbootversion, the deployment list, staged and booted.

        Raises:
            SysrootError: for a malformed ``boot/loader`` link or boot entry, or an entry that
                names a deployment that is not there (ostree refuses these too).
        """
        self.damage = []
        self.bootversion = self._read_bootversion()
        self.subbootversion = self.read_subbootversion(self.bootversion)
        deployments: list[tuple[str, Deployment]] = []
        entries = self.path / layout.entries_dir(self.bootversion)
        if entries.is_dir():
            for fname in sorted(os.listdir(entries)):
                if not (fname.startswith("ostree-") and fname.endswith(".conf")):
                    continue
                rel = f"{layout.entries_dir(self.bootversion)}/{fname}"
                entry = BlsEntry.parse(_utf8((entries / fname).read_bytes(), rel))
                deployments.append((entry.version or "", self._parse_entry(entry, fname)))
        elif (self.path / layout.loader_dir(self.bootversion)).is_dir():
            self.damage.append(f"{layout.entries_dir(self.bootversion)} is missing")

        def newest_first(a: tuple[str, Deployment], b: tuple[str, Deployment]) -> int:
            return strverscmp(b[0], a[0])

        deployments.sort(key=functools.cmp_to_key(newest_first))
        self.deployments = tuple(d for _, d in deployments)
        self.booted = self._find_booted()
        self._load_staged()
        self.loaded = True

    def unlisted_deployments(self, also: Sequence[Deployment] = ()) -> tuple[str, ...]:
        """Deployment directories (``<stateroot>/<csum>.<serial>``) that no entry, no staged
        state and nothing in ``also`` names: garbage after an interrupted cleanup, or lost by a
        damaged configuration."""
        keep = {(d.stateroot, d.name) for d in (*self.all_deployments(), *also)}
        out = []
        for stateroot in self.stateroots():
            ddir = self.path / layout.deployments_dir(stateroot)
            for name in sorted(os.listdir(ddir)) if ddir.is_dir() else []:
                if not name.endswith(".origin") and (stateroot, name) not in keep and (ddir / name).is_dir():
                    out.append(f"{stateroot}/{name}")
        return tuple(out)

    def check_writable(self, new_list: Sequence[Deployment] = ()) -> None:
        """Refuse a write when the boot configuration was damaged and lost deployments.

        Every write path (the list swap, cleanup) calls this first: with a damaged
        configuration the deployments it does not list are not garbage, and writing a new list
        would delete them (and their local ``/etc``).

        Raises:
            BootConfigDamaged: with what is damaged and which deployments would be lost.
        """
        if self.damage:
            unlisted = self.unlisted_deployments(new_list)
            if unlisted:
                raise BootConfigDamaged(tuple(self.damage), unlisted)

    def read_subbootversion(self, bootversion: int) -> int:
        """``ostree/boot.B`` → ``boot.B.S`` gives S (0 when absent)."""
        target = _readlink(self.path / layout.bootversion_link(bootversion))
        return 1 if target is not None and target.endswith(".1") else 0

    def _find_booted(self) -> Deployment | None:
        if self.is_root:
            try:
                cmdline = Path("/proc/cmdline").read_text()
            except OSError:
                return None
            arg = Kargs.parse(cmdline).get("ostree")
            if not arg:
                return None
            try:
                real = os.path.realpath(self.path / arg.lstrip("/"))
            except OSError:
                return None
            for d in self.deployments:
                if os.path.realpath(self.deployment_dir(d)) == real:
                    return d
            return None
        try:
            kf = KeyFile.from_text(self.booted_record_path.read_text("utf-8"))
        except (FileNotFoundError, ValueError, BootreeError):  # ValueError: not UTF-8
            return None
        stateroot, name = kf.get("booted", "stateroot"), kf.get("booted", "deployment")
        for d in self.deployments:
            if d.stateroot == stateroot and d.name == name:
                return d
        return None

    def _load_staged(self) -> None:
        self.staged = None
        self.staged_state = None
        try:
            data = self.staged_path.read_bytes()
        except FileNotFoundError:
            return
        state = StagedState.from_bytes(data)
        stateroot, name, bootcsum = state.target
        csum, serial = layout.parse_deploy_name(name)
        if not (self.path / layout.deploy_dir(stateroot, csum, serial)).is_dir():
            log.warning("staged deployment %s is missing; ignoring the staged state", name)
            return
        self.staged_state = state
        self.staged = Deployment(
            stateroot=stateroot,
            csum=csum,
            deployserial=serial,
            bootcsum=bootcsum,
            kargs=Kargs.from_argv(state.kargs),
            origin=self._read_origin(stateroot, csum, serial),
            version=self.commit_version(csum),
            staged=True,
            overlay_initrds=state.overlay_initrds,
        )

    # --- queries -------------------------------------------------------------------------------

    def all_deployments(self) -> tuple[Deployment, ...]:
        """The staged deployment (if any) first, then the boot list, as ``ostree admin status``."""
        return ((self.staged,) if self.staged else ()) + self.deployments

    def stateroots(self) -> list[str]:
        """Initialized stateroots (directories under ``ostree/deploy``)."""
        base = self.path / "ostree/deploy"
        return sorted(n for n in os.listdir(base) if (base / n).is_dir()) if base.is_dir() else []

    def default_stateroot(self) -> str:
        """The stateroot a deploy without ``--os`` goes into: the booted one, else the only one.

        Raises:
            SysrootError: when the sysroot is not booted and has no or several stateroots.
        """
        if self.booted is not None:
            return self.booted.stateroot
        roots = self.stateroots()
        if len(roots) != 1:
            raise SysrootError("no stateroot given (--os) and the sysroot is not booted into one stateroot",
                               hint=f"name one with --os ({', '.join(roots) or 'none exists: run admin os-init'})")
        return roots[0]

    def merge_deployment(self, stateroot: str | None) -> Deployment | None:
        """The deployment whose /etc and kargs a new one inherits (ostree's rule).

        The booted deployment when it belongs to ``stateroot``, else the first (default)
        deployment of ``stateroot``.
        """
        if stateroot is None:
            if self.booted is None:
                return self.deployments[0] if self.deployments else None
            stateroot = self.booted.stateroot
        if self.booted is not None and self.booted.stateroot == stateroot:
            return self.booted
        return next((d for d in self.deployments if d.stateroot == stateroot), None)

    def pending_and_rollback(self, stateroot: str | None = None) -> tuple[Deployment | None, Deployment | None]:
        """ostree's pending (first before booted) and rollback (first after) of the booted stateroot."""
        if self.booted is None:
            return None, None
        sr = stateroot or self.booted.stateroot
        pending = rollback = None
        before = True
        for d in self.deployments:
            if d.same(self.booted):
                before = False
                continue
            if d.stateroot != sr:
                continue
            if before and pending is None:
                pending = d
            elif not before and rollback is None:
                rollback = d
        return pending, rollback

    def find(self, index: int) -> Deployment:
        """Deployment by status index (staged counts as 0 when present, as in ostree).

        Raises:
            DeploymentNotFound: for an index out of range.
        """
        from bootree.errors import DeploymentNotFound

        all_d = self.all_deployments()
        if not 0 <= index < len(all_d):
            raise DeploymentNotFound(f"at index {index} (there are {len(all_d)})")
        return all_d[index]

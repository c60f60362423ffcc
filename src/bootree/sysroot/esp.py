"""The EFI System Partition mirror: systemd-boot entries with boot counting, written crash-safely.

Layer: sysroot. ostree's own entries live in ``boot/loader.{0,1}`` behind a symlink that FAT
cannot hold and systemd-boot will not follow, so the ESP gets a *mirror* of the deployment list
(``docs/bootchain.md``, "ESP layout" and "Facts the code relies on"):

* one immutable Type #1 entry per deployment, ``loader/entries/bootree-<seq>-<os>-<csum>.<serial>.conf``,
  where ``seq`` grows monotonically: systemd-boot sorts ids in reverse version order, so the
  deployment with the highest ``seq`` is the default. Nothing is ever pinned with ``default``
  (a pin defeats the fallback: the loader would boot a bad entry again);
* ``options`` carries ``ostree=/ostree/deploy/<os>/deploy/<csum>.<serial>``, a path that does not
  depend on the bootversion, so an entry never needs rewriting;
* kernel and initramfs in ``EFI/bootree/<bootcsum>/`` (content-addressed, shared);
* a *new* entry is written with systemd's boot counter ``+N`` (:data:`DEFAULT_TRIES`): the loader
  decrements it on every attempt, the OS removes it once its health checks passed
  (:func:`bless`), and a ``+0`` entry sorts after every other one, which is the fallback.

Why a plan: :func:`plan_sync` computes the file operations (pure, no I/O besides listing the ESP)
and :func:`execute` applies them one by one with a flush after each, in the order that keeps
every intermediate state bootable: kernels first, then the new entry under a name the loader
ignores, then its rename to ``*.conf`` (the commit point of one entry), and only then deletions.
A power cut between two operations leaves an extra or stale entry, never a missing good one.
:func:`loader_default` models systemd-boot's choice so tests can check every intermediate state.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootree import _fs
from bootree.errors import SysrootError
from bootree.format.bls import BlsEntry, strverscmp
from bootree.format.kargs import Kargs
from bootree.sysroot import _faults
from bootree.sysroot.bootloader import find_kernel, read_os_release
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

__all__ = [
    "DEFAULT_TRIES",
    "ENTRIES",
    "CountState",
    "EntryName",
    "EspDeployment",
    "Op",
    "bless",
    "execute",
    "list_entries",
    "loader_default",
    "mark_bad",
    "plan_sync",
    "sync",
]

log = logging.getLogger(__name__)

#: Attempts a new default entry gets before the loader falls back (ostree's boot-counting-tries).
DEFAULT_TRIES = 3
ENTRIES = PurePosixPath("loader/entries")
KERNELS = PurePosixPath("EFI/bootree")
LOADER_CONF = PurePosixPath("loader/loader.conf")
#: ``timeout 0``: boot the default at once; no ``default`` line, on purpose (see the module doc).
LOADER_CONF_TEXT = "timeout 0\nconsole-mode keep\neditor no\n"
_TMP_PREFIX = ".bootree-"

_NAME = re.compile(
    r"bootree-(?P<seq>[0-9]+)-(?P<os>[A-Za-z0-9_][A-Za-z0-9_.+-]*?)-(?P<dep>[0-9a-f]{64}\.[0-9]+)"
    r"(?:\+(?P<left>[0-9]+)(?:-(?P<done>[0-9]+))?)?\.conf"
)
_COUNTER = re.compile(r"\+(?P<left>[0-9]+)(?:-(?P<done>[0-9]+))?(?P<suffix>\.conf|\.efi)$")


class CountState(enum.StrEnum):
    """systemd's boot assessment states of one entry (``systemd-bless-boot status`` wording)."""

    GOOD = "good"
    """No counter: a boot of it was blessed (or it was never counted)."""
    INDETERMINATE = "indeterminate"
    """Tries left and not yet blessed."""
    BAD = "bad"
    """No tries left: the loader sorts it after every other entry."""


@dataclass(frozen=True, slots=True)
class EntryName:
    """A parsed bootree ESP entry file name."""

    seq: int
    stateroot: str
    deployment: str
    """``<csum>.<serial>``."""
    left: int | None = None
    done: int = 0

    @classmethod
    def parse(cls, filename: str) -> EntryName | None:
        """Parse ``bootree-<seq>-<os>-<csum>.<serial>[+L[-D]].conf``; ``None`` for other names."""
        m = _NAME.fullmatch(filename)
        if m is None:
            return None
        left = m.group("left")
        return cls(int(m.group("seq")), m.group("os"), m.group("dep"),
                   int(left) if left is not None else None, int(m.group("done") or 0))

    @property
    def id(self) -> str:
        """The entry id without the counter (what stays the same across the loader's renames)."""
        return f"bootree-{self.seq}-{self.stateroot}-{self.deployment}"

    @property
    def filename(self) -> str:
        """The file name with the counter, if any."""
        if self.left is None:
            return f"{self.id}.conf"
        return f"{self.id}+{self.left}{f'-{self.done}' if self.done else ''}.conf"

    @property
    def state(self) -> CountState:
        """Good, indeterminate or bad."""
        if self.left is None:
            return CountState.GOOD
        return CountState.BAD if self.left == 0 else CountState.INDETERMINATE

    def with_seq(self, seq: int) -> EntryName:
        """The same deployment and counter under another sequence number."""
        return EntryName(seq, self.stateroot, self.deployment, self.left, self.done)


def counter_state(filename: str) -> CountState:
    """The boot assessment state of any entry file name (bootree's or not)."""
    m = _COUNTER.search(filename)
    if m is None:
        return CountState.GOOD
    return CountState.BAD if int(m.group("left")) == 0 else CountState.INDETERMINATE


def strip_counter(filename: str) -> str:
    """``foo+1-2.conf`` → ``foo.conf`` (what blessing renames to)."""
    return _COUNTER.sub(lambda m: m.group("suffix"), filename)


def loader_default(filenames: Iterable[str]) -> str | None:
    """Which ``*.conf`` entry systemd-boot 252 boots with no ``default`` set (a model, for tests).

    Bad entries (``+0``) sort after all others; otherwise ids in reverse version order, and for
    equal ids the one with more tries left first (``docs/bootchain.md``, "Boot counting"). Temporary names the loader
    ignores do not count.
    """
    confs = [f for f in filenames if f.endswith(".conf") and not f.startswith(".")]
    if not confs:
        return None

    def tries(f: str) -> int:
        m = _COUNTER.search(f)
        return int(m.group("left")) if m else 1 << 30

    def cmp(a: str, b: str) -> int:
        bad_a, bad_b = counter_state(a) is CountState.BAD, counter_state(b) is CountState.BAD
        if bad_a != bad_b:
            return 1 if bad_a else -1
        c = strverscmp(strip_counter(b)[:-5], strip_counter(a)[:-5])
        if c:
            return c
        return tries(b) - tries(a)

    return sorted(confs, key=functools.cmp_to_key(cmp))[0]


@dataclass(frozen=True, slots=True)
class EspDeployment:
    """What the ESP needs to know about one deployment of the list."""

    stateroot: str
    deployment: str
    """``<csum>.<serial>``."""
    bootcsum: str
    kernel: Path
    initramfs: Path | None
    title: str
    kargs: Kargs

    @property
    def ostree_arg(self) -> str:
        """``/ostree/deploy/<os>/deploy/<csum>.<serial>``: independent of the bootversion."""
        return f"/ostree/deploy/{self.stateroot}/deploy/{self.deployment}"

    def entry(self, seq: int) -> BlsEntry:
        """The BLS entry text for this deployment with sequence number ``seq``."""
        kdir = f"/{KERNELS}/{self.bootcsum}"
        e = BlsEntry().set("title", self.title).set("version", str(seq))
        e = e.set("options", str(self.kargs.without("ostree").replace(f"ostree={self.ostree_arg}")))
        e = e.set("linux", f"{kdir}/vmlinuz")
        if self.initramfs is not None:
            e = e.set("initrd", f"{kdir}/initrd")
        return e


@dataclass(frozen=True, slots=True)
class Op:
    """One file operation on the ESP; ``path``/``dest`` are relative to the ESP root.

    ``kind``: ``mkdir``; ``write`` (``data`` or the file ``source`` to a new file at ``path``,
    fsynced); ``rename`` (``path`` → ``dest``); ``unlink``; ``rmdir``.
    """

    kind: str
    path: PurePosixPath
    dest: PurePosixPath | None = None
    data: bytes | None = None
    source: Path | None = None

    def describe(self) -> str:
        """One line for logs and test output."""
        if self.kind == "rename":
            return f"rename {self.path} -> {self.dest}"
        return f"{self.kind} {self.path}"


def list_entries(esp: Path) -> list[str]:
    """File names in ``loader/entries`` (empty when the directory does not exist)."""
    try:
        return sorted(os.listdir(esp / ENTRIES))
    except FileNotFoundError:
        return []


def _exists(p: Path) -> bool:
    return os.path.lexists(p)


def plan_sync(esp: Path, deployments: Sequence[EspDeployment], *, tries: int = DEFAULT_TRIES) -> list[Op]:
    """The operations that make the ESP boot ``deployments`` (index 0 = default) in that order.

    Entries that are already in the right relative order are kept with their counters; a
    deployment whose entry would sort wrongly gets a fresh entry with a higher sequence number
    (its counter state carried over), and a deployment new to the ESP gets ``+tries``
    (``tries=0`` disables counting). Kernels come first, entries next, deletions last.
    """
    names = list_entries(esp)
    parsed = [(f, EntryName.parse(f)) for f in names]
    existing = [(f, n) for f, n in parsed if n is not None]
    ops: list[Op] = []
    # leftovers of an interrupted sync: names the loader ignores, safe to remove first
    for f in names:
        if f.startswith(_TMP_PREFIX):
            ops.append(Op("unlink", ENTRIES / f))
    try:
        current_conf: str | None = (esp / LOADER_CONF).read_text("utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        current_conf = None
    # A `default` line (or none at all) would pin a counted entry and defeat the fallback: drop it.
    wanted_conf = LOADER_CONF_TEXT if current_conf is None else "".join(
        line for line in current_conf.splitlines(keepends=True) if line.split(maxsplit=1)[:1] != ["default"])
    if wanted_conf != current_conf:
        ops.append(Op("mkdir", LOADER_CONF.parent))
        ops.append(Op("write", LOADER_CONF.parent / ".bootree-loader.conf.tmp", data=wanted_conf.encode()))
        ops.append(Op("rename", LOADER_CONF.parent / ".bootree-loader.conf.tmp", dest=LOADER_CONF))
    ops.append(Op("mkdir", ENTRIES))
    # kernels: content-addressed directories, each file complete or absent
    seen: set[str] = set()
    for d in deployments:
        if d.bootcsum in seen:
            continue
        seen.add(d.bootcsum)
        kdir = KERNELS / d.bootcsum
        ops.append(Op("mkdir", kdir))
        files = [("vmlinuz", d.kernel)] + ([("initrd", d.initramfs)] if d.initramfs is not None else [])
        for name, src in files:
            if not _exists(esp / kdir / name):
                tmp = kdir / f"{_TMP_PREFIX}{name}.tmp"
                ops.append(Op("write", tmp, source=src))
                ops.append(Op("rename", tmp, dest=kdir / name))
    # entries: from the oldest to the default, sequence numbers must increase
    max_seq = max((n.seq for _, n in existing), default=0)
    keep: set[str] = set()
    prev = -1
    for d in reversed(deployments):
        mine = sorted((n for _, n in existing if n.stateroot == d.stateroot and n.deployment == d.deployment),
                      key=lambda n: n.seq)
        current = mine[-1] if mine else None
        if current is not None and current.seq > prev:
            keep.add(current.filename)
            prev = current.seq
            continue
        max_seq += 1
        if current is not None:
            new = current.with_seq(max_seq)
        else:
            new = EntryName(max_seq, d.stateroot, d.deployment, tries if tries > 0 else None, 0)
        tmp = ENTRIES / f"{_TMP_PREFIX}{max_seq}.tmp"
        ops.append(Op("write", tmp, data=d.entry(new.seq).to_text().encode()))
        ops.append(Op("rename", tmp, dest=ENTRIES / new.filename))
        keep.add(new.filename)
        prev = new.seq
    for f, _ in existing:
        if f not in keep:
            ops.append(Op("unlink", ENTRIES / f))
    # kernel directories no deployment uses any more
    try:
        kdirs = sorted(os.listdir(esp / KERNELS))
    except FileNotFoundError:
        kdirs = []
    for k in kdirs:
        if k in seen or not (esp / KERNELS / k).is_dir():
            continue
        for f in sorted(os.listdir(esp / KERNELS / k)):
            ops.append(Op("unlink", KERNELS / k / f))
        ops.append(Op("rmdir", KERNELS / k))
    return ops


def _flush(esp: Path) -> None:
    # FAT has no ordering guarantees between files: flush the whole filesystem after each step.
    try:
        _fs.syncfs(esp)
    except OSError:
        os.sync()


def _copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while chunk := fi.read(1 << 20):
            fo.write(chunk)
        fo.flush()
        os.fsync(fo.fileno())


def execute(esp: Path, ops: Sequence[Op], *, on_op: Callable[[int, Op], None] | None = None) -> None:
    """Apply ``ops`` in order, flushing the ESP after each one that changes a name.

    Each operation is preceded by the crash point ``esp-op-<i>`` (see :mod:`bootree.sysroot._faults`),
    which is how the power-cut tests stop the writer between any two operations.

    Raises:
        SysrootError: when a file operation fails (the ESP is left in one of the safe states).
    """
    for i, op in enumerate(ops):
        _faults.checkpoint(f"esp-op-{i}")
        if on_op is not None:
            on_op(i, op)
        p = esp / op.path
        try:
            if op.kind == "mkdir":
                if not p.is_dir():
                    os.makedirs(p, exist_ok=True)
                    _flush(esp)
            elif op.kind == "write":
                if op.source is not None:
                    _copy(op.source, p)
                else:
                    with open(p, "wb") as f:
                        f.write(op.data or b"")
                        f.flush()
                        os.fsync(f.fileno())
            elif op.kind == "rename":
                assert op.dest is not None
                os.rename(p, esp / op.dest)
                _flush(esp)
            elif op.kind == "unlink":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
                _flush(esp)
            elif op.kind == "rmdir":
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(p)
                _flush(esp)
            else:  # pragma: no cover - plans only contain the kinds above
                raise SysrootError(f"unknown ESP operation {op.kind}")
        except OSError as e:
            raise SysrootError(f"ESP update failed at '{op.describe()}': {e}") from e
        log.debug("esp: %s", op.describe())


def sync(esp: Path, deployments: Sequence[EspDeployment], *, tries: int = DEFAULT_TRIES) -> list[Op]:
    """Plan and execute; returns the operations done."""
    ops = plan_sync(esp, deployments, tries=tries)
    execute(esp, ops)
    return ops


def _count_path_to_file(esp: Path, count_path: str) -> Path:
    rel = count_path.replace("\\", "/").lstrip("/")
    if not rel or ".." in rel.split("/"):
        raise SysrootError(f"invalid LoaderBootCountPath {count_path!r}")
    return esp / rel


def bless(esp: Path, count_path: str | None) -> str | None:
    """Mark the booted entry good, as ``systemd-bless-boot good``: drop its ``+L-D`` counter.

    ``count_path`` is the EFI variable ``LoaderBootCountPath`` (backslashes, relative to the ESP
    root; the name *after* the loader's own rename). Idempotent: without a counter (no variable,
    or the file already renamed) nothing happens. Returns the new file name, or ``None``.

    Raises:
        SysrootError: if a counter-less twin already exists (systemd #33504) or the rename fails.
    """
    if not count_path:
        return None
    cur = _count_path_to_file(esp, count_path)
    if not cur.exists():
        log.info("bless: %s is gone (already blessed?)", count_path)
        return None
    good = cur.with_name(strip_counter(cur.name))
    if good == cur:
        return None
    if good.exists():
        raise SysrootError(f"cannot bless {cur.name}: {good.name} exists too")
    try:
        os.rename(cur, good)
        _flush(esp)
    except OSError as e:
        raise SysrootError(f"blessing {cur.name} failed: {e}") from e
    log.info("blessed %s -> %s", cur.name, good.name)
    return good.name


def mark_bad(esp: Path, count_path: str | None) -> str | None:
    """``systemd-bless-boot bad``: set the booted entry's tries left to 0 (``+0-D``)."""
    if not count_path:
        return None
    cur = _count_path_to_file(esp, count_path)
    m = _COUNTER.search(cur.name)
    if m is None or not cur.exists():
        return None
    done = int(m.group("done") or 0)
    bad = cur.with_name(f"{cur.name[: m.start()]}+0-{done}{m.group('suffix')}")
    if bad != cur:
        os.rename(cur, bad)
        _flush(esp)
    return bad.name


# --- the sysroot side: which ESP, which deployments ----------------------------------------------

#: Repo config group and keys: ``[bootree] esp=boot/efi`` (relative to the sysroot) turns the mirror
#: on; ``[sysroot] boot-counting-tries=N`` is ostree's key for the counter of new entries.
CONFIG_GROUP = "bootree"


def esp_dir(sysroot: Sysroot) -> Path | None:
    """Where the sysroot's ESP is mounted, when the mirror is configured (``None`` otherwise).

    ``$BOOTREE_ESP`` overrides the configuration (tests, and installs that mount it elsewhere).
    """
    env = os.environ.get("BOOTREE_ESP")
    if env:
        return Path(env)
    rel = sysroot.repo.config.get(CONFIG_GROUP, "esp")
    if not rel:
        return None
    return sysroot.path / rel.lstrip("/")


def boot_counting_tries(sysroot: Sysroot) -> int:
    """``[sysroot] boot-counting-tries`` of the repo config (default :data:`DEFAULT_TRIES`)."""
    return sysroot.repo.config.get_int("sysroot", "boot-counting-tries", DEFAULT_TRIES)


def esp_deployments(sysroot: Sysroot, deployments: Sequence[Deployment]) -> list[EspDeployment]:
    """The ESP view of a deployment list.

    Raises:
        KernelNotFound: for a deployment tree without a kernel.
    """
    out = []
    for d in deployments:
        root = sysroot.deployment_dir(d)
        kl = find_kernel(root, known_bootcsum=d.bootcsum)
        osr = read_os_release(root)
        title = osr.get("PRETTY_NAME") or osr.get("ID") or "OSTree"
        if d.version and d.version not in title:
            title += f" {d.version}"
        out.append(EspDeployment(
            stateroot=d.stateroot, deployment=d.name, bootcsum=d.bootcsum, kernel=root / kl.kernel[0],
            initramfs=root / kl.initramfs[0] if kl.initramfs else None, title=f"{title} ({d.stateroot})",
            kargs=d.kargs,
        ))
    return out


def sync_sysroot(sysroot: Sysroot, deployments: Sequence[Deployment] | None = None) -> list[Op] | None:
    """Mirror the sysroot's boot list onto its ESP, if one is configured; ``None`` if not.

    Raises:
        SysrootError: when the configured ESP is not there (not mounted on a booted system), or
            a write fails. The ostree-side list is already written then; running the sync again
            (any later deploy, or ``bootree install sync-esp``) completes it.
    """
    esp = esp_dir(sysroot)
    if esp is None:
        return None
    if not esp.is_dir() or (sysroot.is_root and not os.path.ismount(esp)):
        raise SysrootError(f"the ESP {esp} is not mounted: boot entries were not mirrored to it",
                           hint="mount the ESP and run 'bootree install sync-esp'")
    deps = list(sysroot.deployments if deployments is None else deployments)
    return sync(esp, esp_deployments(sysroot, deps), tries=boot_counting_tries(sysroot))


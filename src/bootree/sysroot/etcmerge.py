"""The three-way ``/etc`` merge that carries local configuration into a new deployment.

Layer: sysroot. Works on plain directories, so it is tested without a repository:

* ORIG = the merge deployment's ``usr/etc`` (the defaults it shipped),
* MOD  = the merge deployment's ``etc`` (what the admin made of them),
* NEW  = the new deployment's ``etc``, a fresh copy of its ``usr/etc``.

The semantics are libostree 2022.7's, exactly (``ostree-format.md`` §9.6): diff ORIG→MOD
ignoring xattrs (a change of type, owner, mode, content or symlink target is a modification,
so a chmod alone counts); then, in NEW, delete what was deleted locally (even if upstream
changed it) and copy MOD's version of everything modified or added ("local wins", no content
merge). Untouched files take the new defaults.

One deliberate difference: ostree discovers a file↔directory conflict (a locally modified file
where the new default has a directory) half-way through and leaves a stray deployment behind.
Here :func:`plan_merge` checks every operation against NEW before :func:`apply_merge` writes
anything, and raises :class:`~bootree.errors.EtcMergeConflict` naming the path.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.errors import EtcMergeConflict, SysrootError

__all__ = ["EtcDiff", "apply_merge", "copy_etc", "copy_tree", "diff_etc", "merge_etc", "plan_merge"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class EtcDiff:
    """Paths (relative to ``etc``, ``/``-separated) changed between ORIG and MOD."""

    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """ostree's summary line."""
        return f"Copying /etc changes: {len(self.modified)} modified, {len(self.removed)} removed, {len(self.added)} added"

    def __bool__(self) -> bool:
        return bool(self.modified or self.removed or self.added)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _equal(a: Path, sa: os.stat_result, b: Path, sb: os.stat_result) -> bool:
    """Whether two entries of the same type have the same ostree checksum, xattrs aside."""
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if sa.st_mode != sb.st_mode:
        return False
    if stat.S_ISDIR(sa.st_mode):
        return True
    if stat.S_ISREG(sa.st_mode):
        return sa.st_size == sb.st_size and _same_content(a, b)
    return sa.st_rdev == sb.st_rdev


def _listdir(path: Path) -> list[str]:
    return sorted(os.listdir(path), key=os.fsencode)


def diff_etc(orig: Path, modified: Path) -> EtcDiff:
    """Diff ORIG→MOD recursively (ostree's ``ostree_diff_dirs`` with xattrs ignored).

    A missing ORIG (a tree that ships no ``usr/etc``) makes everything in MOD "added".
    """
    mod_l: list[str] = []
    rem_l: list[str] = []
    add_l: list[str] = []

    def added_tree(rel: str) -> None:
        add_l.append(rel)
        full = modified / rel
        if stat.S_ISDIR(os.lstat(full).st_mode):
            for name in _listdir(full):
                added_tree(f"{rel}/{name}")

    def walk(rel: str) -> None:
        o_dir = orig / rel if rel else orig
        m_dir = modified / rel if rel else modified
        o_names = _listdir(o_dir) if o_dir.is_dir() else []
        m_names = _listdir(m_dir)
        m_set = set(m_names)
        for name in o_names:
            p = f"{rel}/{name}" if rel else name
            if name not in m_set:
                rem_l.append(p)
                continue
            so, sm = os.lstat(o_dir / name), os.lstat(m_dir / name)
            if stat.S_IFMT(so.st_mode) != stat.S_IFMT(sm.st_mode):
                mod_l.append(p)
            elif stat.S_ISDIR(so.st_mode):
                if not _equal(o_dir / name, so, m_dir / name, sm):
                    mod_l.append(p)
                walk(p)
            elif not _equal(o_dir / name, so, m_dir / name, sm):
                mod_l.append(p)
        o_set = set(o_names)
        for name in m_names:
            if name not in o_set:
                added_tree(f"{rel}/{name}" if rel else name)

    walk("")
    return EtcDiff(tuple(mod_l), tuple(rem_l), tuple(add_l))


# --- copying with attributes ----------------------------------------------------------------


def _copy_xattrs(src: Path, dst: Path) -> None:
    for name, value in _fs.list_xattrs(src):
        try:
            os.setxattr(dst, name.decode(), value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _copy_attrs(src_stat: os.stat_result, src: Path, dst: Path) -> None:
    """Owner, then mode (chown clears set-id bits), then xattrs, then times."""
    is_link = stat.S_ISLNK(src_stat.st_mode)
    try:
        os.chown(dst, src_stat.st_uid, src_stat.st_gid, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise
    if not is_link:
        os.chmod(dst, stat.S_IMODE(src_stat.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns), follow_symlinks=False)


def _copy_entry(src: Path, dst: Path) -> None:
    """Copy one non-directory entry (regular file or symlink) with its attributes."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                remaining = st.st_size
                while remaining > 0:
                    n = os.copy_file_range(fd_in, fd_out, remaining)
                    if n == 0:
                        break
                    remaining -= n
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
    else:
        log.info("ignoring special file %s in /etc", src)
        return
    _copy_attrs(st, src, dst)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory tree, keeping owners, modes, xattrs, symlinks and times (real copies).

    ``dst`` must not exist. Directories are created 0700 and get their final mode after their
    contents, so read-only directories can be filled.
    """
    st = os.lstat(src)
    os.mkdir(dst, 0o700)
    for name in _listdir(src):
        s, d = src / name, dst / name
        if stat.S_ISDIR(os.lstat(s).st_mode):
            copy_tree(s, d)
        else:
            _copy_entry(s, d)
    _copy_attrs(st, src, dst)


def copy_etc(usr_etc: Path, etc: Path) -> None:
    """Make a deployment's ``etc`` as a real copy of its ``usr/etc`` (the default config)."""
    copy_tree(usr_etc, etc)


# --- the merge -------------------------------------------------------------------------------


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def plan_merge(orig: Path, modified: Path, new: Path) -> EtcDiff:
    """Diff ORIG→MOD and check that applying it to NEW cannot fail half-way.

    Raises:
        EtcMergeConflict: when a locally modified or added non-directory would replace a
            directory of the new default (ostree: "Modified config file newly defaults to
            directory"), or when a local change lives under a path that the new default turned
            into a non-directory.
    """
    diff = diff_etc(orig, modified)
    replaced_by_dir = {p for p in (*diff.modified, *diff.added) if stat.S_ISDIR(os.lstat(modified / p).st_mode)}
    for p in (*diff.modified, *diff.added):
        sm = os.lstat(modified / p)
        sn = _lstat(new / p)
        if sn is not None and stat.S_ISDIR(sn.st_mode) and not stat.S_ISDIR(sm.st_mode):
            if not any(a in replaced_by_dir for a in _parents(p)):
                raise EtcMergeConflict(
                    f"/etc/{p}",
                    "Modified config file newly defaults to directory (ostree's words): "
                    "keeping the local file would lose the new directory",
                )
        for a in _parents(p):
            sa = _lstat(new / a)
            if sa is not None and not stat.S_ISDIR(sa.st_mode) and a not in replaced_by_dir:
                raise EtcMergeConflict(
                    f"/etc/{p}", f"the new default replaced the directory /etc/{a} with a non-directory"
                )
    return diff


def _ensure_parent(modified: Path, new: Path, rel: str) -> None:
    parents = _parents(rel)
    if not parents:
        return
    for a in parents:
        if _lstat(new / a) is None:
            os.mkdir(new / a, 0o755)
    parent = parents[-1]
    _copy_attrs(os.lstat(modified / parent), modified / parent, new / parent)


def apply_merge(diff: EtcDiff, modified: Path, new: Path) -> None:
    """Apply a planned diff to NEW: removals first, then local versions over the defaults.

    Raises:
        SysrootError: for an I/O error (the caller discards the new deployment).
    """
    try:
        for p in diff.removed:
            _fs.rmtree(new / p)
        for p in (*diff.modified, *diff.added):
            _ensure_parent(modified, new, p)
            sm = os.lstat(modified / p)
            sn = _lstat(new / p)
            if sn is not None:
                if stat.S_ISDIR(sn.st_mode):
                    if stat.S_ISDIR(sm.st_mode):
                        continue  # children are in the lists themselves
                    raise EtcMergeConflict(f"/etc/{p}", "locally modified file, but the new default has a directory")
                os.unlink(new / p)
            if stat.S_ISDIR(sm.st_mode):
                copy_tree(modified / p, new / p)
            else:
                _copy_entry(modified / p, new / p)
    except OSError as e:
        raise SysrootError(f"/etc merge failed at {e.filename or new}: {e.strerror}") from e


def merge_etc(orig: Path, modified: Path, new: Path) -> EtcDiff:
    """Plan, check and apply the three-way merge; returns the diff that was applied.

    Raises:
        EtcMergeConflict: before any write, see :func:`plan_merge`.
        SysrootError: for an I/O error while applying.
    """
    diff = plan_merge(orig, modified, new)
    apply_merge(diff, modified, new)
    log.info("%s", diff.message)
    return diff

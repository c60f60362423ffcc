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

Every path is resolved inside its tree (:class:`bootree._fs.Tree`: ``openat2`` with
``RESOLVE_NO_SYMLINKS``), never through the host's ``/``: a commit whose ``usr/etc`` (or a
directory inside it) is a symlink to ``/etc/ssh`` must not get the host's keys copied into the
image. A symlink is copied as a symlink (ostree's behaviour); one where a directory is needed
(``usr/etc`` itself when a merge needs it, a parent of a merged path) is refused with an error.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.errors import EtcMergeConflict, SysrootError

__all__ = [
    "EtcDiff",
    "apply_merge",
    "copy_etc",
    "copy_tree",
    "deployment_etc_diff",
    "diff_etc",
    "merge_deployment_etc",
    "merge_etc",
    "plan_merge",
    "prepare_etc",
]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_DIR_PATH = os.O_PATH | os.O_DIRECTORY
_NO_ENTRY = (errno.ENOENT, errno.ENOTDIR)

#: An ``/etc`` to read or write: a :class:`~bootree._fs.Tree` opened inside its deployment, or a
#: plain (trusted) directory path, as the unit tests use.
EtcDir = Path | _fs.Tree


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


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


@contextlib.contextmanager
def _as_tree(d: EtcDir) -> Iterator[_fs.Tree]:
    if isinstance(d, _fs.Tree):
        yield d
    else:
        with _fs.Tree(d) as t:
            yield t


@contextlib.contextmanager
def _dirfd(tree: _fs.Tree, rel: str, flags: int = _DIR_PATH) -> Iterator[int]:
    fd = tree.open(rel, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def _same_content(da: int, a: str, db: int, b: str) -> bool:
    fa = os.open(a, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=da)
    try:
        fb = os.open(b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=db)
        try:
            while True:
                ca, cb = os.read(fa, _CHUNK), os.read(fb, _CHUNK)
                if ca != cb:
                    return False
                if not ca:
                    return True
        finally:
            os.close(fb)
    finally:
        os.close(fa)


def _equal(da: int, name: str, sa: os.stat_result, db: int, sb: os.stat_result) -> bool:
    """Whether two entries of the same type have the same ostree checksum, xattrs aside."""
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(name, dir_fd=da) == os.readlink(name, dir_fd=db)
    if sa.st_mode != sb.st_mode:
        return False
    if stat.S_ISDIR(sa.st_mode):
        return True
    if stat.S_ISREG(sa.st_mode):
        return sa.st_size == sb.st_size and _same_content(da, name, db, name)
    return sa.st_rdev == sb.st_rdev


def _listdir(fd: int) -> list[str]:
    return sorted(os.listdir(fd), key=os.fsencode)


def _diff_trees(orig: _fs.Tree | None, modified: _fs.Tree) -> EtcDiff:
    mod_l: list[str] = []
    rem_l: list[str] = []
    add_l: list[str] = []

    def added_tree(rel: str) -> None:
        todo = [rel]
        while todo:
            cur = todo.pop()
            add_l.append(cur)
            st = modified.lstat(cur)
            if st is not None and stat.S_ISDIR(st.st_mode):
                with _dirfd(modified, cur, os.O_RDONLY | os.O_DIRECTORY) as fd:
                    todo.extend(_join(cur, n) for n in reversed(_listdir(fd)))

    def events(rel: str) -> list[tuple[str, str]]:
        """One directory's changes, in ostree's order; ``walk`` marks where to descend."""
        out: list[tuple[str, str]] = []
        with _dirfd(modified, rel, os.O_RDONLY | os.O_DIRECTORY) as mfd:
            ofd = -1
            if orig is not None:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    ofd = orig.open(rel, os.O_RDONLY | os.O_DIRECTORY)
            try:
                o_names = _listdir(ofd) if ofd >= 0 else []
                m_names = _listdir(mfd)
                m_set = set(m_names)
                for name in o_names:
                    p = _join(rel, name)
                    if name not in m_set:
                        out.append(("removed", p))
                        continue
                    so = os.stat(name, dir_fd=ofd, follow_symlinks=False)
                    sm = os.stat(name, dir_fd=mfd, follow_symlinks=False)
                    if stat.S_IFMT(so.st_mode) != stat.S_IFMT(sm.st_mode):
                        out.append(("modified", p))
                    elif stat.S_ISDIR(so.st_mode):
                        if not _equal(ofd, name, so, mfd, sm):
                            out.append(("modified", p))
                        out.append(("walk", p))
                    elif not _equal(ofd, name, so, mfd, sm):
                        out.append(("modified", p))
                o_set = set(o_names)
                out.extend(("added", _join(rel, name)) for name in m_names if name not in o_set)
            finally:
                if ofd >= 0:
                    os.close(ofd)
        return out

    # Depth first with an explicit stack (a hostile tree may be thousands of levels deep); the
    # descriptors of a directory are closed before its subdirectories are visited.
    stack = [iter(events(""))]
    while stack:
        ev = next(stack[-1], None)
        if ev is None:
            stack.pop()
            continue
        kind, p = ev
        if kind == "walk":
            stack.append(iter(events(p)))
        elif kind == "added":
            added_tree(p)
        else:
            (mod_l if kind == "modified" else rem_l).append(p)
    return EtcDiff(tuple(mod_l), tuple(rem_l), tuple(add_l))


def diff_etc(orig: EtcDir | None, modified: EtcDir) -> EtcDiff:
    """Diff ORIG→MOD recursively (ostree's ``ostree_diff_dirs`` with xattrs ignored).

    A missing ORIG (a tree that ships no ``usr/etc``) makes everything in MOD "added".
    """
    with _as_tree(modified) as m:
        if orig is None:
            return _diff_trees(None, m)
        if isinstance(orig, Path):
            try:
                o = _fs.Tree(orig)
            except (FileNotFoundError, NotADirectoryError):
                return _diff_trees(None, m)
            with o:
                return _diff_trees(o, m)
        return _diff_trees(orig, m)


# --- copying with attributes ----------------------------------------------------------------


def _set_xattrs(target: int | str, xattrs: tuple[tuple[bytes, bytes], ...]) -> None:
    for name, value in xattrs:
        try:
            os.setxattr(target, name.decode(), value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _chown(st: os.stat_result, fd: int | None, dfd: int, name: str) -> None:
    try:
        if fd is not None:
            os.fchown(fd, st.st_uid, st.st_gid)
        else:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise


def _apply_attrs(st: os.stat_result, xattrs: tuple[tuple[bytes, bytes], ...], fd: int) -> None:
    """Owner, then mode (chown clears set-id bits), then xattrs, then times: on a descriptor."""
    _chown(st, fd, -1, "")
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    _set_xattrs(fd, xattrs)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_dir_attrs(sfd: int, dfd: int) -> None:
    """The attributes of the directory open as ``sfd`` onto the directory open as ``dfd``."""
    _apply_attrs(os.fstat(sfd), _fs.list_xattrs(sfd), dfd)


def _copy_entry_at(sdir: int, ddir: int, name: str, st: os.stat_result | None = None) -> None:
    """Copy the non-directory ``name`` of directory ``sdir`` into ``ddir``, with attributes.

    Both descriptors are directories already resolved inside their trees and ``name`` is one
    component, so nothing here can leave them.
    """
    if st is None:
        st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=sdir), name, dir_fd=ddir)
        _chown(st, None, ddir, name)
        _set_xattrs(f"/proc/self/fd/{ddir}/{name}", _fs.list_xattrs(name, dir_fd=sdir))
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
    elif stat.S_ISREG(st.st_mode):
        fd_in = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sdir)
        try:
            fd_out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=ddir)
            try:
                remaining = st.st_size
                while remaining > 0:
                    n = _fs.copy_file_range(fd_in, fd_out, remaining)
                    if n == 0:
                        break
                    remaining -= n
                _apply_attrs(st, _fs.list_xattrs(fd_in), fd_out)
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
    else:
        log.info("ignoring special file %s in /etc", name)


def _copy_tree_in(src: _fs.Tree, srel: str, dst: _fs.Tree, drel: str) -> None:
    """Copy directory ``srel`` of ``src`` to ``drel`` of ``dst`` (which must not exist).

    Directories are created 0700 and get their final attributes after their contents, so
    read-only directories can be filled. Iterative, one descriptor pair at a time, so a deep
    tree costs neither recursion nor open files.
    """
    pfd, name = dst.parent(drel) if drel else (-1, "")
    try:
        if drel:
            os.mkdir(name, 0o700, dir_fd=pfd)
    finally:
        if pfd >= 0:
            os.close(pfd)
    done: list[tuple[str, str]] = []
    todo = [(srel, drel)]
    while todo:
        s, d = todo.pop()
        done.append((s, d))
        with _dirfd(src, s, os.O_RDONLY | os.O_DIRECTORY) as sfd, _dirfd(dst, d) as dfd:
            for n in _listdir(sfd):
                st = os.stat(n, dir_fd=sfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(n, 0o700, dir_fd=dfd)
                    todo.append((_join(s, n), _join(d, n)))
                else:
                    _copy_entry_at(sfd, dfd, n, st)
    for s, d in reversed(done):
        with _dirfd(src, s, os.O_RDONLY | os.O_DIRECTORY) as sfd, _dirfd(dst, d, os.O_RDONLY | os.O_DIRECTORY) as dfd:
            _copy_dir_attrs(sfd, dfd)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory tree, keeping owners, modes, xattrs, symlinks and times (real copies).

    ``dst`` must not exist. Symlinks inside ``src`` are copied as symlinks, never followed.
    """
    with _fs.Tree(src) as s, _fs.Tree(dst.parent) as d:
        _copy_tree_in(s, "", d, dst.name)


def copy_etc(usr_etc: Path, etc: Path) -> None:
    """Make a deployment's ``etc`` as a real copy of its ``usr/etc`` (the default config)."""
    copy_tree(usr_etc, etc)


def prepare_etc(root: _fs.Tree) -> None:
    """A new deployment's ``etc``: the legacy ``etc`` → ``usr/etc`` rename, then the copy.

    Everything is resolved inside ``root``. A ``usr/etc`` that is a symlink is copied as the
    same symlink (ostree's behaviour), never followed; one that is neither a directory nor a
    symlink is refused.

    Raises:
        SysrootError: for a tree with both ``etc`` and ``usr/etc``, a non-directory ``usr``,
            or a ``usr/etc`` that is a file.
    """
    try:
        s_etc, s_usr_etc = root.lstat("etc"), root.lstat("usr/etc")
    except OSError as e:
        raise SysrootError(f"cannot use the tree's /usr/etc: {e.strerror}") from e
    if s_etc is not None and s_usr_etc is not None:
        raise SysrootError("tree contains both /etc and /usr/etc")
    try:
        if s_etc is not None:
            with _dirfd(root, "usr") as ufd:
                _fs.rename("etc", "etc", src_dir_fd=root.fd, dst_dir_fd=ufd)
            s_usr_etc = s_etc
        if s_usr_etc is not None:
            if stat.S_ISDIR(s_usr_etc.st_mode):
                _copy_tree_in(root, "usr/etc", root, "etc")
            elif stat.S_ISLNK(s_usr_etc.st_mode):
                with _dirfd(root, "usr") as ufd:
                    _copy_entry_at(ufd, root.fd, "etc")
                log.info("the tree's /usr/etc is a symlink (to %s): /etc is the same symlink",
                            root.readlink("etc"))
            else:
                raise SysrootError("the tree's /usr/etc is not a directory")
    except OSError as e:
        raise SysrootError(f"cannot copy the tree's /usr/etc to /etc: {e.strerror} ({e.filename})") from e
    for rel in ("etc/.updated", "var/.updated"):
        with contextlib.suppress(OSError):  # missing, or under a symlink: nothing of ours to remove
            pfd, name = root.parent(rel)
            try:
                os.unlink(name, dir_fd=pfd)
            finally:
                os.close(pfd)


# --- the merge -------------------------------------------------------------------------------


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _plan(orig: _fs.Tree | None, modified: _fs.Tree, new: _fs.Tree) -> EtcDiff:
    diff = _diff_trees(orig, modified)

    def is_dir(t: _fs.Tree, rel: str) -> bool:
        st = t.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    replaced_by_dir = {p for p in (*diff.modified, *diff.added) if is_dir(modified, p)}
    for p in (*diff.modified, *diff.added):
        for a in _parents(p):
            sa = new.lstat(a)
            if sa is not None and not stat.S_ISDIR(sa.st_mode) and a not in replaced_by_dir:
                raise EtcMergeConflict(
                    f"/etc/{p}", f"the new default replaced the directory /etc/{a} with a non-directory"
                )
            if sa is None or a in replaced_by_dir:
                break  # below here NEW has nothing, or it is replaced wholesale
        else:
            sn = new.lstat(p)
            if sn is not None and stat.S_ISDIR(sn.st_mode) and not is_dir(modified, p):
                raise EtcMergeConflict(
                    f"/etc/{p}",
                    "Modified config file newly defaults to directory (ostree's words): "
                    "keeping the local file would lose the new directory",
                )
    return diff


def plan_merge(orig: EtcDir | None, modified: EtcDir, new: EtcDir) -> EtcDiff:
    """Diff ORIG→MOD and check that applying it to NEW cannot fail half-way.

    Raises:
        EtcMergeConflict: when a locally modified or added non-directory would replace a
            directory of the new default (ostree: "Modified config file newly defaults to
            directory"), or when a local change lives under a path that the new default turned
            into a non-directory (a symlink included: it is never followed).
    """
    with _as_tree(modified) as m, _as_tree(new) as n:
        if isinstance(orig, Path):
            try:
                o: _fs.Tree | None = _fs.Tree(orig)
            except (FileNotFoundError, NotADirectoryError):
                o = None
            try:
                return _plan(o, m, n)
            finally:
                if o is not None:
                    o.close()
        return _plan(orig, m, n)


def _remove(tree: _fs.Tree, rel: str) -> None:
    pfd, name = tree.parent(rel)
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            import shutil  # on first use: it pulls bz2 and lzma into every deploy's start-up (issue 9)

            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)
    finally:
        os.close(pfd)


def _ensure_parent(modified: _fs.Tree, new: _fs.Tree, rel: str) -> None:
    parents = _parents(rel)
    if not parents:
        return
    for a in parents:
        if new.lstat(a) is None:
            pfd, name = new.parent(a)
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
            finally:
                os.close(pfd)
    parent = parents[-1]
    with _dirfd(modified, parent, os.O_RDONLY | os.O_DIRECTORY) as sfd, \
            _dirfd(new, parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        _copy_dir_attrs(sfd, dfd)


def _apply(diff: EtcDiff, modified: _fs.Tree, new: _fs.Tree) -> None:
    for p in diff.removed:
        _remove(new, p)
    for p in (*diff.modified, *diff.added):
        _ensure_parent(modified, new, p)
        sm = modified.lstat(p)
        if sm is None:
            raise SysrootError(f"/etc/{p} disappeared during the merge")
        sn = new.lstat(p)
        if sn is not None:
            if stat.S_ISDIR(sn.st_mode):
                if stat.S_ISDIR(sm.st_mode):
                    continue  # children are in the lists themselves
                raise EtcMergeConflict(f"/etc/{p}", "locally modified file, but the new default has a directory")
            _remove(new, p)
        if stat.S_ISDIR(sm.st_mode):
            _copy_tree_in(modified, p, new, p)
        else:
            parent = "/".join(p.split("/")[:-1])
            with _dirfd(modified, parent) as sfd, _dirfd(new, parent) as dfd:
                _copy_entry_at(sfd, dfd, p.split("/")[-1], sm)


def apply_merge(diff: EtcDiff, modified: EtcDir, new: EtcDir) -> None:
    """Apply a planned diff to NEW: removals first, then local versions over the defaults.

    Raises:
        SysrootError: for an I/O error (the caller discards the new deployment).
    """
    try:
        with _as_tree(modified) as m, _as_tree(new) as n:
            _apply(diff, m, n)
    except OSError as e:
        raise SysrootError(f"/etc merge failed at {e.filename or new}: {e.strerror}") from e


def merge_etc(orig: EtcDir | None, modified: EtcDir, new: EtcDir) -> EtcDiff:
    """Plan, check and apply the three-way merge; returns the diff that was applied.

    Raises:
        EtcMergeConflict: before any write, see :func:`plan_merge`.
        SysrootError: for an I/O error while applying.
    """
    try:
        diff = plan_merge(orig, modified, new)
    except OSError as e:
        raise SysrootError(f"/etc merge failed at {e.filename}: {e.strerror}") from e
    apply_merge(diff, modified, new)
    log.info("%s", diff.message)
    return diff


def _etc_of(root: _fs.Tree, rel: str, what: str) -> _fs.Tree:
    try:
        return root.subtree(rel)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SysrootError(f"{what} /{rel} is a symlink: it cannot take part in the /etc merge "
                               "(deploy with --no-merge)") from e
        raise SysrootError(f"{what} /{rel} cannot be used for the /etc merge: {e.strerror}") from e


@contextlib.contextmanager
def _deployment_etcs(old_root: Path) -> Iterator[tuple[_fs.Tree | None, _fs.Tree]]:
    """ORIG (``None`` when missing or not a real directory) and MOD of a deployment."""
    with _fs.Tree(old_root) as old:
        try:
            orig: _fs.Tree | None = old.subtree("usr/etc")
        except OSError as e:
            if e.errno not in (*_NO_ENTRY, errno.ELOOP):
                raise
            orig = None  # no real defaults: every local file counts as added, none is lost
        try:
            with _etc_of(old, "etc", "the merge deployment's") as mod:
                yield orig, mod
        finally:
            if orig is not None:
                orig.close()


def merge_deployment_etc(old_root: Path, new_root: Path) -> EtcDiff:
    """The /etc merge from the deployment at ``old_root`` into the one at ``new_root``.

    Raises:
        EtcMergeConflict: see :func:`plan_merge`.
        SysrootError: when the old ``etc`` or the new one is a symlink or missing (a merge
            through it would read or write outside the tree), or for an I/O error.
    """
    with _deployment_etcs(old_root) as (orig, mod), _fs.Tree(new_root) as nroot:
        if nroot.lstat("etc") is None:
            # A tree without /usr/etc: nothing to merge into, which is fine while nothing changed.
            diff = _diff_trees(orig, mod)
            if diff:
                raise SysrootError(f"the new deployment has no /etc to carry the local changes into ({diff.message})")
            return diff
        with _etc_of(nroot, "etc", "the new deployment's") as new:
            return merge_etc(orig, mod, new)


def deployment_etc_diff(root: Path) -> EtcDiff:
    """``config-diff``: the local changes of the deployment at ``root`` (its usr/etc → etc)."""
    try:
        with _deployment_etcs(root) as (orig, mod):
            return _diff_trees(orig, mod)
    except OSError as e:
        raise SysrootError(f"cannot read the deployment's /etc: {e.strerror} ({e.filename})") from e

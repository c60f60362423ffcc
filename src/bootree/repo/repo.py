"""Repo: one ostree-compatible repository on disk, the front door of the storage layer.

Layer: repo. ``Repo.init``/``Repo.open`` are the constructors users call; ``Repo(...)`` takes
its collaborators (object store, refs, config) so tests can assemble one directly. Reads go
straight to the store; writes go through :meth:`Repo.transaction`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from bootree import _fs
from bootree.errors import (
    BootreeError,
    CheckoutError,
    CorruptObject,
    FormatError,
    ObjectMissing,
    RefNotFound,
    RepoError,
    RepoNotFound,
)
from bootree.format.checksum import Checksum, is_checksum
from bootree.format.gvariant import Variant
from bootree.format.keyfile import KeyFile
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader, ObjectType, validate_filename
from bootree.format.refspec import RefSpec, parse_refspec
from bootree.repo.checkout import CheckoutMode, CheckoutOptions, checkout_tree
from bootree.repo.commit import CommitOptions, ProgressFn, write_directory, write_tar
from bootree.repo.modes import RepoMode
from bootree.repo.mtree import MutableTree
from bootree.repo.objectstore import DiskObjectStore
from bootree.repo.refs import UNSET, RefStore, _Unset
from bootree.repo.transaction import Transaction
from bootree.repo.traverse import FsckResult, PruneResult, fsck, prune, reachable_objects

__all__ = ["DiffEntry", "Repo", "TreeSource"]

_DEFAULT_OPTIONS = CommitOptions()


def _read_dirtree_lenient(data: bytes) -> DirTree:
    # Objects already in the repository were checked when written (or are checked by fsck,
    # which parses strictly); reads only need the fast parser's safety checks.
    return DirTree.from_bytes(data, strict=False)


@dataclass(frozen=True, slots=True)
class TreeSource:
    """One ``--tree=KIND=VALUE`` of a commit: ``dir`` (a directory), ``tar`` or ``ref``; or the
    ``base`` (``commit --base=REV``), a ref whose tree the owner/xattr options leave as it is."""

    kind: str
    value: str

    @classmethod
    def parse(cls, spec: str) -> TreeSource:
        """Parse ``dir=PATH``, ``tar=PATH`` or ``ref=REV``.

        Raises:
            RepoError: for an unknown kind.
        """
        kind, sep, value = spec.partition("=")
        if not sep or kind not in ("dir", "tar", "ref") or not value:
            raise RepoError(f"invalid tree source {spec!r}: expected dir=PATH, tar=PATH or ref=REV")
        return cls(kind, value)


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One line of ``diff``: ``A`` added, ``D`` deleted or ``M`` modified, and the path."""

    kind: str
    path: str


class Repo:
    """An ostree repository: objects, refs and config under one directory."""

    def __init__(self, path: Path, store: DiskObjectStore, refs: RefStore, config: KeyFile) -> None:
        self.path = path
        self.store = store
        self.refs = refs
        self.config = config
        self.fsync = config.get_bool("core", "fsync", True)
        timeout = config.get_int("core", "lock-timeout-secs", 30)
        self.lock_timeout = float(timeout) if timeout >= 0 else float("inf")  # -1: wait forever, as ostree
        self._dirmeta_cache: dict[Checksum, DirMeta] = {}

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def init(cls, path: os.PathLike[str] | str, *, mode: RepoMode = RepoMode.BARE_USER) -> Self:
        """Create a repository (``ostree init``); opening an existing one of the same mode is fine.

        Raises:
            RepoError: if a repository of another mode is already there.
        """
        p = Path(path)
        if (p / "config").exists():
            repo = cls.open(p)
            if repo.mode is not mode:
                raise RepoError(f"{p} is already a {repo.mode.value} repository")
            return repo
        _fs.makedirs(p)
        for sub in ("extensions", "objects", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp/cache"):
            _fs.makedirs(p / sub)
        _fs.write_atomic(p / "config", f"[core]\nrepo_version=1\nmode={mode.config_value}\n".encode())
        return cls.open(p)

    @classmethod
    def open(cls, path: os.PathLike[str] | str) -> Self:
        """Open an existing repository.

        Raises:
            RepoNotFound: if there is no ``config`` and ``objects/`` at ``path``.
            RepoError: for an unsupported version or mode.
        """
        p = Path(path)
        try:
            text = (p / "config").read_text("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            raise RepoNotFound(p) from None
        if not (p / "objects").is_dir():
            raise RepoNotFound(p)
        config = KeyFile.from_text(text)
        version = config.get("core", "repo_version")
        if version != "1":
            raise RepoError(f"{p}: unsupported repo_version {version!r}")
        mode = RepoMode.parse(config.get("core", "mode", "bare") or "bare")
        level = config.get_int("archive", "zlib-level", 6)
        # bootree's own key: "false" selects plain zlib (smaller objects, slower commits).
        fast = config.get_bool("archive", "bootree-zlib-ng", True)
        # As ostree: a missing tmp/ (someone cleaned it) is recreated; read-only repos stay as is.
        with contextlib.suppress(OSError):
            os.mkdir(p / "tmp", 0o755)
        return cls(p, DiskObjectStore(p, mode, zlib_level=level, fast_zlib=fast), RefStore(p), config)

    @property
    def mode(self) -> RepoMode:
        """The repository's mode."""
        return self.store.mode

    def save_config(self) -> None:
        """Write :attr:`config` back atomically (unknown keys and comments are kept)."""
        _fs.write_atomic(self.path / "config", self.config.to_text().encode())

    # --- locking and transactions ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool = False) -> Iterator[None]:
        """Hold the repository lock (shared for writers, exclusive for prune), as ostree does."""
        with _fs.ofd_lock(self.path / ".lock", exclusive=exclusive, timeout=self.lock_timeout):
            yield

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A :class:`Transaction` that commits on a clean exit and aborts on an exception."""
        with self.lock(exclusive=False):
            txn = Transaction(self)
            try:
                yield txn
            except BaseException:
                txn.abort()
                raise
            if not txn.finished:
                txn.commit()

    # --- object reads ------------------------------------------------------------------------

    def has_object(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is present."""
        return self.store.has(otype, csum)

    def object_path(self, otype: ObjectType, csum: Checksum) -> Path:
        """Where the object lives on disk."""
        return self.store.path(otype, csum)

    def load_metadata(self, otype: ObjectType, csum: Checksum) -> bytes:
        """Raw bytes of a metadata object.

        Raises:
            ObjectMissing: if absent.
        """
        return self.store.load_metadata(otype, csum)

    def _parse(self, otype: ObjectType, csum: Checksum, parser: Callable[[bytes], object]) -> object:
        data = self.store.load_metadata(otype, csum)
        try:
            return parser(data)
        except FormatError as e:
            raise CorruptObject(csum, otype.value, str(e)) from e

    def read_commit(self, csum: Checksum) -> Commit:
        """Parse a commit object.

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        value = self._parse(ObjectType.COMMIT, csum, Commit.from_bytes)
        assert isinstance(value, Commit)
        return value

    def read_dirtree(self, csum: Checksum) -> DirTree:
        """Parse a dirtree object (names are validated: no ``..``, ``/`` or empty names).

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        value = self._parse(ObjectType.DIR_TREE, csum, _read_dirtree_lenient)
        assert isinstance(value, DirTree)
        return value

    def read_dirmeta(self, csum: Checksum) -> DirMeta:
        """Parse a dirmeta object (cached: a tree has few distinct ones, and objects never change).

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        cached = self._dirmeta_cache.get(csum)
        if cached is not None:
            return cached
        value = self._parse(ObjectType.DIR_META, csum, DirMeta.from_bytes)
        assert isinstance(value, DirMeta)
        if len(self._dirmeta_cache) < 4096:
            self._dirmeta_cache[csum] = value
        return value

    def read_commitmeta(self, csum: Checksum) -> bytes | None:
        """A commit's detached metadata bytes, or ``None``."""
        try:
            return self.store.load_metadata(ObjectType.COMMIT_META, csum)
        except ObjectMissing:
            return None

    def open_file(self, csum: Checksum) -> tuple[FileHeader, object]:
        """Header and content stream (``None`` for symlinks) of a content object."""
        return self.store.open_file(csum)

    def load_file(self, csum: Checksum) -> tuple[FileHeader, bytes]:
        """Header and whole content of a content object."""
        return self.store.load_file(csum)

    # --- refs ----------------------------------------------------------------------------------

    def list_refs(self, prefix: str | None = None, *, remote: str | None = None) -> dict[str, Checksum]:
        """Refs by name (``name`` or ``remote:name``)."""
        return self.refs.list(prefix, remote=remote)

    def list_mirror_refs(self) -> dict[tuple[str, str], Checksum]:
        """Collection-ref mirrors."""
        return self.refs.list_mirrors()

    def set_ref(
        self, refspec: str, csum: Checksum | None, *, expected: Checksum | _Unset | None = UNSET
    ) -> None:
        """Move (or with ``None`` delete) a ref atomically, optionally compare-and-swap.

        Raises:
            RefConflict: if ``expected`` no longer holds.
            ObjectMissing: if ``csum`` is not a commit in the repository.
        """
        if csum is not None and not self.store.has(ObjectType.COMMIT, csum):
            raise ObjectMissing(csum, "commit")
        self.refs.set(refspec, csum, expected=expected, fsync=self.fsync)

    def resolve_rev(self, rev: str, *, allow_missing: bool = False) -> Checksum | None:
        """Resolve a ref, ``remote:ref``, a full or unique abbreviated checksum, or ``REV^``.

        Raises:
            RefNotFound: if nothing matches (unless ``allow_missing``).
            InvalidRefName: for a malformed ref name.
        """
        if rev.endswith("^"):
            base = self.resolve_rev(rev[:-1], allow_missing=allow_missing)
            if base is None:
                return None
            parent = self.read_commit(base).parent
            if parent is None:
                if allow_missing:
                    return None
                raise RefNotFound(rev)
            return parent
        if is_checksum(rev):
            return Checksum(rev)
        spec = parse_refspec(rev)
        found = self.refs.get(spec)
        if found is None and spec.remote is None and "/" in spec.ref:
            # "remote/ref" also names a remote ref, as with ostree.
            remote, _, ref = spec.ref.partition("/")
            with contextlib.suppress(BootreeError):
                found = self.refs.get(f"{remote}:{ref}")
        if found is None and spec.remote is None:
            # As ostree: a bare REF also names refs/remotes/*/REF (the first remote that has it).
            remotes_dir = self.path / "refs" / "remotes"
            for remote in sorted(os.listdir(remotes_dir)) if remotes_dir.is_dir() else []:
                with contextlib.suppress(BootreeError):
                    found = self.refs.get(RefSpec(remote, spec.ref))
                if found is not None:
                    break
        if found is None and spec.remote is None:
            for (_cid, name), c in self.refs.list_mirrors().items():
                if name == spec.ref:
                    found = c
                    break
        if found is None and spec.remote is None and 4 <= len(rev) < 64 and all(c in "0123456789abcdef" for c in rev):
            matches = [c for t, c in self.store.iter_objects() if t is ObjectType.COMMIT and c.startswith(rev)]
            if len(matches) == 1:
                found = matches[0]
            elif len(matches) > 1:
                raise RefNotFound(f"{rev} (ambiguous: {len(matches)} commits match)")
        if found is None and not allow_missing:
            raise RefNotFound(rev)
        return found

    # --- partial commits ---------------------------------------------------------------------

    def _partial_path(self, csum: Checksum) -> Path:
        return self.path / "state" / f"{csum}.commitpartial"

    def is_partial(self, csum: Checksum) -> bool:
        """Whether ``csum`` is marked as having an incomplete tree."""
        return self._partial_path(csum).exists()

    def mark_partial(self, csum: Checksum, *, by_fsck: bool = False) -> None:
        """Durably mark ``csum`` partial (before its objects start arriving).

        ``by_fsck`` records that fsck found (and deleted) corrupt objects of it: ostree writes
        ``f`` into the marker then, and fsck keeps failing until a pull completes the commit.
        """
        _fs.makedirs(self.path / "state")
        _fs.write_atomic(self._partial_path(csum), b"f" if by_fsck else b"", fsync=self.fsync)

    def partial_commits(self) -> list[Checksum]:
        """Commits marked partial, sorted."""
        try:
            names = os.listdir(self.path / "state")
        except FileNotFoundError:
            return []
        return sorted(Checksum(n.removesuffix(".commitpartial")) for n in names
                      if n.endswith(".commitpartial") and is_checksum(n.removesuffix(".commitpartial")))

    def is_partial_by_fsck(self, csum: Checksum) -> bool:
        """Whether ``csum`` is partial because fsck deleted corrupt objects of it."""
        try:
            return self._partial_path(csum).read_bytes().startswith(b"f")
        except FileNotFoundError:
            return False

    def clear_partial(self, csum: Checksum) -> None:
        """Remove the partial marker of ``csum``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._partial_path(csum))

    # --- commit and checkout -------------------------------------------------------------------

    def write_tree(
        self,
        txn: Transaction,
        sources: Sequence[TreeSource | Path],
        options: CommitOptions = _DEFAULT_OPTIONS,
        *,
        progress: ProgressFn | None = None,
    ) -> tuple[Checksum, Checksum]:
        """Write objects for ``sources`` overlaid in order; return the root ``(dirtree, dirmeta)``.

        Raises:
            SourceError: for unreadable or unsafe sources.
            RefNotFound: for a ``ref=`` source that does not resolve.
        """
        if self.mode is RepoMode.BARE_USER_ONLY and not options.canonical_permissions:
            from dataclasses import replace

            options = replace(options, canonical_permissions=True)
        root = MutableTree()
        for src in sources:
            source = TreeSource("dir", os.fspath(src)) if isinstance(src, Path) else src
            if source.kind == "dir":
                write_directory(txn, Path(source.value), root, options, progress=progress)
            elif source.kind == "tar":
                write_tar(txn, Path(source.value), root, options, progress=progress)
            else:
                rev = self.resolve_rev(source.value)
                assert rev is not None
                c = self.read_commit(rev)
                root.overlay_commit_tree(self, c.root_tree, c.root_meta)
                if options.modifies_metadata and source.kind == "ref":  # not to a --base
                    self._apply_options(txn, root, options)
        return root.write(txn)

    def _apply_options(self, txn: Transaction, node: MutableTree, options: CommitOptions) -> None:
        """Rewrite a tree taken from a commit with the owner/xattr/permission options applied.

        As ostree: ``--tree=ref=BASE --owner-uid=42`` makes new objects with the new metadata
        (and so a new checksum), where the objects of BASE stay untouched.
        """
        if node.meta is not None:
            m = self.read_dirmeta(node.meta)
            node.meta = txn.write_dirmeta(options.dir_meta(m.uid, m.gid, m.mode, m.xattrs))
        for name, csum in list(node.files.items()):
            h, stream = self.store.open_file(csum)
            try:
                new = options.file_header(h.uid, h.gid, h.mode, h.symlink_target, h.xattrs)
                if new != h:
                    node.files[name] = txn.write_file(new, stream)
            finally:
                if stream is not None:
                    stream.close()
        for sub in node.dirs.values():
            self._apply_options(txn, sub, options)

    def commit(
        self,
        sources: Sequence[TreeSource | Path],
        *,
        branch: str | None = None,
        subject: str = "",
        body: str = "",
        parent: Checksum | _Unset | None = UNSET,
        timestamp: int | None = None,
        metadata: Sequence[tuple[str, Variant]] = (),
        bindings: bool = True,
        options: CommitOptions = _DEFAULT_OPTIONS,
        skip_if_unchanged: bool = False,
        progress: ProgressFn | None = None,
    ) -> Checksum:
        """Commit ``sources`` (``ostree commit``) and move ``branch`` to the new commit.

        ``parent`` defaults to the branch's current commit (``None`` = orphan). ``bindings``
        adds ``ostree.ref-binding`` for the branch, as ostree does unless ``--no-bindings``.

        Raises:
            SourceError, RefNotFound, RefConflict: see :meth:`write_tree` and :meth:`set_ref`.
        """
        import time

        old = self.refs.get(branch) if branch else None
        if isinstance(parent, _Unset):
            parent = old
        ts = int(time.time()) if timestamp is None else timestamp
        meta = list(metadata)
        if branch and bindings and not any(k == "ostree.ref-binding" for k, _ in meta):
            meta.append(("ostree.ref-binding", Variant("as", [branch])))
        with self.transaction() as txn:
            tree, dmeta = self.write_tree(txn, sources, options, progress=progress)
            if skip_if_unchanged and parent is not None:
                pc = self.read_commit(parent)
                if (pc.root_tree, pc.root_meta) == (tree, dmeta):
                    txn.abort()
                    return parent
            commit = Commit(
                root_tree=tree, root_meta=dmeta, parent=parent, subject=subject, body=body, timestamp=ts,
                metadata=tuple(meta),
            )
            csum = txn.write_commit(commit)
        if branch:
            self.refs.set(branch, csum, expected=old, fsync=self.fsync)
        return csum

    def checkout(
        self,
        rev: Checksum,
        dest: os.PathLike[str] | str,
        *,
        mode: CheckoutMode = CheckoutMode.HARDLINK,
        user_mode: bool = False,
        union: bool = False,
        subpath: str | None = None,
    ) -> int:
        """Check ``rev`` out to ``dest`` (created; with ``union`` it may exist). Returns files written.

        Raises:
            CheckoutError: if ``dest`` exists (without union), or the checkout would escape it.
            ObjectMissing, CorruptObject: for a damaged repository.
        """
        commit = self.read_commit(rev)
        tree, meta = commit.root_tree, commit.root_meta
        single_file: tuple[str, Checksum] | None = None
        if subpath and subpath.strip("/"):
            parts = [p for p in subpath.split("/") if p]
            for i, part in enumerate(parts):
                try:
                    validate_filename(part)
                except FormatError as e:
                    raise CheckoutError(subpath, str(e)) from e
                dt = self.read_dirtree(tree)
                sub = next(((t, m) for n, t, m in dt.dirs if n == part), None)
                if sub is not None:
                    tree, meta = sub
                    continue
                f = next((c for n, c in dt.files if n == part), None)
                if f is not None and i == len(parts) - 1:
                    single_file = (part, f)
                    break
                raise CheckoutError(subpath, f"no such path in commit {rev}")
        d = Path(dest)
        options = CheckoutOptions(mode=mode, user_mode=user_mode, union=union)
        if single_file is not None:
            return self._checkout_file(single_file[1], d, options)
        created = False
        try:
            os.mkdir(d, 0o700)
            created = True
        except FileExistsError:
            if not union:
                raise CheckoutError(os.fspath(d), "destination already exists (use --union to merge)") from None
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise CheckoutError(os.fspath(d), e.strerror or str(e)) from e
        try:
            return checkout_tree(self, tree, meta, fd, options=options)
        except BaseException:
            if created:
                os.close(fd)
                fd = -1
                _fs.rmtree(d)
            raise
        finally:
            if fd >= 0:
                os.close(fd)

    def _checkout_file(self, csum: Checksum, dest: Path, options: CheckoutOptions) -> int:
        from bootree.repo.checkout import _Checkout

        parent = dest.parent
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            co = _Checkout(self, options, None)
            co.file(fd, dest.name, csum, os.fspath(dest))
        finally:
            os.close(fd)
        return 1

    # --- maintenance -------------------------------------------------------------------------

    def reachable_objects(self, commits: Sequence[Checksum], *, depth: int = 0) -> set[tuple[ObjectType, Checksum]]:
        """Objects reachable from ``commits`` (``depth`` parents deep; -1 = all)."""
        return reachable_objects(self, commits, depth=depth)

    def fsck(self, *, progress: Callable[[int, int], None] | None = None) -> FsckResult:
        """Verify every commit and every object it reaches."""
        return fsck(self, progress=progress)

    def prune(
        self,
        *,
        refs_only: bool = False,
        depth: int = -1,
        keep_younger_than: int | None = None,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete unreachable objects (see :func:`bootree.repo.traverse.prune`)."""
        return prune(self, refs_only=refs_only, depth=depth, keep_younger_than=keep_younger_than, dry_run=dry_run)

    # --- comparing -----------------------------------------------------------------------------

    def diff(self, a: Checksum, b: Checksum) -> list[DiffEntry]:
        """Differences between the trees of two commits, as ``ostree diff`` lists them.

        Modified files (content, mode or owner differ) are ``M``; an added directory is listed
        with everything below it; a removed directory is listed once.
        """
        ca, cb = self.read_commit(a), self.read_commit(b)
        out: list[DiffEntry] = []
        self._diff_dirs(ca.root_tree, cb.root_tree, "", out)
        # ostree prints modified, then removed, then added entries.
        return [e for kind in "MDA" for e in out if e.kind == kind]

    def _diff_dirs(self, ta: Checksum, tb: Checksum, prefix: str, out: list[DiffEntry]) -> None:
        if ta == tb:
            return
        da, db = self.read_dirtree(ta), self.read_dirtree(tb)
        fa, fb = dict(da.files), dict(db.files)
        dira = {n: (t, m) for n, t, m in da.dirs}
        dirb = {n: (t, m) for n, t, m in db.dirs}
        for name in sorted(set(fa) | set(fb) | set(dira) | set(dirb), key=lambda s: s.encode()):
            path = f"{prefix}/{name}"
            if name in fa and name in fb:
                if fa[name] != fb[name]:
                    out.append(DiffEntry("M", path))
            elif name in dira and name in dirb:
                if dira[name][1] != dirb[name][1]:
                    out.append(DiffEntry("M", path))
                self._diff_dirs(dira[name][0], dirb[name][0], path, out)
            else:
                if name in fa or name in dira:
                    out.append(DiffEntry("D", path))
                if name in fb:
                    out.append(DiffEntry("A", path))
                elif name in dirb:
                    out.append(DiffEntry("A", path))
                    self._add_all(dirb[name][0], path, out)

    def _add_all(self, tree: Checksum, prefix: str, out: list[DiffEntry]) -> None:
        dt = self.read_dirtree(tree)
        for name, _ in dt.files:
            out.append(DiffEntry("A", f"{prefix}/{name}"))
        for name, t, _ in dt.dirs:
            out.append(DiffEntry("A", f"{prefix}/{name}"))
            self._add_all(t, f"{prefix}/{name}", out)

    def walk_tree(self, rev: Checksum, subpath: str = "/") -> Iterator[tuple[str, str, Checksum, Checksum | None]]:
        """Yield ``(path, kind, checksum, meta)`` for every entry under ``subpath`` of a commit.

        ``kind`` is ``d`` (checksum = dirtree, meta = dirmeta) or ``f`` (checksum = content).

        Raises:
            RepoError: if ``subpath`` does not exist in the commit.
        """
        commit = self.read_commit(rev)
        tree, meta = commit.root_tree, commit.root_meta
        parts = [p for p in subpath.split("/") if p]
        path = ""
        for i, part in enumerate(parts):
            dt = self.read_dirtree(tree)
            sub = next(((t, m) for n, t, m in dt.dirs if n == part), None)
            path += "/" + part
            if sub is None:
                f = next((c for n, c in dt.files if n == part), None)
                if f is not None and i == len(parts) - 1:
                    yield path, "f", f, None
                    return
                raise RepoError(f"no such file or directory: {subpath}")
            tree, meta = sub
        yield path or "/", "d", tree, meta
        yield from self._walk(tree, path)

    def _walk(self, tree: Checksum, prefix: str) -> Iterator[tuple[str, str, Checksum, Checksum | None]]:
        dt = self.read_dirtree(tree)
        for name, c in dt.files:
            yield f"{prefix}/{name}", "f", c, None
        for name, t, m in dt.dirs:
            yield f"{prefix}/{name}", "d", t, m
            yield from self._walk(t, f"{prefix}/{name}")


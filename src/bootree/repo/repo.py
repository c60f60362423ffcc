"""Repo: one ostree-compatible repository on disk, the front door of the storage layer.

Layer: repo. ``Repo.init``/``Repo.open`` are the constructors users call; ``Repo(...)`` takes
its collaborators (object store, refs, config) so tests can assemble one directly. Reads go
straight to the store; writes go through :meth:`Repo.transaction`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

from bootree import _fs
from bootree.errors import (
    FormatError,
    ObjectMissing,
    RepoError,
    RepoNotFound,
)
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.keyfile import KeyFile
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader, ObjectType
from bootree.repo.checkout import (
    CheckoutMode,
    CheckoutOptions,
    checkout_commit,
    require_hardlink_checkout,
)
from bootree.repo.collections import binding_metadata, validate_collection_id
from bootree.repo.integrity import fs_verity_policy
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import ContentObject, DiskObjectStore
from bootree.repo.partial import PartialMarkers
from bootree.repo.reader import EntryKind, ObjectReader, TreeEntry
from bootree.repo.refs import UNSET, RefStore, _Unset
from bootree.repo.revparse import resolve
from bootree.repo.traverse import FsckResult, PruneResult, fsck, reachable_objects

if TYPE_CHECKING:
    from bootree.repo.commit import CommitOptions, ProgressFn, TreeSource
    from bootree.repo.diff import DiffEntry
    from bootree.repo.mtree import MutableTree
    from bootree.repo.transaction import Transaction

__all__ = ["DiffEntry", "Repo", "TreeSource"]


def __getattr__(name: str) -> object:
    """``DiffEntry`` loads :mod:`bootree.repo.diff` and ``TreeSource`` :mod:`bootree.repo.commit`
    on first use: a deploy or a status never diffs nor commits (issue 9: start-up cost)."""
    if name == "DiffEntry":
        from bootree.repo import diff

        return diff.DiffEntry
    if name == "TreeSource":
        from bootree.repo import commit

        return commit.TreeSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Repo:
    """An ostree repository: objects, refs and config under one directory."""

    def __init__(self, path: Path, store: DiskObjectStore, refs: RefStore, config: KeyFile) -> None:
        self.path = path
        self.store = store
        self.refs = refs
        self.config = config
        self.partial = PartialMarkers(path, fsync=config.get_bool("core", "fsync", True))
        timeout = config.get_int("core", "lock-timeout-secs", 30)
        self.lock_timeout = float(timeout) if timeout >= 0 else float("inf")  # -1: wait forever, as ostree
        self.reader = ObjectReader(store)

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def init(
        cls, path: os.PathLike[str] | str, *, mode: RepoMode = RepoMode.BARE_USER, collection_id: str | None = None
    ) -> Self:
        """Create a repository (``ostree init``); opening an existing one of the same mode is fine.

        ``collection_id`` (``init --collection-id``) names the collection its branches belong to.

        Raises:
            RepoError: if a repository of another mode is already there.
            InvalidRefName: for a malformed collection ID.
        """
        p = Path(path)
        if collection_id is not None:
            validate_collection_id(collection_id)
        if (p / "config").exists():
            repo = cls.open(p)
            if repo.mode is not mode:
                raise RepoError(f"{p} is already a {repo.mode.value} repository")
            return repo
        _fs.makedirs(p)
        for sub in ("extensions", "objects", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp/cache"):
            _fs.makedirs(p / sub)
        config = f"[core]\nrepo_version=1\nmode={mode.config_value}\n"
        if collection_id is not None:
            config += f"collection-id={collection_id}\n"
        _fs.write_atomic(p / "config", config.encode())
        return cls.open(p)

    @classmethod
    def open(cls, path: os.PathLike[str] | str, *, fsync: bool | None = None) -> Self:
        """Open an existing repository.

        ``fsync`` overrides the config's ``core.fsync`` for this handle (``commit --fsync=``,
        ``pull --disable-fsync``): callers choose durability when opening, not by editing an
        attribute afterwards.

        Raises:
            RepoNotFound: if there is no ``config`` and ``objects/`` at ``path``.
            RepoError: for an unsupported version or mode.
        """
        p = Path(path)
        try:
            raw = (p / "config").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise RepoNotFound(p) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:  # GKeyFile's rule; ostree refuses it too ("Invalid UTF-8")
            raise RepoError(f"{p / 'config'}: not valid UTF-8 (byte {e.start})") from None
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
        repo = cls(p, DiskObjectStore(p, mode, zlib_level=level, fast_zlib=fast), RefStore(p), config)
        parent = config.get("core", "parent")
        if parent:  # ostree's [core] parent: reads fall back to that repository
            repo.store.set_parent(cls.open(parent).store)
        if fsync is not None:
            repo.fsync = fsync
        return repo

    @property
    def fs_verity(self) -> str:
        """Whether content objects get fs-verity: ``"no"``, ``"maybe"`` or ``"yes"``
        (:func:`bootree.repo.integrity.fs_verity_policy`)."""
        return fs_verity_policy(self.config)

    @property
    def collection_id(self) -> str | None:
        """The collection the repository's branches belong to (``[core] collection-id``), if any."""
        return self.config.get("core", "collection-id") or None

    @property
    def mode(self) -> RepoMode:
        """The repository's mode."""
        return self.store.mode

    @property
    def fsync(self) -> bool:
        """Whether writes are flushed to disk (``[core] fsync``, default true)."""
        return self.partial.fsync

    @fsync.setter
    def fsync(self, value: bool) -> None:
        self.partial.fsync = value

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
        from bootree.repo.transaction import Transaction  # on first use: reads need none

        with self.lock(exclusive=False):
            txn = Transaction(
                self.store, self.refs, self.partial, tmp=self.path / "tmp", fsync=self.fsync, fs_verity=self.fs_verity
            )
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

    def read_commit(self, csum: Checksum) -> Commit:
        """Parse a commit object.

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        return self.reader.read_commit(csum)

    def read_dirtree(self, csum: Checksum) -> DirTree:
        """Parse a dirtree object (names are validated: no ``..``, ``/`` or empty names).

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        return self.reader.read_dirtree(csum)

    def read_dirmeta(self, csum: Checksum) -> DirMeta:
        """Parse a dirmeta object (cached: a tree has few distinct ones, and objects never change).

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        return self.reader.read_dirmeta(csum)

    def read_commitmeta(self, csum: Checksum) -> bytes | None:
        """A commit's detached metadata bytes, or ``None``."""
        return self.reader.read_commitmeta(csum)

    def open_file(self, csum: Checksum) -> ContentObject:
        """A content object opened for reading: header and content stream (``None`` for symlinks).

        Raises:
            ObjectMissing, CorruptObject: if absent or unreadable.
        """
        return self.store.open_file(csum)

    def stat_file(self, csum: Checksum) -> tuple[FileHeader, int]:
        """Header and content size of a content object (the content is not read)."""
        return self.store.stat_file(csum)

    def content_size(self, csum: Checksum) -> int:
        """A content object's uncompressed size, without reading its content."""
        return self.store.content_size(csum)

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

    def delete_refs(self, prefix: str, *, remote: str | None = None) -> list[str]:
        """Delete the refs :meth:`list_refs` would list for ``prefix``; return their names.

        Ref files are not read first, so a ref whose file holds garbage can be deleted too
        (as ``ostree refs --delete`` does).
        """
        names = self.refs.names(prefix, remote=remote)
        for name in names:
            self.set_ref(name, None)
        return names

    def resolve_rev(self, rev: str) -> Checksum:
        """Resolve a ref, ``remote:ref``, a full or unique abbreviated checksum, or ``REV^``.

        Raises:
            RefNotFound: if nothing matches (or the prefix is ambiguous).
            InvalidRefName: for a malformed ref name.
        """
        found = self._resolve(rev, allow_missing=False)
        assert found is not None  # _resolve raises instead
        return found

    def try_resolve_rev(self, rev: str) -> Checksum | None:
        """:meth:`resolve_rev`, but ``None`` when nothing matches (an ambiguous prefix still raises).

        Raises:
            RefNotFound: for an ambiguous abbreviated checksum.
            InvalidRefName: for a malformed ref name.
        """
        return self._resolve(rev, allow_missing=True)

    def _resolve(self, rev: str, *, allow_missing: bool) -> Checksum | None:
        return resolve(
            rev,
            refs=self.refs,
            store=self.store,
            parent_of=lambda c: self.read_commit(c).parent,
            remotes_dir=self.path / "refs" / "remotes",
            allow_missing=allow_missing,
        )

    # --- partial commits ---------------------------------------------------------------------

    def is_partial(self, csum: Checksum) -> bool:
        """Whether ``csum`` is marked as having an incomplete tree."""
        return self.partial.is_partial(csum)

    def mark_partial(self, csum: Checksum, *, by_fsck: bool = False) -> None:
        """Durably mark ``csum`` partial (before its objects start arriving).

        ``by_fsck`` records that fsck found (and deleted) corrupt objects of it: ostree writes
        ``f`` into the marker then, and fsck keeps failing until a pull completes the commit.
        """
        self.partial.mark(csum, by_fsck=by_fsck)

    def partial_commits(self) -> list[Checksum]:
        """Commits marked partial, sorted."""
        return self.partial.list()

    def is_partial_by_fsck(self, csum: Checksum) -> bool:
        """Whether ``csum`` is partial because fsck deleted corrupt objects of it."""
        return self.partial.by_fsck(csum)

    def clear_partial(self, csum: Checksum) -> None:
        """Remove the partial marker of ``csum``."""
        self.partial.clear(csum)

    # --- commit and checkout -------------------------------------------------------------------

    def write_tree(
        self,
        txn: Transaction,
        sources: Sequence[TreeSource | Path],
        options: CommitOptions | None = None,
        *,
        progress: ProgressFn | None = None,
    ) -> tuple[Checksum, Checksum]:
        """Write objects for ``sources`` overlaid in order; return the root ``(dirtree, dirmeta)``.

        Raises:
            SourceError: for unreadable or unsafe sources.
            RefNotFound: for a ``ref=`` source that does not resolve.
        """
        from bootree.repo.commit import CommitOptions, SourceKind, TreeSource, write_directory
        from bootree.repo.mtree import MutableTree

        if options is None:
            options = CommitOptions()
        if self.mode is RepoMode.BARE_USER_ONLY and not options.canonical_permissions:
            from dataclasses import replace

            options = replace(options, canonical_permissions=True)
        root = MutableTree()
        for src in sources:
            source = TreeSource(SourceKind.DIR, os.fspath(src)) if isinstance(src, Path) else src
            if source.kind is SourceKind.DIR:
                write_directory(txn, Path(source.value), root, options, progress=progress, skip_dir=self.path)
            elif source.kind is SourceKind.TAR:
                from bootree.repo.archive import write_archive  # on first use: bz2, lzma, cpio, a pool

                write_archive(txn, Path(source.value), root, options, progress=progress)
            else:
                c = self.read_commit(self.resolve_rev(source.value))
                root.overlay_commit_tree(self.reader, c.root_tree, c.root_meta)
                if options.modifies_metadata and source.kind is SourceKind.REF:  # not to a --base
                    self._apply_options(txn, root, options)
        if options.path_rules is not None:
            options.path_rules.check_all_used()
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
            with self.store.open_file(csum) as obj:
                h = obj.header
                new = options.file_header(h.uid, h.gid, h.mode, h.symlink_target, h.xattrs)
                if new != h:
                    node.files[name] = txn.write_file(new, obj.stream)
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
        options: CommitOptions | None = None,
        skip_if_unchanged: bool = False,
        progress: ProgressFn | None = None,
        tree_metadata: Callable[[Checksum, Checksum], Sequence[tuple[str, Variant]]] | None = None,
    ) -> Checksum:
        """Commit ``sources`` (``ostree commit``) and move ``branch`` to the new commit.

        ``parent`` defaults to the branch's current commit (``None`` = orphan). ``bindings``
        adds ``ostree.ref-binding`` for the branch and, in a repository with a collection ID,
        ``ostree.collection-binding``, as ostree does unless ``--no-bindings``.
        ``tree_metadata(dirtree, dirmeta)`` adds metadata computed from the written tree (e.g. the
        composefs digest): the tree's objects are then published first, in their own
        transaction, so that it can read them; the commit follows in a second one.

        Raises:
            SourceError, RefNotFound, RefConflict: see :meth:`write_tree` and :meth:`set_ref`.
        """
        import time

        old = self.refs.get(branch) if branch else None
        if isinstance(parent, _Unset):
            parent = old
        ts = int(time.time()) if timestamp is None else timestamp
        meta = binding_metadata(
            list(metadata), [branch] if branch and bindings else [], self.collection_id if bindings else None
        )
        written: tuple[Checksum, Checksum] | None = None
        if tree_metadata is not None:
            with self.transaction() as txn:
                written = self.write_tree(txn, sources, options, progress=progress)
            meta.extend(tree_metadata(*written))
        with self.transaction() as txn:
            if written is not None:
                tree, dmeta = written
            else:
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
        require_hardlinks: bool = False,
        whiteouts: bool = False,
    ) -> int:
        """Check ``rev`` out to ``dest`` (created; with ``union`` it may exist). Returns files written.

        ``whiteouts``: turn ``.ostree-wh.NAME`` markers into overlayfs whiteouts (``CheckoutOptions``).

        Raises:
            CheckoutError: if ``dest`` exists (without union), or the checkout would escape it,
                or ``require_hardlinks`` (``-H``) is set and this one would copy files.
            ObjectMissing, CorruptObject: for a damaged repository.
        """
        options = CheckoutOptions(mode=mode, user_mode=user_mode, union=union, whiteouts=whiteouts, require_hardlinks=require_hardlinks)
        if require_hardlinks:
            require_hardlink_checkout(self.mode, options, os.fspath(dest), os.fspath(self.path))
        return checkout_commit(self.reader, rev, Path(dest), options, subpath=subpath)

    # --- maintenance -------------------------------------------------------------------------

    def reachable_objects(self, commits: Sequence[Checksum], *, depth: int = 0) -> set[tuple[ObjectType, Checksum]]:
        """Objects reachable from ``commits`` (``depth`` parents deep; -1 = all)."""
        return reachable_objects(self.reader, self.partial, commits, depth=depth)

    def fsck(self, *, progress: Callable[[int, int], None] | None = None) -> FsckResult:
        """Verify every commit and object it reaches, and every ref's (mirrors included) commit."""
        crefs = {f"({cid}, {ref})": c for (cid, ref), c in self.refs.list_mirrors().items()}
        return fsck(self.reader, self.refs, self.partial, progress=progress, collection_refs=crefs)

    def prune(
        self,
        *,
        refs_only: bool = False,
        depth: int = -1,
        keep_younger_than: int | None = None,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete unreachable objects (see :func:`bootree.repo.prune.prune_repo`)."""
        from bootree.repo.prune import PruneOptions, prune_repo  # on first use (issue 9: start-up cost)

        opts = PruneOptions(refs_only=refs_only, depth=depth, keep_younger_than=keep_younger_than, dry_run=dry_run)
        return prune_repo(self, opts)

    # --- comparing -----------------------------------------------------------------------------

    def diff(self, a: Checksum, b: Checksum) -> list[DiffEntry]:
        """Differences between the trees of two commits, as ``ostree diff`` lists them
        (see :func:`bootree.repo.diff.diff_commits`)."""
        from bootree.repo.diff import diff_commits  # on first use (issue 9: start-up cost)

        return diff_commits(self.reader, a, b)

    def walk_tree(self, rev: Checksum, subpath: str = "/") -> Iterator[tuple[str, EntryKind, Checksum, Checksum | None]]:
        """Yield ``(path, kind, checksum, meta)`` for every entry under ``subpath`` of a commit.

        ``kind`` is :attr:`EntryKind.DIR` (checksum = dirtree, meta = dirmeta) or
        :attr:`EntryKind.FILE` (checksum = content); the entry at ``subpath`` comes first.

        Raises:
            RepoError: if ``subpath`` does not exist in the commit.
        """
        for e in self.walk_entries(rev, subpath):
            yield e.path, e.kind, e.checksum, e.meta

    def walk_entries(self, rev: Checksum, subpath: str = "/") -> Iterator[TreeEntry]:
        """:meth:`walk_tree` as :class:`TreeEntry` values.

        Raises:
            RepoError: if ``subpath`` does not exist in the commit.
        """
        try:
            top = self.reader.lookup(self.read_commit(rev), subpath)
        except FormatError:
            top = None
        if top is None:
            raise RepoError(f"no such file or directory: {subpath}")
        yield top
        if top.kind is EntryKind.DIR:
            yield from self.reader.walk(top.checksum, "" if top.path == "/" else top.path)

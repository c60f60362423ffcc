"""Encapsulated ostree images: the commit inside an OCI image, imported object by object.

Layer: oci. The format is ostree-ext's (``container encapsulate``, rpm-ostree's chunked images),
written down in ``docs/oci-encapsulation.md``: the config label ``ostree.final-diffid`` names the
last layer that belongs to the commit; ``layers[0]`` (the *commit layer*) holds the commit, its
detached metadata, every dirtree and dirmeta and some content objects under
``sysroot/ostree/repo/objects/``; the *chunk layers* up to the final-diffid layer hold content
objects only; later layers are derived (plain) layers.

Nothing here trusts a name: every object goes through the transaction's verified writes
(:class:`~bootree.format.verified.VerifiedMetadata` for metadata, ``write_file``/
``content_writer`` with the expected checksum for content, rebuilt from the tar header, the
xattr set and the bytes), so the imported commit has the checksum it was published under or
the import fails. :func:`verify_complete` then walks the commit's tree: every object it names
must be in the repository or in this import before anything is published.

With a :data:`CommitCheck` (an ``ostree-remote-image:`` origin: the remote's signature policy),
the commit object is held back until the next entry, which must be its detached metadata
(ostree-ext's rule for a verified import): the check sees the commit's bytes and signatures
before the commit, any dirtree or any content object is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import stat
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bootree.errors import BootreeError, ChecksumMismatch, CorruptObject, FormatError, ImageError, LayerError
from bootree.format import gvariant
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.objects import Commit, DirTree, FileHeader, Xattrs, xattrs_from_bytes
from bootree.format.oci import Descriptor, ImageConfig
from bootree.format.tar import TarEntry, TarReader
from bootree.format.verified import VerifiedMetadata
from bootree.oci.stream import WritePool, read_layer
from bootree.repo import Repo
from bootree.repo.mtree import DEFAULT_DIRMETA, MutableTree
from bootree.repo.reader import ObjectReader
from bootree.repo.transaction import Transaction

__all__ = [
    "COMMIT_LABEL",
    "FINAL_DIFFID_LABEL",
    "CommitCheck",
    "LayerKind",
    "Layout",
    "ObjectLayer",
    "StagedReader",
    "check_stored_commit",
    "import_object_layer",
    "object_set_commit",
    "parse_layout",
    "verify_complete",
]

COMMIT_LABEL = "ostree.commit"
FINAL_DIFFID_LABEL = "ostree.final-diffid"
REPO_PREFIX = "sysroot/ostree/repo/"
#: ostree-ext's bounds: a metadata object (ostree-core.h) and an xattr set.
MAX_METADATA_SIZE = 10 << 20
MAX_XATTRS_SIZE = 1 << 20
_LARGE = 8 << 20
_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMPTY_DIRTREE = VerifiedMetadata.of(DirTree())

CommitCheck = Callable[[Checksum, bytes, bytes | None], None]
"""A signature check of an encapsulated commit: its checksum, its bytes, its detached metadata
(``None``: there is none). It raises (a :class:`~bootree.errors.SignatureError`) to refuse."""


class LayerKind(StrEnum):
    """What a layer of an image is."""

    COMMIT = "commit"
    """The commit layer of an encapsulated image."""
    CHUNK = "chunk"
    """A chunk layer: content objects of the commit."""
    DERIVED = "derived"
    """A plain filesystem layer (every layer of a plain image)."""

    @property
    def progress_name(self) -> str:
        """bootc's name in progress events: every ostree layer is an "ostree chunk"."""
        return "layer" if self is LayerKind.DERIVED else "ostree chunk"


@dataclass(frozen=True, slots=True)
class Layout:
    """How an image's layers split (ostree-ext's ``parse_manifest_layout``)."""

    ostree_layers: int = 0
    """0 for a plain image; else the commit layer plus the chunk layers."""
    commit: Checksum | None = None
    """The ``ostree.commit`` label, when the image has one."""

    @property
    def encapsulated(self) -> bool:
        """Whether the image carries an ostree commit."""
        return self.ostree_layers > 0

    def kind(self, index: int) -> LayerKind:
        """The kind of layer ``index``."""
        if index == 0 and self.ostree_layers:
            return LayerKind.COMMIT
        return LayerKind.CHUNK if index < self.ostree_layers else LayerKind.DERIVED

    def is_commit_layer(self, index: int) -> bool:
        """Whether layer ``index`` is the one holding the commit object."""
        return index == 0 and self.ostree_layers > 0


def parse_layout(config: ImageConfig) -> Layout:
    """Find the ostree layers of an image from its config.

    Raises:
        ImageError: a final-diffid that names no layer or several, a malformed commit label.
    """
    label = config.labels.get(FINAL_DIFFID_LABEL)
    if not label:
        return Layout()
    matches = [i for i, d in enumerate(config.diff_ids) if d == label]
    if not matches:
        raise ImageError(f"{FINAL_DIFFID_LABEL}={label} names no layer of the image")
    if len(matches) > 1:
        raise ImageError(f"{FINAL_DIFFID_LABEL}={label} names {len(matches)} layers")
    commit = config.labels.get(COMMIT_LABEL)
    if commit is not None and not _HEX64.fullmatch(commit):
        raise ImageError(f"malformed {COMMIT_LABEL} label {commit!r}")
    return Layout(matches[0] + 1, Checksum(commit) if commit else None)


@dataclass
class ObjectLayer:
    """What one ostree layer carried."""

    commit: Checksum | None = None
    commit_value: Commit | None = None
    dirtrees: dict[Checksum, DirTree] = field(default_factory=dict)
    objects: list[Checksum] = field(default_factory=list)
    """Content objects, in order (each once)."""
    written: int = 0
    """Content objects that were not in the repository yet."""
    bytes: int = 0


def _object_path(rest: str, member: str) -> tuple[Checksum, str]:
    """``objects/XX/REST.EXT`` → (checksum, extension)."""
    parts = rest.split("/")
    if len(parts) != 3 or len(parts[1]) != 2:
        raise LayerError(f"layer entry {member!r}: not an object path")
    stem, dot, ext = parts[2].partition(".")
    csum = parts[1] + stem
    if not dot or not _HEX64.fullmatch(csum):
        raise LayerError(f"layer entry {member!r}: malformed object name")
    return Checksum(csum), ext


def _repo_relative(name: str) -> str | None:
    """The path below ``sysroot/ostree/repo/``, or ``None`` for anything else (checkout paths)."""
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return name[len(REPO_PREFIX) :] if name.startswith(REPO_PREFIX) else None


class _ObjectImporter:
    """The per-layer state machine: xattr sets seen, the link that announces the next file."""

    def __init__(self, txn: Transaction, pool: WritePool, *, commit_layer: bool, expected: Checksum | None,
                 blob: str, commit_check: CommitCheck | None = None) -> None:
        self.txn = txn
        self.commit_check = commit_check
        self.held: VerifiedMetadata | None = None
        """The commit object, held until its signatures are checked (``commit_check`` only)."""
        self.pool = pool
        self.commit_layer = commit_layer
        self.expected = expected
        self.blob = blob
        self.result = ObjectLayer()
        self.xattrs: dict[str, Xattrs] = {}
        self.next: tuple[Checksum, Xattrs] | None = None
        self.seen: set[Checksum] = set()
        self.futures: list[Future[None]] = []

    def _fail(self, member: TarEntry, why: str) -> LayerError:
        return LayerError(f"layer {self.blob}: {member.name!r}: {why}")

    def _read(self, tf: TarReader, member: TarEntry, limit: int) -> bytes:
        if not member.isreg():
            raise self._fail(member, "expected a regular file")
        if member.size > limit:
            raise self._fail(member, f"{member.size} bytes, more than the limit of {limit}")
        return tf.read_body()

    def _cache_xattrs(self, member: TarEntry, data: bytes, name: str | None) -> Xattrs:
        digest = hashlib.sha256(data).hexdigest()
        if name is not None and digest != name:
            raise self._fail(member, f"xattr set hashes to {digest}")
        try:
            xattrs = xattrs_from_bytes(data)
        except FormatError as e:
            raise self._fail(member, f"malformed xattr set: {e}") from None
        self.xattrs[digest] = xattrs
        return xattrs

    def _linked_xattrs(self, member: TarEntry, target_name: str) -> Xattrs:
        xattrs = self.xattrs.get(target_name)
        if xattrs is None:
            raise self._fail(member, f"links to xattr set {target_name} not seen in this layer")
        return xattrs

    def handle(self, member: TarEntry, tf: TarReader) -> None:
        rest = _repo_relative(member.name)
        if rest is None or member.isdir() or rest == "config" or rest.startswith("refs/"):
            return
        if rest.startswith("xattrs/"):  # v0: xattr sets named by their sha256
            self._cache_xattrs(member, self._read(tf, member, MAX_XATTRS_SIZE), rest[len("xattrs/") :])
            return
        if not rest.startswith("objects/"):
            return
        csum, ext = _object_path(rest, member.name)
        if self.held is not None and not (ext == "commitmeta" and csum == self.held.checksum):
            self._release(None)  # ostree-ext: with a remote to verify against, commitmeta comes next
        if ext == "file":
            self._file(tf, member, csum)
        elif ext == "file-xattrs":
            self._cache_xattrs(member, self._read(tf, member, MAX_XATTRS_SIZE), csum)
        elif ext in ("file-xattrs-link", "file.xattrs"):
            if self.next is not None:
                raise self._fail(member, f"xattrs of {self.next[0]} were announced but its object never came")
            if member.islnk():
                target = _repo_relative(member.linkname) or ""
                if ext == "file-xattrs-link":
                    xcsum, xext = _object_path(target, member.name)
                    if xext != "file-xattrs":
                        raise self._fail(member, f"links to {member.linkname!r}, not an xattr set")
                else:
                    xcsum = Checksum(target.rsplit("/", 1)[-1])
                self.next = (csum, self._linked_xattrs(member, xcsum))
            elif ext == "file-xattrs-link":  # a writer past the hardlink limit stores the bytes
                self.next = (csum, self._cache_xattrs(member, self._read(tf, member, MAX_XATTRS_SIZE), None))
            else:
                raise self._fail(member, "expected a hardlink to an xattr set")
        elif ext in ("commit", "commitmeta", "dirtree", "dirmeta"):
            self._metadata(tf, member, csum, ext)
        else:
            raise self._fail(member, f"unknown object type {ext!r}")

    def _metadata(self, tf: TarReader, member: TarEntry, csum: Checksum, ext: str) -> None:
        if not self.commit_layer:
            raise self._fail(member, "metadata object in a chunk layer (object set)")
        data = self._read(tf, member, MAX_METADATA_SIZE)
        r = self.result
        if ext == "commitmeta":
            if r.commit != csum:
                raise self._fail(member, "detached metadata of another commit (it must follow its commit)")
            try:
                gvariant.decode("a{sv}", data)
            except FormatError as e:
                raise self._fail(member, f"malformed detached metadata: {e}") from None
            if self.held is not None:
                self._release(data)
            self.txn.write_commitmeta(csum, data)
            return
        otype = ObjectType(ext)
        if otype is ObjectType.COMMIT and r.commit is not None:
            raise self._fail(member, "a second commit object")
        if otype is not ObjectType.COMMIT and r.commit is None:
            raise self._fail(member, "object before the commit object")
        try:
            obj = VerifiedMetadata.parse(otype, data, csum)
        except (ChecksumMismatch, CorruptObject) as e:
            raise self._fail(member, str(e)) from None
        if otype is ObjectType.COMMIT:
            if self.expected is not None and csum != self.expected:
                raise self._fail(member, f"commit {csum}, but the image's {COMMIT_LABEL} label is {self.expected}")
            assert isinstance(obj.value, Commit)
            r.commit, r.commit_value = csum, obj.value
            if self.commit_check is not None:
                self.held = obj
                return
        elif isinstance(obj.value, DirTree):
            r.dirtrees[csum] = obj.value
        self.txn.write_metadata(obj)

    def _release(self, detached: bytes | None) -> None:
        """Check the held commit's signatures (``detached``: its commitmeta), then write it."""
        held, self.held = self.held, None
        assert held is not None and self.commit_check is not None
        self.commit_check(held.checksum, held.data, detached)
        self.txn.write_metadata(held)

    def _file(self, tf: TarReader, member: TarEntry, csum: Checksum) -> None:
        if self.next is None or self.next[0] != csum:
            raise self._fail(member, "content object without its .file-xattrs-link entry before it")
        xattrs = self.next[1]
        self.next = None
        if csum in self.seen:
            raise self._fail(member, "duplicate object")
        self.seen.add(csum)
        self.result.objects.append(csum)
        # From directory listings, not one lstat per object: each syscall on this (parsing)
        # thread gives the GIL to the busy writers and waits up to a switch interval to get it
        # back (39 s of a 135 s corpus import were lstat calls). A stale "absent" only costs
        # a write that finds the object present.
        if self.txn.has_object_indexed(ObjectType.FILE, csum):
            return
        try:
            if member.issym():
                # ostree stores every symlink as 0777, whatever the tar header says (as ostree-ext reads it).
                header = FileHeader(member.uid, member.gid, stat.S_IFLNK | 0o777, 0, member.linkname, xattrs)
                self.futures.append(self.pool.submit(0, self._write, header, b"", csum))
            elif member.isreg():
                header = FileHeader(member.uid, member.gid, stat.S_IFREG | (member.mode & 0o7777), 0, "", xattrs)
                if member.size > _LARGE:
                    self._write_large(tf, member, header, csum)
                else:
                    data = self._read(tf, member, _LARGE)
                    self.futures.append(self.pool.submit(len(data), self._write, header, data, csum))
            else:
                raise self._fail(member, "content object that is neither a regular file nor a symlink")
        except FormatError as e:
            raise self._fail(member, str(e)) from None
        self.result.written += 1
        self.result.bytes += member.size

    def _write(self, header: FileHeader, data: bytes, csum: Checksum) -> None:
        try:
            self.txn.write_file(header, None if header.is_symlink else data, csum)
        except ChecksumMismatch as e:
            raise LayerError(f"layer {self.blob}: content object {csum} does not match its checksum ({e})") from None

    def _write_large(self, tf: TarReader, member: TarEntry, header: FileHeader, csum: Checksum) -> None:
        try:
            with self.txn.content_writer(header, member.size, csum) as w:
                for chunk in tf.body_chunks(_CHUNK):
                    w.write(chunk)
                w.finish()
        except ChecksumMismatch as e:
            raise self._fail(member, f"content object does not match its checksum ({e})") from None

    def finish(self) -> ObjectLayer:
        if self.held is not None:
            self._release(None)
        for fut in self.futures:
            fut.result()
        if self.next is not None:
            raise LayerError(f"layer {self.blob}: xattrs of {self.next[0]} were announced but its object never came")
        if self.commit_layer and self.result.commit is None:
            raise LayerError(f"layer {self.blob}: the commit layer has no commit object")
        return self.result


def import_object_layer(txn: Transaction, blob: Path, compression: str, diff_id: str | None, *,
                        commit_layer: bool, expected_commit: Checksum | None = None,
                        pool: WritePool | None = None, verify: Descriptor | None = None,
                        commit_check: CommitCheck | None = None) -> ObjectLayer:
    """Import the objects of one ostree layer (the commit layer, or a chunk layer).

    ``commit_check`` (commit layer only) must accept the commit before it is written (module docstring).

    Raises:
        LayerError: a malformed entry, an object that does not match its name, a metadata object
            in a chunk layer, a missing or second commit, a wrong diff_id.
        SignatureError: from ``commit_check``.
    """
    with WritePool() if pool is None else contextlib.nullcontext(pool) as p:
        imp = _ObjectImporter(txn, p, commit_layer=commit_layer, expected=expected_commit, blob=blob.name,
                              commit_check=commit_check)
        read_layer(blob, compression, diff_id, imp.handle, verify=verify)
        return imp.finish()


def object_set_commit(txn: Transaction, objects: list[Checksum]) -> Checksum:
    """ostree-ext's commit for a chunk layer: a flat tree of the objects, named by checksum.

    It keeps the layer's objects reachable (``ostree/container/blob/…`` points at it), and tells
    a later pull what the layer carried.
    """
    tree = MutableTree()
    for csum in objects:
        tree.set_file(csum, csum)
    tree.meta = txn.write_dirmeta(DEFAULT_DIRMETA)
    root_tree, root_meta = tree.write(txn)
    return txn.write_commit(Commit(root_tree=root_tree, root_meta=root_meta, timestamp=0))


def check_stored_commit(repo: Repo, csum: Checksum, check: CommitCheck) -> None:
    """Run ``check`` on a commit already in the repository (a layer or image pulled before).

    Raises:
        SignatureError: from ``check``.
        ObjectMissing: no such commit.
    """
    check(csum, repo.load_metadata(ObjectType.COMMIT, csum), repo.read_commitmeta(csum))


class StagedReader(ObjectReader):
    """Reads dirtrees of this import (staged, not yet published) before the repository's."""

    def __init__(self, repo: Repo, staged: dict[Checksum, DirTree]) -> None:
        super().__init__(repo.reader.store)
        self.staged = staged

    def read_dirtree(self, csum: Checksum) -> DirTree:
        """The staged dirtree, else the repository's."""
        tree = self.staged.get(csum)
        return tree if tree is not None else super().read_dirtree(csum)


def verify_complete(txn: Transaction, repo: Repo, commit: Checksum, value: Commit,
                    staged: dict[Checksum, DirTree]) -> None:
    """Check that every object of ``commit``'s tree is in the repository or in ``txn``.

    The empty dirtree is written when missing (ostree-ext's export leaves out ``/sysroot``'s).

    Raises:
        ImageError: for the first missing object, with its path.
    """
    reader = StagedReader(repo, staged)
    done: set[Checksum] = set()
    todo: list[tuple[Checksum, Checksum, str]] = [(value.root_tree, value.root_meta, "/")]
    while todo:
        tree, meta, path = todo.pop()
        if not txn.has_object(ObjectType.DIR_META, meta):
            raise ImageError(f"encapsulated commit {commit} is incomplete: dirmeta of {path} is missing")
        if tree in done:
            continue
        done.add(tree)
        if tree not in staged and not txn.has_object(ObjectType.DIR_TREE, tree):
            if tree != _EMPTY_DIRTREE.checksum:
                raise ImageError(f"encapsulated commit {commit} is incomplete: dirtree of {path} is missing")
            txn.write_metadata(_EMPTY_DIRTREE)
            staged[tree] = DirTree()
        try:
            dt = reader.read_dirtree(tree)
        except BootreeError as e:
            raise ImageError(f"encapsulated commit {commit}: dirtree of {path}: {e}") from None
        for name, csum in dt.files:
            if not txn.has_object_indexed(ObjectType.FILE, csum):
                raise ImageError(f"encapsulated commit {commit} is incomplete: {path.rstrip('/')}/{name} "
                                 f"(object {csum}) is in no layer")
        todo.extend((t, m, f"{path.rstrip('/')}/{name}") for name, t, m in dt.dirs)

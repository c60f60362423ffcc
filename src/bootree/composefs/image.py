"""Commit → composefs image, as ostree builds ``.ostree.cfs`` and ``ostree.composefs.digest.v0``.

Layer: composefs. The tree mapping is ostree's (``_ostree_repo_checkout_composefs``), so the
image, and hence its digest, is the one ostree computes for the same commit:

* the image root is the commit root; ``usr etc boot var sysroot`` are added (0755, root-owned)
  when missing, so the image can serve as a root file system with bind mounts;
* directories take uid/gid/mode/xattrs from their dirmeta, files from their object header;
  every mtime is 0 and nlink 1; there are no hardlinks and no inline data;
* a non-empty file's payload is its *bare* loose object path ``ab/cdef….file`` (relative to
  ``repo/objects``, the overlay data layer); a symlink's payload is its target;
* the fs-verity digest of each object is recorded according to :class:`Verity`: ``YES``
  measures it with the kernel or computes it in software (commit time, and deploys that must
  check the commit's digest), ``MAYBE`` records it only when the kernel already has it, ``NO``
  never.

The image is written with format version 0, max 1 (ostree's options).
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bootree.composefs.names import COMPOSEFS_DIGEST_KEY_V0, COMPOSEFS_NAME
from bootree.composefs.verity import VerityUnsupported, enable_verity, measure_verity
from bootree.errors import ComposefsFormatError, RepoError, VerificationError
from bootree.format.checksum import Checksum
from bootree.format.composefs_dump import Node
from bootree.format.erofs import WriteOptions, write_image
from bootree.format.fsverity import FsVerityHasher, fsverity_digest
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, FileHeader, ObjectType
from bootree.repo import Repo, RepoMode

__all__ = [
    "COMPOSEFS_DIGEST_KEY_V0",
    "COMPOSEFS_NAME",
    "ComposefsDigestMismatch",
    "ComposefsImage",
    "Verity",
    "build_image",
    "check_image",
    "commit_digest",
    "digest_metadata",
    "external_files",
    "object_payload",
    "tree_image",
    "tree_node",
]

_ROOT_DIRS = (b"usr", b"etc", b"boot", b"var", b"sysroot")
_OSTREE_OPTIONS = WriteOptions(version=0, max_version=1)


class Verity(enum.Enum):
    """Whether object fs-verity digests go into the image (ostree's tristate)."""

    NO = "no"
    MAYBE = "maybe"
    YES = "yes"


class ComposefsDigestMismatch(VerificationError):
    """A generated composefs image whose digest is not the one the commit carries."""

    def __init__(self, commit: Checksum, expected: bytes, actual: bytes) -> None:
        super().__init__(
            f"composefs image of commit {commit} has digest {actual.hex()}, but the commit carries {expected.hex()}",
            hint="an object in the repository does not match its commit: run 'bootree fsck --composefs'",
        )
        self.commit = commit
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class ComposefsImage:
    """An image's bytes and its composefs digest (the fs-verity digest of those bytes)."""

    data: bytes
    digest: bytes

    @property
    def hexdigest(self) -> str:
        return self.digest.hex()


def object_payload(csum: Checksum) -> bytes:
    """The overlay redirect target of a content object: its bare loose path under ``objects/``."""
    return b"%s/%s.file" % (csum[:2].encode(), csum[2:].encode())


class _Files:
    """Headers, sizes and fs-verity digests of the content objects of a tree (one read each)."""

    def __init__(self, repo: Repo, verity: Verity, enable: Verity = Verity.NO) -> None:
        self.repo = repo
        self.verity = verity
        #: Turn fs-verity on where an object lacks it: NO never, MAYBE where the file system
        #: can, YES or fail (the object is open read-only, as FS_IOC_ENABLE_VERITY needs).
        self.enable = enable
        self.bare = repo.mode is not RepoMode.ARCHIVE
        self.kernel_verity = True  # until the file system says it has none

    def stat(self, csum: Checksum) -> tuple[FileHeader, int]:
        return self.repo.stat_file(csum)

    def digest(self, csum: Checksum) -> bytes | None:
        if self.verity is Verity.NO or (self.verity is Verity.MAYBE and not self.kernel_verity):
            return None
        if self.bare:
            path = self.repo.object_path(ObjectType.FILE, csum)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                raise RepoError(f"content object {csum} is missing") from None
            try:
                measured = None
                if self.kernel_verity:
                    try:
                        measured = measure_verity(fd)
                    except VerityUnsupported:
                        self.kernel_verity = False
                        if self.enable is Verity.YES:
                            raise self._required(csum) from None
                if measured is None and self.enable is not Verity.NO and self.kernel_verity:
                    measured = self._enable(fd, csum)
                if measured is not None or self.verity is Verity.MAYBE:
                    return measured
                h = FsVerityHasher()
                while chunk := os.read(fd, 1 << 20):
                    h.update(chunk)
                return h.digest()
            finally:
                os.close(fd)
        if self.verity is Verity.MAYBE:
            return None
        h = FsVerityHasher()
        with self.repo.open_file(csum) as obj:
            if obj.stream is None:
                return None
            while chunk := obj.stream.read(1 << 20):
                h.update(chunk)
        return h.digest()


    def _enable(self, fd: int, csum: Checksum) -> bytes | None:
        """fs-verity on an object written before the repository wanted it (``admin post-copy``'s
        job, done here for the objects a deployment needs); returns the kernel's digest."""
        try:
            enable_verity(fd)
        except VerityUnsupported:
            if self.enable is Verity.YES:
                raise self._required(csum) from None
            self.kernel_verity = False
            return None
        return measure_verity(fd)

    def _required(self, csum: Checksum) -> VerityUnsupported:
        return VerityUnsupported(
            f"{self.repo.path}: fs-verity is required ([ex-fsverity] required=true) for object {csum}, "
            "but this file system has none",
            hint="make the file system with fs-verity (ext4: mkfs.ext4 -b 4096 -O verity)",
        )


def tree_node(
    repo: Repo, root_tree: Checksum, root_meta: Checksum, *, verity: Verity = Verity.YES, enable: Verity = Verity.NO
) -> Node:
    """The composefs tree of a commit tree, ostree's mapping (module docstring).

    ``enable`` turns fs-verity on for objects that lack it (bare repositories): ``MAYBE`` where the
    file system supports it, ``YES`` or fail.

    Raises:
        RepoError, ObjectMissing, CorruptObject: for missing or unreadable objects.
        ComposefsFormatError: for trees composefs cannot hold.
        VerityUnsupported: ``enable=YES`` on a file system without fs-verity.
    """
    files = _Files(repo, verity, enable)
    pending: list[tuple[Node, Checksum]] = []
    root = _dir_node(repo, root_meta)
    stack = [(root, root_tree)]
    while stack:
        node, tree = stack.pop()
        dt = repo.read_dirtree(tree)
        for name, csum in dt.files:
            header, size = files.stat(csum)
            child = Node(mode=header.mode, uid=header.uid, gid=header.gid)
            for xname, value in header.xattrs:
                child.set_xattr(xname, value)
            if header.is_symlink:
                target = header.symlink_target.encode("utf-8", "surrogateescape")
                child.payload = target
                child.size = len(target)
            elif size:
                child.size = size
                child.payload = object_payload(csum)
                pending.append((child, csum))
            node.add_child(name.encode("utf-8", "surrogateescape"), child)
        for name, sub_tree, sub_meta in dt.dirs:
            child = _dir_node(repo, sub_meta)
            node.add_child(name.encode("utf-8", "surrogateescape"), child)
            stack.append((child, sub_tree))
    for dname in _ROOT_DIRS:
        if dname not in root.children:
            root.children[dname] = Node(mode=stat.S_IFDIR | 0o755)
    if verity is not Verity.NO and pending:
        _fill_digests(files, pending)
    return root


def _fill_digests(files: _Files, pending: list[tuple[Node, Checksum]]) -> None:
    unique = list(dict.fromkeys(c for _, c in pending))
    first = files.digest(unique[0])
    if not files.kernel_verity and files.verity is Verity.MAYBE:
        return  # no fs-verity on this file system: nothing to record
    unique = unique[1:]
    workers = min(8, os.cpu_count() or 1)
    if workers > 1 and len(unique) > 16:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib releases the GIL
            digests = dict(zip(unique, pool.map(files.digest, unique), strict=True))
    else:
        digests = {c: files.digest(c) for c in unique}
    digests[pending[0][1]] = first  # unique[0]
    for node, csum in pending:
        node.digest = digests[csum]


def _dir_node(repo: Repo, meta: Checksum) -> Node:
    dm = repo.read_dirmeta(meta)
    node = Node(mode=dm.mode, uid=dm.uid, gid=dm.gid)
    for xname, value in dm.xattrs:
        node.set_xattr(xname, value)
    return node


def tree_image(
    repo: Repo, root_tree: Checksum, root_meta: Checksum, *, verity: Verity = Verity.YES, enable: Verity = Verity.NO
) -> ComposefsImage:
    """The composefs image of a commit tree and its digest (``enable``: see :func:`tree_node`)."""
    data = write_image(tree_node(repo, root_tree, root_meta, verity=verity, enable=enable), _OSTREE_OPTIONS)
    return ComposefsImage(data=data, digest=fsverity_digest(data))


def build_image(repo: Repo, commit: Checksum, *, verity: Verity = Verity.YES, enable: Verity = Verity.NO) -> ComposefsImage:
    """The composefs image of a commit (``ostree_repo_checkout_composefs``) and its digest."""
    c = repo.read_commit(commit)
    return tree_image(repo, c.root_tree, c.root_meta, verity=verity, enable=enable)


def commit_digest(commit: Commit) -> bytes | None:
    """The ``ostree.composefs.digest.v0`` a commit carries, or ``None``.

    Raises:
        ComposefsFormatError: if the value is not 32 bytes (``ay``).
    """
    for key, value in commit.metadata:
        if key == COMPOSEFS_DIGEST_KEY_V0:
            raw = value.value
            if value.type != "ay" or not isinstance(raw, bytes | bytearray) or len(raw) != 32:
                raise ComposefsFormatError(f"{COMPOSEFS_DIGEST_KEY_V0} must be 32 bytes of type ay")
            return bytes(raw)
    return None


def digest_metadata(digest: bytes) -> tuple[str, Variant]:
    """The commit metadata entry recording an image digest."""
    return (COMPOSEFS_DIGEST_KEY_V0, Variant("ay", bytes(digest)))


def check_image(commit_csum: Checksum, commit: Commit, image: ComposefsImage) -> None:
    """Compare a generated image with the digest the commit carries (if it carries one).

    Raises:
        ComposefsDigestMismatch: if they differ.
    """
    expected = commit_digest(commit)
    if expected is not None and expected != image.digest:
        raise ComposefsDigestMismatch(commit_csum, expected, image.digest)


def external_files(root: Node) -> Iterable[tuple[bytes, Node]]:
    """(path, node) of every regular file the image serves from the object store."""
    from bootree.format.composefs_dump import iter_nodes

    for path, node in iter_nodes(root):
        if stat.S_ISREG(node.mode) and node.link_to is None and node.size and node.content is None:
            yield path, node

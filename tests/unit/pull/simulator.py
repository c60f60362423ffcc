"""An in-memory remote archive repository for pull tests (python-tuf's RepositorySimulator shape).

``RemoteSimulator`` builds commits straight from the format layer (no disk, no server): every
object, ``config``, ``summary`` and ``refs/heads/*`` lives in the ``files`` dict of a
:class:`~bootree.transport.memory.MemoryFetcher`, so a pull against it runs in milliseconds and
fault cases (truncation, wrong bytes, 404 mid-pull, stalls, completions out of order) are armed
per object with ``fetcher.add_fault``. Tests change the remote between pulls with
:meth:`RemoteSimulator.commit`.
"""

from __future__ import annotations

import random
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import deflate_chunks, encode_archive_header
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader
from bootree.format.summary import Summary
from bootree.pull.plan import object_path
from bootree.transport import FetchConfig
from bootree.transport.memory import MemoryFetcher

BASE = "mem://remote"
FAST = FetchConfig(read_timeout=0.2, max_attempts=3, backoff_base=0.001, backoff_max=0.002)

#: A tree spec: name -> bytes (a file), str (a symlink target) or a nested spec (a directory).
Tree = Mapping[str, "bytes | str | Tree"]


@dataclass
class RemoteSimulator:
    """An archive repository in memory, served by :attr:`fetcher`."""

    config: FetchConfig = FAST
    shuffle: random.Random | None = None
    fetcher: MemoryFetcher = field(init=False)
    refs: dict[str, Checksum] = field(default_factory=dict)
    #: Content checksum -> (header, content) of every file object, for the tests' expectations.
    contents: dict[Checksum, tuple[FileHeader, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fetcher = MemoryFetcher(config=self.config, shuffle=self.shuffle)
        self._put("config", b"[core]\nrepo_version=1\nmode=archive-z2\n")

    def url(self, path: str) -> str:
        """The URL of a path of the remote repository."""
        return f"{BASE}/{path}"

    def _put(self, path: str, data: bytes) -> None:
        self.fetcher.files[self.url(path)] = data

    def _object(self, otype: ObjectType, data: bytes) -> Checksum:
        import hashlib

        csum = Checksum(hashlib.sha256(data).hexdigest())
        self._put(object_path(otype, csum), data)
        return csum

    def _file(self, value: bytes | str) -> Checksum:
        if isinstance(value, str):
            header = FileHeader(0, 0, stat.S_IFLNK | 0o777, symlink_target=value)
            content = b""
        else:
            header, content = FileHeader(0, 0, stat.S_IFREG | 0o644), value
        csum = header.checksum(content)
        body = b"" if header.is_symlink else b"".join(deflate_chunks([content], 1))
        self._put(object_path(ObjectType.FILE, csum), encode_archive_header(header, len(content)) + body)
        self.contents[csum] = (header, content)
        return csum

    def _tree(self, spec: Tree) -> tuple[Checksum, Checksum]:
        files: dict[str, Checksum] = {}
        dirs: dict[str, tuple[Checksum, Checksum]] = {}
        for name, value in spec.items():
            if isinstance(value, bytes | str):
                files[name] = self._file(value)
            else:
                dirs[name] = self._tree(value)
        meta = self._object(ObjectType.DIR_META, DirMeta(0, 0, stat.S_IFDIR | 0o755).to_bytes())
        tree = self._object(ObjectType.DIR_TREE, DirTree.build(files, dirs).to_bytes())
        return tree, meta

    def commit(self, ref: str, spec: Tree, *, subject: str = "", timestamp: int = 1_700_000_000) -> Checksum:
        """Add a commit of ``spec`` on ``ref`` (parent: the ref's current commit) and republish."""
        tree, meta = self._tree(spec)
        commit = Commit(tree, meta, parent=self.refs.get(ref), subject=subject, timestamp=timestamp)
        csum = self._object(ObjectType.COMMIT, commit.to_bytes())
        self.refs[ref] = csum
        self.publish()
        return csum

    def publish(self) -> None:
        """Write ``summary`` and ``refs/heads/*`` for the current refs."""
        commits = {r: (c, self.fetcher.files[self.url(object_path(ObjectType.COMMIT, c))]) for r, c in self.refs.items()}
        self._put("summary", Summary.build(commits, mode="archive-z2", last_modified=1_700_000_000).to_bytes())
        for ref, csum in self.refs.items():
            self._put(f"refs/heads/{ref}", f"{csum}\n".encode())

    def object_url_suffix(self, otype: ObjectType, csum: Checksum) -> str:
        """What ``fetcher.add_fault`` takes to hit one object."""
        return object_path(otype, csum)

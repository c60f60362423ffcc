"""Split a commit's content into layers by stability, as rpm-ostree's chunking does (``--max-layers``).

Layer: oci (pure planning over a repository's reads; it writes nothing). Why: an update only
moves the layers whose bytes changed, so the split decides what a device downloads. The plan:

1. **Components.** Every content object belongs to the package that owns one of its paths.
   Ownership comes from a dpkg database: ``info/*.list`` in the tree (``var/lib/dpkg``, or
   ``usr/share/dpkg/database``, ``usr/lib/dpkg/database``, ``usr/lib/sysimage/dpkg`` after an
   ostree conversion) or in a directory given by the caller (an image built without a
   database, like the benchmark corpus, can pass the ``.list`` files of the packages it was
   built from). Package paths are mapped as the tree maps them (``/etc`` → ``usr/etc``,
   ``/bin`` through the root's ``bin -> usr/bin`` symlink). The kernel
   (``usr/lib/modules/*``, ``usr/lib/ostree-boot``) is a component of its own; content no
   package owns is the ``unowned`` component. Without any database each directory, cut to
   three levels (``usr/share/zoneinfo``, ``usr/bin``), is a component. Without dpkg lists, an
   rpm database (``rpmdb.sqlite``, :mod:`bootree.oci.rpmdb`) gives the owners instead.
2. **Stability.** A package's change frequency is the number of uploads its Debian changelog
   (``usr/share/doc/<pkg>/changelog.Debian.gz``) records in the three years before its newest
   entry, as rpm-ostree counts rpm changelog entries (for an rpm database: the package header's
   CHANGELOGTIME entries, counted the same way). Six or more (two a year) is *volatile*.
3. **Packing** into ``max_layers - 1`` chunks (the commit layer takes the last slot): with
   room, one chunk per component. Otherwise the largest components, ``unowned`` and the kernel
   get chunks of their own, and the rest are hashed by name (CRC-32, so adding or updating
   one package never moves another) into a few buckets, volatile and stable packages in
   separate buckets, so rarely-changing packages travel together.

A content object is in exactly one chunk; a chunk is ordered by object checksum and each
object's paths are sorted, so the same tree gives the same chunks.
"""

from __future__ import annotations

import gzip
import re
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

from bootree.errors import BootreeError, ImageError
from bootree.format.checksum import Checksum
from bootree.oci.rpmdb import read_rpmdb
from bootree.repo import Repo
from bootree.repo.reader import EntryKind

__all__ = ["Chunk", "Chunking", "PackageDb", "plan_chunks", "read_package_db"]

DPKG_INFO_DIRS = ("var/lib/dpkg/info", "usr/share/dpkg/database/info", "usr/lib/dpkg/database/info",
                  "usr/lib/sysimage/dpkg/info")
KERNEL = "kernel"
UNOWNED = "unowned"
VOLATILE_UPLOADS = 6
_THREE_YEARS = 3 * 365 * 86400
_TRAILER = re.compile(rb"^ -- .*?>  (.+)$", re.M)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Content objects that travel together in one layer: ``csum -> (size, paths)``."""

    name: str
    components: tuple[str, ...]
    objects: dict[Checksum, tuple[int, tuple[str, ...]]] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        """Uncompressed content bytes."""
        return sum(s for s, _ in self.objects.values())


@dataclass(frozen=True, slots=True)
class Chunking:
    """The chunk layers and what is left for the commit layer."""

    chunks: tuple[Chunk, ...]
    remainder: Chunk


@dataclass(frozen=True, slots=True)
class PackageDb:
    """Package → the paths it owns (as the tree spells them, ``/``-less)."""

    files: dict[str, tuple[str, ...]]
    source: str
    changes: dict[str, int] = field(default_factory=dict)
    """Package → uploads in its last three years, when the database records them (rpm)."""


def _parse_list(name: str, data: bytes) -> tuple[str, list[str]]:
    pkg = name[: -len(".list")].split(":", 1)[0]
    return pkg, [line for line in data.decode("utf-8", "surrogateescape").splitlines() if line.startswith("/")]


def read_package_db(repo: Repo, commit: Checksum, external: Path | None = None) -> PackageDb | None:
    """The dpkg file lists: from ``external`` (a dpkg admin dir or its ``info/``), else the tree's;
    else the tree's rpm database.

    Raises:
        ImageError: for an ``external`` directory without ``*.list`` files, an unreadable rpm database.
    """
    files: dict[str, list[str]] = {}
    if external is not None:
        info = external / "info" if (external / "info").is_dir() else external
        for p in sorted(info.glob("*.list")):
            pkg, paths = _parse_list(p.name, p.read_bytes())
            files.setdefault(pkg, []).extend(paths)
        if not files:
            raise ImageError(f"{external}: no dpkg file lists (*.list) found")
        return PackageDb({k: tuple(v) for k, v in files.items()}, str(external))
    for d in DPKG_INFO_DIRS:
        try:
            entries = list(repo.walk_entries(commit, "/" + d))
        except BootreeError:
            continue
        for e in entries:
            name = e.path.rsplit("/", 1)[-1]
            if e.kind is EntryKind.FILE and name.endswith(".list"):
                pkg, paths = _parse_list(name, repo.load_file(e.checksum)[1])
                files.setdefault(pkg, []).extend(paths)
        if files:
            return PackageDb({k: tuple(v) for k, v in files.items()}, d)
    return _rpm_package_db(repo, commit)


def _rpm_package_db(repo: Repo, commit: Checksum) -> PackageDb | None:
    db = read_rpmdb(repo, commit)
    if db is None or not db.packages:
        return None
    files: dict[str, list[str]] = {}
    changes: dict[str, int] = {}
    for pkg in db.packages:
        files.setdefault(pkg.name, []).extend(path for path, _ in pkg.files)
        if pkg.changelog_times:
            newest = max(pkg.changelog_times)
            changes[pkg.name] = sum(1 for t in pkg.changelog_times if t >= newest - _THREE_YEARS)
    return PackageDb({k: tuple(v) for k, v in files.items()}, db.source, changes)


def _uploads(data: bytes) -> int:
    """Uploads in the three years before the newest changelog entry."""
    dates = []
    for m in _TRAILER.finditer(data):
        try:
            dates.append(parsedate_to_datetime(m.group(1).decode("ascii", "replace").strip()))
        except (TypeError, ValueError):
            continue
    if not dates:
        return 0
    newest: datetime = max(dates)
    return sum(1 for d in dates if d >= newest - timedelta(days=3 * 365))


class _Tree:
    """The commit's files: path → checksum, checksum → paths, sizes, root symlinks."""

    def __init__(self, repo: Repo, commit: Checksum) -> None:
        self.by_path: dict[str, Checksum] = {}
        self.paths: dict[Checksum, list[str]] = {}
        for e in repo.walk_entries(commit, "/"):
            if e.kind is EntryKind.FILE:
                p = e.path.lstrip("/")
                self.by_path[p] = e.checksum
                self.paths.setdefault(e.checksum, []).append(p)
        self.sizes = {c: repo.content_size(c) for c in self.paths}
        self.root_links: dict[str, str] = {}
        for p, c in self.by_path.items():
            if "/" not in p:
                header, _ = repo.stat_file(c)
                if stat.S_ISLNK(header.mode) and not header.symlink_target.startswith("/"):
                    self.root_links[p] = header.symlink_target.rstrip("/")

    def resolve(self, path: str) -> str:
        """A package path as the tree holds it (``/etc`` → ``usr/etc``, root symlinks followed)."""
        p = path.strip("/")
        for _ in range(2):
            top, sep, rest = p.partition("/")
            if top == "etc":
                p = "usr/etc" + (sep + rest if sep else "")
            elif top in self.root_links and sep:
                p = f"{self.root_links[top]}/{rest}"
            else:
                break
        return p


def _components(tree: _Tree, db: PackageDb | None) -> dict[str, set[Checksum]]:
    owner: dict[Checksum, str] = {}
    if db is not None:
        for pkg in sorted(db.files):
            for path in db.files[pkg]:
                c = tree.by_path.get(tree.resolve(path))
                if c is not None and c not in owner:
                    owner[c] = pkg
    comps: dict[str, set[Checksum]] = {}
    for c, paths in tree.paths.items():
        p = min(paths)
        if p.startswith(("usr/lib/modules/", "usr/lib/ostree-boot/")):
            name = KERNEL
        elif c in owner:
            name = owner[c]
        elif db is not None:
            name = UNOWNED
        else:
            name = "/".join(p.split("/")[:-1][:3]) or UNOWNED
        comps.setdefault(name, set()).add(c)
    return comps


def _frequency(repo: Repo, tree: _Tree, packages: Iterable[str]) -> dict[str, int]:
    out = {}
    for pkg in packages:
        for name in (f"usr/share/doc/{pkg}/changelog.Debian.gz", f"usr/share/doc/{pkg}/changelog.gz"):
            c = tree.by_path.get(name)
            if c is None:
                continue
            try:
                out[pkg] = _uploads(gzip.decompress(repo.load_file(c)[1]))
            except (OSError, EOFError, zlib.error):
                out[pkg] = 0
            break
    return out


def _chunk(name: str, comps: list[str], members: dict[str, set[Checksum]], tree: _Tree) -> Chunk:
    objs: dict[Checksum, tuple[int, tuple[str, ...]]] = {}
    for comp in comps:
        for c in members[comp]:
            objs[c] = (tree.sizes[c], tuple(sorted(tree.paths[c])))
    return Chunk(name, tuple(sorted(comps)), dict(sorted(objs.items())))


def plan_chunks(repo: Repo, commit: Checksum, max_layers: int | None, *,
                package_db: PackageDb | None = None) -> Chunking:
    """Plan the layers of ``commit`` (see the module docstring); ``None``: one layer.

    Raises:
        ImageError: for ``max_layers`` below 1.
    """
    tree = _Tree(repo, commit)
    everything = {c: (tree.sizes[c], tuple(sorted(tree.paths[c]))) for c in sorted(tree.paths)}
    if max_layers is None or max_layers == 1:
        return Chunking((), Chunk("ostree commit", (), everything))
    if max_layers < 1:
        raise ImageError(f"--max-layers must be at least 1 (got {max_layers})")
    members = _components(tree, package_db)
    size = {n: sum(tree.sizes[c] for c in cs) for n, cs in members.items()}
    slots = max_layers - 1
    names = sorted(members, key=lambda n: (-size[n], n))
    if len(names) <= slots:
        chunks = [_chunk(n, [n], members, tree) for n in names]
    else:
        nbuckets = max(1, slots // 4)
        own_slots = slots - nbuckets
        forced = [n for n in (UNOWNED, KERNEL) if n in members][:own_slots]
        own = forced + [n for n in names if n not in forced][: own_slots - len(forced)]
        rest = [n for n in names if n not in own]
        freq = _frequency(repo, tree, rest)
        if package_db is not None:
            freq.update(package_db.changes)
        volatile = [n for n in rest if freq.get(n, 0) >= VOLATILE_UPLOADS]
        stable = [n for n in rest if freq.get(n, 0) < VOLATILE_UPLOADS]
        # Bucket counts depend on max_layers only, so a package never moves because another
        # one became volatile or stable (empty buckets simply make no layer).
        n_vol = max(1, nbuckets // 3) if nbuckets > 1 else 0
        n_stable = nbuckets - n_vol
        if n_vol == 0:
            stable, volatile = stable + volatile, []
        buckets: dict[str, list[str]] = {}
        for kind, group, n in (("stable", stable, n_stable), ("volatile", volatile, n_vol)):
            for pkg in group:
                buckets.setdefault(f"{kind}-{zlib.crc32(pkg.encode()) % n}", []).append(pkg)
        chunks = [_chunk(n, [n], members, tree) for n in own]
        chunks += [_chunk(f"{key}: {', '.join(sorted(ps)[:3])}{' …' if len(ps) > 3 else ''}", ps, members, tree)
                   for key, ps in sorted(buckets.items())]
    # An object whose paths belong to several components is placed once (first chunk wins).
    seen: set[Checksum] = set()
    deduped = []
    for ch in sorted(chunks, key=lambda x: x.name):
        objs = {c: v for c, v in ch.objects.items() if c not in seen}
        seen.update(objs)
        if objs:
            deduped.append(Chunk(ch.name, ch.components, objs))
    return Chunking(tuple(deduped), Chunk("ostree commit", (), {}))

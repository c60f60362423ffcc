"""Encapsulated images written as ostree-ext writes them (docs/oci-encapsulation.md), for the tests.

An independent writer of the format, from the facts in ostree-rs-ext ``tar/export.rs``: the
repository skeleton, the commit layer (commit, commitmeta, the dirtree/dirmeta walk with the
checkout-path directories, ``var/tmp``, then the remainder's content) and chunk layers
(skeleton + content objects, each with its ``.file-xattrs`` and ``.file-xattrs-link`` and the
hardlinks at its checkout paths).
"""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

from ocigen import Entry, layer_tar, write_tars

from bootree.format.checksum import Checksum, ObjectType
from bootree.format.objects import xattrs_to_bytes
from bootree.repo import Repo, TreeSource

REPO = "sysroot/ostree/repo"
CONFIG = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n"

#: ``mutate(ext, checksum, data)`` → new data, or ``None`` to leave the object out.
Mutate = Callable[[str, str, bytes], bytes | None]


def obj(csum: str, ext: str) -> str:
    return f"{REPO}/objects/{csum[:2]}/{csum[2:]}.{ext}"


class _Tar:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.GNU_FORMAT)

    def _info(self, name: str, kind: bytes, uid: int, gid: int, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.uid, ti.gid, ti.mode, ti.mtime = kind, uid, gid, mode, 0
        return ti

    def dir(self, name: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> None:
        self.tf.addfile(self._info(name, tarfile.DIRTYPE, uid, gid, mode))

    def data(self, name: str, data: bytes, uid: int = 0, gid: int = 0, mode: int = 0o644) -> None:
        ti = self._info(name, tarfile.REGTYPE, uid, gid, mode)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))

    def link(self, name: str, target: str, uid: int = 0, gid: int = 0, mode: int = 0o644) -> None:
        ti = self._info(name, tarfile.LNKTYPE, uid, gid, mode)
        ti.linkname = target
        self.tf.addfile(ti)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> None:
        ti = self._info(name, tarfile.SYMTYPE, uid, gid, 0o777)
        ti.linkname = target
        self.tf.addfile(ti)

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()


def _skeleton(t: _Tar) -> None:
    for d in ("sysroot", "sysroot/ostree", REPO, f"{REPO}/objects"):
        t.dir(d)
    for i in range(256):
        t.dir(f"{REPO}/objects/{i:02x}")
    for d in ("extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp", "tmp/cache"):
        t.dir(f"{REPO}/{d}")
    t.data(f"{REPO}/config", CONFIG)


def _checkout_path(path: str, v0: bool) -> str:
    if path == "usr/etc" or path.startswith("usr/etc/"):
        path = path[4:]
    return "./" + path if v0 else path


class _Writer:
    def __init__(self, repo: Repo, mutate: Mutate | None, xattrs_style: str = "v1") -> None:
        self.repo = repo
        self.xattrs_style = xattrs_style
        self.mutate = mutate or (lambda _e, _c, d: d)
        self.paths: dict[str, list[str]] = {}

    def put(self, t: _Tar, ext: str, csum: str, data: bytes) -> None:
        out = self.mutate(ext, csum, data)
        if out is not None:
            t.data(obj(csum, ext), out)

    def content(self, t: _Tar, csum: str, wrote_xattrs: set[str]) -> None:
        header, data = self.repo.load_file(Checksum(csum))
        xb = xattrs_to_bytes(header.xattrs)
        xc = hashlib.sha256(xb).hexdigest()
        v0 = self.xattrs_style == "v0"
        if xc not in wrote_xattrs and self.xattrs_style != "v1-regular":
            wrote_xattrs.add(xc)
            t.data(f"{REPO}/xattrs/{xc}" if v0 else obj(xc, "file-xattrs"), xb)
        out = self.mutate("file", csum, data)
        if out is None:
            return
        if v0:  # the v0 tar export: a .file.xattrs hardlink into repo/xattrs/
            t.link(obj(csum, "file.xattrs"), f"{REPO}/xattrs/{xc}")
        elif self.xattrs_style == "v1-regular":  # past a hardlink limit: the bytes themselves
            t.data(obj(csum, "file-xattrs-link"), xb)
        else:
            t.link(obj(csum, "file-xattrs-link"), obj(xc, "file-xattrs"))
        mode = header.mode & 0o7777
        if header.is_symlink:
            t.symlink(obj(csum, "file"), header.symlink_target, header.uid, header.gid)
        else:
            t.data(obj(csum, "file"), out, header.uid, header.gid, mode)
        for p in self.paths.get(csum, ()):
            if not header.is_symlink and not data:
                t.data(_checkout_path(p, False), b"", header.uid, header.gid, mode)
            else:
                t.link(_checkout_path(p, False), obj(csum, "file"), header.uid, header.gid, mode)

    def walk(self, commit: str) -> tuple[list[tuple[str, str, bytes, str | None]], list[str]]:
        """Metadata objects and directories in export order, and content objects in tree order."""
        repo = self.repo
        c = repo.read_commit(Checksum(commit))
        out: list[tuple[str, str, bytes, str | None]] = [
            ("dirmeta", c.root_meta, repo.load_metadata(ObjectType.DIR_META, c.root_meta), None)]
        files: list[str] = []
        seen_t: set[str] = set()
        seen_m: set[str] = {c.root_meta}

        def rec(tree: str, path: str) -> None:
            if tree not in seen_t:
                seen_t.add(tree)
                out.append(("dirtree", tree, repo.load_metadata(ObjectType.DIR_TREE, Checksum(tree)), None))
            dt = repo.read_dirtree(Checksum(tree))
            for name, csum in dt.files:
                if csum not in self.paths:
                    files.append(csum)
                self.paths.setdefault(csum, []).append(f"{path}{name}")
            for name, sub, meta in dt.dirs:
                if meta not in seen_m:
                    seen_m.add(meta)
                    out.append(("dirmeta", meta, repo.load_metadata(ObjectType.DIR_META, meta), None))
                if path == "" and name == "sysroot":
                    continue
                out.append(("dir", meta, b"", f"{path}{name}"))
                rec(sub, f"{path}{name}/")

        rec(c.root_tree, "")
        return out, files


def encapsulate(repo: Repo, commit: str, *, chunks: int = 0, mutate: Mutate | None = None,
                wrong_layer: str | None = None, xattrs_style: str = "v1") -> list[bytes]:
    """The ostree layers of ``commit``: the commit layer, then ``chunks`` chunk layers.

    ``wrong_layer="dirmeta-in-chunk"`` puts a metadata object into the first chunk layer;
    ``xattrs_style`` ``"v0"`` writes the older ``repo/xattrs/`` + ``.file.xattrs`` form,
    ``"v1-regular"`` each ``.file-xattrs-link`` as a regular file holding the xattr bytes.
    """
    w = _Writer(repo, mutate, xattrs_style)
    meta_objs, files = w.walk(commit)
    groups: list[list[str]] = [[] for _ in range(chunks + 1)]
    for i, csum in enumerate(files):
        groups[i % (chunks + 1)].append(csum)  # group 0: the remainder, in the commit layer
    t = _Tar()
    root = repo.read_dirmeta(repo.read_commit(Checksum(commit)).root_meta)
    t.dir("./", root.uid, root.gid, stat.S_IMODE(root.mode))
    _skeleton(t)
    w.put(t, "commit", commit, repo.load_metadata(ObjectType.COMMIT, Checksum(commit)))
    detached = repo.read_commitmeta(Checksum(commit))
    if detached is not None:
        w.put(t, "commitmeta", commit, detached)
    has_var_tmp = False
    for ext, csum, data, path in meta_objs:
        if ext == "dir":
            assert path is not None
            m = repo.read_dirmeta(Checksum(csum))
            t.dir(_checkout_path(path, True), m.uid, m.gid, stat.S_IMODE(m.mode))
            has_var_tmp |= path == "var/tmp"
        else:
            w.put(t, ext, csum, data)
    if not has_var_tmp:
        t.dir("var/tmp", mode=0o1777)
    wrote: set[str] = set()
    for csum in groups[0]:
        w.content(t, csum, wrote)
    layers = [t.bytes()]
    for n, group in enumerate(groups[1:]):
        t = _Tar()
        _skeleton(t)
        if n == 0 and wrong_layer == "dirmeta-in-chunk":
            _, csum, data, _ = meta_objs[0]
            t.data(obj(csum, "dirmeta"), data)
        wrote = set()
        for csum in group:
            w.content(t, csum, wrote)
        layers.append(t.bytes())
    return layers


def commit_entries(repo: Repo, entries: list[Entry], work: Path, **kw: object) -> Checksum:
    """Commit a tree given as tar entries (paths as in the commit: ``usr/etc``, not ``etc``)."""
    tar = work / "tree.tar"
    tar.write_bytes(layer_tar(entries))
    return repo.commit([TreeSource.parse(f"tar={tar}")], **kw)  # type: ignore[arg-type]


def write_encapsulated(root: Path, repo: Repo, commit: str, *, tag: str = "latest", chunks: int = 0,
                       derived: list[list[Entry]] | None = None, mutate: Mutate | None = None,
                       label_commit: str | None = None, wrong_layer: str | None = None,
                       compression: str = "gzip", xattrs_style: str = "v1") -> str:
    """An OCI layout holding ``commit`` encapsulated (plus derived layers); the manifest digest."""
    tars = encapsulate(repo, commit, chunks=chunks, mutate=mutate, wrong_layer=wrong_layer,
                       xattrs_style=xattrs_style)
    n = len(tars)
    tars += [layer_tar(e) for e in derived or []]

    def labels(diff_ids: list[str]) -> dict[str, str]:
        return {"ostree.commit": label_commit or commit, "ostree.final-diffid": diff_ids[n - 1],
                "ostree.bootable": "true"}

    return write_tars(root, tars, tag=tag, label_fn=labels, compression=compression)

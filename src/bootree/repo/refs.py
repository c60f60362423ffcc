"""Refs: named pointers to commits under ``refs/heads``, ``refs/remotes`` and ``refs/mirrors``.

Layer: repo. A ref file holds 64 hex digits and a newline, as ostree writes it. Updates are
atomic (temp file, fsync, rename) and can be compare-and-swap: ``set(name, new, expected=old)``
fails with :class:`~bootree.errors.RefConflict` if someone else moved the ref meanwhile. The
CAS is serialised by an OFD lock on ``refs/.bootree-lock``, a file ostree never lists as a ref.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
from pathlib import Path

from bootree import _fs
from bootree.errors import CorruptObject, RefConflict
from bootree.format.checksum import Checksum, is_checksum
from bootree.format.refspec import RefSpec, parse_refspec

__all__ = ["UNSET", "RefStore"]


log = logging.getLogger(__name__)


def _is_utf8(name: str) -> bool:
    """Whether a file name (decoded by Python with surrogate escapes) was valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Sentinel for "no compare-and-swap check" in :meth:`RefStore.set`.
UNSET = _Unset()


class RefStore:
    """The refs of one repository on disk."""

    def __init__(self, root: Path) -> None:
        self.refs = root / "refs"
        self._lock_path = self.refs / ".bootree-lock"

    def _path(self, spec: RefSpec) -> Path:
        if spec.remote is None:
            return self.refs / "heads" / spec.ref
        return self.refs / "remotes" / spec.remote / spec.ref

    def mirror_path(self, collection_id: str, ref: str) -> Path:
        """Where a collection-ref mirror lives."""
        return self.refs / "mirrors" / collection_id / ref

    def get(self, refspec: str | RefSpec) -> Checksum | None:
        """The commit a ref points to, or ``None`` if the ref does not exist.

        Raises:
            InvalidRefName: for a malformed name.
            CorruptObject: for a ref file that does not hold a checksum.
        """
        spec = refspec if isinstance(refspec, RefSpec) else parse_refspec(refspec)
        return self._read(self._path(spec), str(spec))

    @staticmethod
    def _read(path: Path, name: str) -> Checksum | None:
        try:
            text = path.read_text("ascii", errors="replace").strip()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        if not is_checksum(text):
            raise CorruptObject(name, "ref", f"does not hold a checksum: {text[:80]!r}")
        return Checksum(text)

    def list(self, prefix: str | None = None, *, remote: str | None = None) -> dict[str, Checksum]:
        """Refs as ``{"name": csum}`` for local refs and ``{"remote:name": csum}`` for remote ones.

        ``prefix`` filters by leading path components (``os`` matches ``os/main``); with
        ``remote`` only that remote's refs are listed. A file whose name is not UTF-8 is not a
        ref (ostree skips it too); it is logged and left alone.

        Raises:
            CorruptObject: for a ref file that does not hold a checksum.
        """
        out: dict[str, Checksum] = {}
        for name, path in self._files(prefix, remote):
            csum = self._read(path, name)
            if csum is not None:
                out[name] = csum
        return out

    def names(self, prefix: str | None = None, *, remote: str | None = None) -> builtins.list[str]:
        """The names :meth:`list` would return, without reading (or judging) the ref files."""
        return [name for name, _ in self._files(prefix, remote)]

    def _files(self, prefix: str | None, remote: str | None) -> builtins.list[tuple[str, Path]]:
        found: builtins.list[tuple[str, Path]] = []
        if remote is None:
            self._walk(self.refs / "heads", "", found)
            remotes_dir = self.refs / "remotes"
            for r in sorted(os.listdir(remotes_dir)) if remotes_dir.is_dir() else []:
                self._walk(remotes_dir / r, f"{r}:", found)
        else:
            self._walk(self.refs / "remotes" / remote, f"{remote}:", found)
        if prefix:
            p = prefix.rstrip("/")

            def matches(key: str) -> bool:
                return any(x == p or x.startswith(p + "/") for x in (key, key.partition(":")[2]))

            found = [(k, v) for k, v in found if matches(k)]
        return sorted(found)

    def list_mirrors(self) -> dict[tuple[str, str], Checksum]:
        """Collection-ref mirrors as ``{(collection_id, ref): csum}``."""
        found: builtins.list[tuple[str, Path]] = []
        base = self.refs / "mirrors"
        for cid in sorted(os.listdir(base)) if base.is_dir() else []:
            self._walk(base / cid, f"{cid}\0", found)
        out: dict[tuple[str, str], Checksum] = {}
        for key, path in found:
            csum = self._read(path, key.replace("\0", ":"))
            if csum is not None:
                cid, ref = key.split("\0", 1)
                out[(cid, ref)] = csum
        return out

    @staticmethod
    def _walk(base: Path, prefix: str, out: builtins.list[tuple[str, Path]]) -> None:
        if not base.is_dir():
            return
        for root, _dirs, files in os.walk(base):
            rel = os.path.relpath(root, base)
            for f in files:
                if f.startswith("."):
                    continue
                name = prefix + (f if rel == "." else f"{rel}/{f}")
                if not _is_utf8(name):
                    log.warning("ignoring ref file %s: its name is not UTF-8", os.path.join(root, f))
                    continue
                out.append((name, Path(root) / f))

    def set(
        self,
        refspec: str | RefSpec,
        csum: Checksum | None,
        *,
        expected: Checksum | _Unset | None = UNSET,
        fsync: bool = True,
    ) -> None:
        """Point a ref at ``csum`` (``None`` deletes it), atomically.

        With ``expected`` given, the update happens only if the ref currently holds that value
        (``None`` meaning "does not exist").

        Raises:
            RefConflict: when ``expected`` does not match.
            InvalidRefName: for a malformed name.
        """
        spec = refspec if isinstance(refspec, RefSpec) else parse_refspec(refspec)
        path = self._path(spec)
        _fs.makedirs(self.refs)
        with _fs.ofd_lock(self._lock_path, exclusive=True):
            if not isinstance(expected, _Unset):
                current = self._read(path, str(spec))
                if current != expected:
                    raise RefConflict(str(spec), expected, current)
            if csum is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    self._prune_empty_dirs(path.parent)
                return
            if path.is_dir():
                raise RefConflict(str(spec), None, "a directory of refs")
            _fs.makedirs(path.parent)
            _fs.write_atomic(path, (csum + "\n").encode("ascii"), fsync=fsync)

    def set_mirror(self, collection_id: str, ref: str, csum: Checksum | None, *, fsync: bool = True) -> None:
        """Point the mirror ``refs/mirrors/COLLECTION/REF`` at ``csum`` (``None`` deletes it),
        atomically; the caller has validated both names."""
        path = self.mirror_path(collection_id, ref)
        _fs.makedirs(self.refs)
        with _fs.ofd_lock(self._lock_path, exclusive=True):
            if csum is None:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.unlink(path)
                    self._prune_empty_dirs(path.parent)
                return
            if path.is_dir():
                raise RefConflict(f"({collection_id}, {ref})", None, "a directory of refs")
            _fs.makedirs(path.parent)
            _fs.write_atomic(path, (csum + "\n").encode("ascii"), fsync=fsync)

    def aliases(self) -> dict[str, str]:
        """Local refs that follow another local ref (symbolic links in refs/heads): ``{alias: target}``."""
        heads = self.refs / "heads"
        out: dict[str, str] = {}
        for root, _dirs, files in os.walk(heads) if heads.is_dir() else ():
            for f in files:
                path = Path(root) / f
                if path.is_symlink():
                    target = os.path.relpath(os.path.realpath(path), os.path.realpath(heads))
                    out[os.path.relpath(path, heads)] = target
        return dict(sorted(out.items()))

    def set_alias(self, alias: str, target: str) -> None:
        """Make the local ref ``alias`` follow the local ref ``target`` (a relative symbolic link,
        as ostree writes it), replacing what ``alias`` was.

        Raises:
            InvalidRefName: for a malformed name.
        """
        spec, dest = parse_refspec(alias), parse_refspec(target)
        path, target_path = self._path(spec), self._path(dest)
        with _fs.ofd_lock(self._lock_path, exclusive=True):
            _fs.makedirs(path.parent)
            tmp = path.with_name(f".{path.name}.alias-tmp")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(os.path.relpath(target_path, path.parent), tmp)
            os.replace(tmp, path)

    def _prune_empty_dirs(self, d: Path) -> None:
        stop = {self.refs / "heads", self.refs / "remotes", self.refs / "mirrors", self.refs}
        while d not in stop and d.is_relative_to(self.refs):
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    def delete_remote(self, remote: str) -> None:
        """Remove every ref of a remote."""
        _fs.rmtree(self.refs / "remotes" / remote)

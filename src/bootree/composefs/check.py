"""Checking composefs images against the repository (``fsck --composefs``).

Layer: composefs. Two checks, because an image can go wrong in two ways:

* a commit that carries ``ostree.composefs.digest.v0`` must still produce an image with that
  digest: :func:`check_commit` regenerates it (computing every object's fs-verity digest) and,
  on a mismatch, names the objects whose content no longer matches their checksum;
* an image on disk (a deployment's ``.ostree.cfs``) redirects each file to an object and pins
  that object's fs-verity digest: :func:`check_image_objects` recomputes the digest of every
  referenced object and reports the ones that differ, are missing or have another size. This is
  what ``verity=require`` would catch at read time, found ahead of time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bootree.composefs.image import COMPOSEFS_NAME, Verity, build_image, commit_digest, external_files
from bootree.composefs.verity import file_digest
from bootree.errors import BootreeError, ComposefsFormatError
from bootree.format.checksum import Checksum, is_checksum
from bootree.format.erofs_read import read_image
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode
from bootree.repo.traverse import FsckProblem

__all__ = ["ComposefsProblem", "check_commit", "check_image_objects", "objects_of_payload"]


@dataclass(frozen=True, slots=True)
class ComposefsProblem:
    """One finding: ``what`` is a commit or object checksum or an image path."""

    what: str
    message: str


def objects_of_payload(payload: bytes) -> Checksum | None:
    """The content checksum an ostree-style payload ``ab/cdef….file`` names, if it is one."""
    text = payload.decode("ascii", "replace")
    if len(text) == 70 and text[2] == "/" and text.endswith(".file"):
        csum = text[:2] + text[3:65]
        if is_checksum(csum):
            return Checksum(csum)
    return None


def check_commit(repo: Repo, csum: Checksum) -> list[ComposefsProblem]:
    """Regenerate the image of a commit carrying a composefs digest and compare.

    Returns no problems for commits without the digest.
    """
    commit = repo.read_commit(csum)
    expected = commit_digest(commit)
    if expected is None:
        return []
    try:
        image = build_image(repo, csum, verity=Verity.YES)
    except BootreeError as e:
        return [ComposefsProblem(csum, f"commit {csum}: cannot build its composefs image: {e.message}")]
    if image.digest == expected:
        return []
    problems = [
        ComposefsProblem(
            csum,
            f"commit {csum}: composefs image digest {image.digest.hex()} differs from the recorded {expected.hex()}",
        )
    ]
    for path, _kind, obj, _meta in repo.walk_tree(csum):
        if _kind != "f":
            continue
        try:
            repo.store.verify_file(obj)
        except BootreeError as e:
            problems.append(ComposefsProblem(obj, f"object {obj} ({path}): {e.message}"))
    return problems


def check_image_objects(
    repo: Repo, image_path: Path, *, progress: Callable[[int, int], None] | None = None
) -> list[ComposefsProblem]:
    """Check every object an image on disk redirects to: present, same size, same fs-verity digest."""
    try:
        root = read_image(image_path.read_bytes()).root
    except (OSError, ComposefsFormatError) as e:
        return [ComposefsProblem(str(image_path), f"{image_path}: unreadable composefs image: {e}")]
    files = list(external_files(root))
    problems: list[ComposefsProblem] = []
    objects_dir = repo.path / "objects"
    checked: dict[bytes, str | None] = {}
    for i, (path, node) in enumerate(files):
        if progress is not None:
            progress(i, len(files))
        payload = node.payload or b""
        if payload in checked:
            msg = checked[payload]
        else:
            msg = _check_object(repo, objects_dir, payload, node.size, node.digest)
            checked[payload] = msg
        if msg is not None:
            obj = objects_of_payload(payload)
            problems.append(ComposefsProblem(obj or payload.decode("utf-8", "replace"), f"{msg} ({path.decode('utf-8', 'replace')} in {image_path})"))
    return problems


def _check_object(repo: Repo, objects_dir: Path, payload: bytes, size: int, digest: bytes | None) -> str | None:
    obj = objects_of_payload(payload)
    name = obj or payload.decode("utf-8", "replace")
    if repo.mode is RepoMode.ARCHIVE:
        return f"object {name}: an archive repository cannot back a composefs image"
    path = os.path.join(os.fsencode(objects_dir), payload.lstrip(b"/"))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"object {name} is missing"
    except OSError as e:
        return f"object {name}: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"object {name} is not a regular file"
        if st.st_size != size:
            return f"object {name} has {st.st_size} bytes, the image expects {size}"
        if digest is not None and file_digest(fd) != digest:
            return f"object {name} does not match the fs-verity digest the image records"
    finally:
        os.close(fd)
    return None



def fsck_composefs(repo: Repo, *, known: Iterable[str] = ()) -> list[FsckProblem]:
    """What ``fsck --composefs`` adds to a plain fsck: one problem per commit whose regenerated
    image does not have the digest it records, and per object a deployment's image redirects to
    that does not match the image's view of it (size, fs-verity digest).

    ``known`` names the objects the plain fsck already reported, so a commit's image is not
    reported twice for the same bad object. A sysroot's repository (``SYSROOT/ostree/repo``)
    backs the images of its deployments, so those are checked too, known-bad objects included:
    each image's view of them is news.
    """
    seen = set(known)
    problems: list[FsckProblem] = []
    for otype, csum in repo.store.iter_objects():
        if otype is ObjectType.COMMIT:
            for problem in check_commit(repo, csum):
                if problem.what not in seen:
                    seen.add(problem.what)
                    problems.append(FsckProblem("composefs", problem.what, problem.message))
    if repo.path.parent.name == "ostree":
        for image in sorted((repo.path.parent / "deploy").glob(f"*/deploy/*/{COMPOSEFS_NAME}")):
            problems.extend(FsckProblem("composefs", p.what, p.message) for p in check_image_objects(repo, image))
    return problems

"""composefs at deploy time: ``.ostree.cfs`` in each deployment, checked against the commit.

Layer: sysroot. ostree reads the deployed tree's ``prepare-root.conf`` (``usr/lib/ostree/`` then
``etc/ostree/``, the later file replacing the earlier one as a whole) and its ``[composefs]
enabled`` key: ``no`` (the default), ``yes``/``maybe``, ``verity`` or ``signed`` (the last two
also make prepare-root require fs-verity on every object). When it is on, the deploy writes the
commit's composefs image to ``.ostree.cfs`` (mode 0644, fs-verity enabled where the file system
allows) and checks its digest against the commit's ``ostree.composefs.digest.v0``: a repository
object that changed since the commit was made changes the image, and the deploy is refused.

fs-verity on objects: every object the image names gets fs-verity if it lacks it, as the
repository's ``[ex-fsverity]`` asks (``required=true``: a file system without fs-verity fails
the deploy with ``VerityUnsupported``; ``opportunistic=true``: best effort); ``verity``/``signed``
make it best effort at least, since their boot (``verity=require``) refuses objects without it.

Object digests: with ``verity``/``signed``, or whenever the commit carries a digest to check
against, every object's fs-verity digest is measured by the kernel or computed in software
(ostree computes them only for ``verity``/``signed``, so with ``yes`` on a file system without
fs-verity it writes an image without digests and checks nothing; bootree checks in that case
too). Otherwise only digests the kernel already knows are recorded.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootree import _fs
from bootree.composefs.names import COMPOSEFS_NAME
from bootree.composefs.verity import enable_verity
from bootree.errors import KeyFileError, SysrootError, VerityUnsupported
from bootree.format.checksum import Checksum
from bootree.format.fsverity import fsverity_digest
from bootree.format.keyfile import KeyFile
from bootree.format.objects import Commit
from bootree.repo import Repo

if TYPE_CHECKING:
    from bootree.composefs.image import Verity
    from bootree.sysroot.sysroot import Sysroot

__all__ = [
    "PREPARE_ROOT_CONF",
    "ComposefsMode",
    "DeploymentImage",
    "PostCopy",
    "deployment_image",
    "load_root_config",
    "post_copy",
    "write_deployment_image",
]

log = logging.getLogger(__name__)

#: The config file, under ``usr/lib`` and ``etc`` of the deployed tree.
PREPARE_ROOT_CONF = "ostree/prepare-root.conf"


class ComposefsMode(enum.Enum):
    """``[composefs] enabled`` of prepare-root.conf (or the ``ostree.prepare-root.composefs`` karg)."""

    NO = "no"
    MAYBE = "maybe"
    YES = "yes"
    VERITY = "verity"
    SIGNED = "signed"

    @property
    def enabled(self) -> bool:
        return self is not ComposefsMode.NO

    @property
    def require_verity(self) -> bool:
        return self in (ComposefsMode.VERITY, ComposefsMode.SIGNED)

    @classmethod
    def parse(cls, value: str) -> ComposefsMode:
        """ostree's tristate spellings plus ``verity`` and ``signed``."""
        v = value.strip().lower()
        if v in ("yes", "true", "1"):
            return cls.YES
        if v in ("no", "false", "0"):
            return cls.NO
        try:
            return cls(v)
        except ValueError:
            raise SysrootError(f"prepare-root.conf: invalid [composefs] enabled value {value!r}") from None


def load_root_config(root: Path) -> ComposefsMode:
    """The composefs mode a deployed tree asks for (``usr/lib`` then ``etc``, last file wins)."""
    mode = ComposefsMode.NO
    for base in ("usr/lib", "etc"):
        path = root / base / PREPARE_ROOT_CONF
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            raise SysrootError(f"cannot read {path}: {e}") from e
        try:
            kf = KeyFile.from_text(text)
        except KeyFileError as e:
            raise SysrootError(f"{path}: {e.message}") from e
        value = kf.get("composefs", "enabled")
        mode = ComposefsMode.NO if value is None else ComposefsMode.parse(value)
    return mode


def _enable_policy(repo: Repo, mode: ComposefsMode) -> Verity:
    """Whether the deploy turns fs-verity on for objects that lack it (written before the
    repository asked for it, or copied in by an install that ran where the target file system's
    fs-verity was out of reach): the repository's ``fs_verity`` decides (``yes``: or fail);
    ``verity``/``signed`` boot with ``verity=require``, which refuses every object without it,
    so they get it at least where the file system allows."""
    from bootree.composefs.image import Verity  # on first use, see write_deployment_image

    if repo.fs_verity == "yes":
        return Verity.YES
    return Verity.MAYBE if repo.fs_verity == "maybe" or mode.require_verity else Verity.NO


def write_deployment_image(repo: Repo, csum: Checksum, commit: Commit, root: Path) -> bytes | None:
    """Write ``.ostree.cfs`` into a deployment being prepared, if its config enables composefs.

    Returns the image digest, or ``None`` when composefs is off.

    Raises:
        ComposefsDigestMismatch: if the image differs from the digest the commit carries.
    """
    mode = load_root_config(root)
    if not mode.enabled:
        return None
    # The image builder (EROFS writer, fs-verity hashing, a thread pool) loads only for a deployment
    # that enables composefs: every deploy imports this module (issue 9: 0.1 s of start-up).
    from bootree.composefs.image import Verity, build_image, check_image, commit_digest

    expected = commit_digest(commit)
    verity = Verity.YES if mode.require_verity or expected is not None else Verity.MAYBE
    image = build_image(repo, csum, verity=verity, enable=_enable_policy(repo, mode))
    check_image(csum, commit, image)
    if mode is ComposefsMode.SIGNED and expected is None:
        log.warning("composefs 'signed' but commit %s carries no %s: the boot will refuse it", csum, "digest")
    path = root / COMPOSEFS_NAME
    _fs.write_atomic(path, image.data, mode=0o644)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        enable_verity(fd)
    except VerityUnsupported:
        log.debug("no fs-verity for %s on this file system", path)
    finally:
        os.close(fd)
    log.info("composefs image %s (digest %s, verity %s)", path, image.hexdigest, verity.value)
    return image.digest


@dataclass(frozen=True, slots=True)
class DeploymentImage:
    """What status shows about a deployment's composefs image."""

    digest: str
    size: int


def deployment_image(deploy_dir: Path) -> DeploymentImage | None:
    """The composefs image of a deployment directory, or ``None`` if it is not composefs-backed."""
    path = deploy_dir / COMPOSEFS_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SysrootError(f"cannot read {path}: {e.strerror}") from e
    return DeploymentImage(digest=fsverity_digest(data).hex(), size=len(data))


@dataclass(frozen=True, slots=True)
class PostCopy:
    """What :func:`post_copy` did: files given fs-verity (already-enabled ones count), and whether
    the file system supports it at all."""

    files: int
    supported: bool


def post_copy(sysroot: Sysroot) -> PostCopy:
    """ostree's ``admin post-copy`` (``ostree_sysroot_update_post_copy``): after a sysroot was copied
    file by file (an install that wrote it elsewhere), put back what a copy loses: fs-verity on
    every loose object and every deployment's ``.ostree.cfs``, as the repository's ``fs_verity``
    asks. Nothing when it is ``no``; ``maybe`` stops at the first file the file system refuses.

    Raises:
        VerityUnsupported: ``[ex-fsverity] required=true`` on a file system without fs-verity.
    """
    repo = sysroot.repo
    wanted = repo.fs_verity
    if wanted == "no":
        return PostCopy(0, True)
    paths = [repo.object_path(otype, csum) for otype, csum in repo.store.iter_objects()]
    paths += [sysroot.deployment_dir(d) / COMPOSEFS_NAME for d in sysroot.deployments]
    done = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            continue  # a deployment without composefs
        except OSError as e:
            if e.errno == errno.ELOOP:
                continue  # a bare symlink object: verity is for file data
            raise SysrootError(f"cannot open {path}: {e.strerror}") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            enable_verity(fd)
        except VerityUnsupported:
            if wanted == "yes":
                raise VerityUnsupported(
                    f"{repo.path}: fs-verity is required ([ex-fsverity] required=true) but this file system has none"
                ) from None
            return PostCopy(done, False)
        finally:
            os.close(fd)
        done += 1
    log.info("post-copy: fs-verity on %d files", done)
    return PostCopy(done, True)

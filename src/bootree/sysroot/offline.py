"""``upgrade --from-file FILE``: update a machine from an offline update file, with no network.

Layer: sysroot. An offline update file is a static delta made self-contained (every part inline,
no fallback objects) and usually signed (``static-delta generate --self-contained --sign=KEY``):
it carries the new commit, its detached metadata and every object the machine lacks. Applying
it is the two halves of an ordinary upgrade without the pull: the delta is applied into the
system repository (one verified transaction), then the commit is deployed or staged exactly as
:func:`bootree.sysroot.upgrade.upgrade` does it (failed-health and downgrade rules included),
and only then does the origin's ref move to it.

What makes a file acceptable, before a single part is read:

* the delta's source commit is in the repository (a file made for another version is
  refused with a one-line error, not half applied);
* the new commit is bound (``ostree.ref-binding``) to the origin's ref, when it names refs;
* a signed file verifies with the trusted keys (``check_signature``); a signature that no
  trusted key made is refused;
* when the origin's remote requires signed commits, an unsigned file's commit must pass
  ``check_commit`` (its own detached signatures), as a pull of it would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bootree.delta.offline import SignatureCheck, apply_superblock_file, open_superblock_file
from bootree.errors import DeltaError, SysrootError
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, ObjectType
from bootree.format.refspec import parse_refspec
from bootree.sysroot.sysroot import Sysroot
from bootree.sysroot.upgrade import UpgradeResult, upgrade, upgrade_base

__all__ = ["CommitCheck", "upgrade_from_file"]

#: Checks a commit's signatures (checksum, commit bytes, detached metadata); raises to refuse.
CommitCheck = Callable[[Checksum, bytes, "bytes | None"], object]


def upgrade_from_file(
    sysroot: Sysroot,
    path: Path,
    *,
    check_signature: SignatureCheck | None = None,
    check_commit: CommitCheck | None = None,
    stage_it: bool = False,
    stateroot: str | None = None,
    allow_failed: bool = False,
    allow_downgrade: bool = False,
) -> UpgradeResult:
    """Apply the offline update file ``path`` and deploy (or stage) its commit.

    The sysroot must be locked. See the module docstring for what is checked.

    Raises:
        DeltaError: the file's source commit is missing, or it is signed and no key is given.
        SignatureError: from ``check_signature`` or ``check_commit``.
        SysrootError: the deployment has no origin ref, or the commit is bound to other refs.
        DowngradeError, NotBooted: as :func:`bootree.sysroot.upgrade.upgrade`.
        DeltaFormatError, ChecksumMismatch: a damaged file (nothing is published).
    """
    base = upgrade_base(sysroot, stateroot)
    if not base.refspec:
        raise SysrootError(f"deployment {base.name} has no origin refspec to upgrade")
    repo = sysroot.repo
    sbf = open_superblock_file(path)  # not read whole: its parts are streamed when applied
    sb = sbf.superblock
    if sb.from_commit is not None and not repo.has_object(ObjectType.COMMIT, sb.from_commit):
        raise DeltaError(
            f"{path} updates from commit {sb.from_commit}, which this system does not have "
            f"(it runs {base.csum})",
            hint="use an update file made from the version this system runs, or a --empty one",
        )
    if sbf.signed:
        if check_signature is None:
            raise DeltaError("Key is mandatory to check delta signature",
                             hint="give the publisher's public key (--keys-file=FILE or --keys-dir=DIR)")
        sbf = sbf.checked(check_signature)  # from here on, the values of the bytes checked
        sb = sbf.superblock
    elif check_commit is not None:
        check_commit(sb.to_commit, sb.commit, sb.commitmeta)
    ref = parse_refspec(base.refspec).ref
    bound = Commit.from_bytes(sb.commit).get("ostree.ref-binding")
    if isinstance(bound, list) and bound and ref not in bound:
        raise SysrootError(
            f"{path} holds commit {sb.to_commit} for {', '.join(map(str, bound))}, not for this system's {ref!r}"
        )
    if not repo.has_object(ObjectType.COMMIT, sb.to_commit) or repo.is_partial(sb.to_commit):
        apply_superblock_file(repo, sbf, what=str(path))
    result = upgrade(sysroot, commit=sb.to_commit, stage_it=stage_it, stateroot=stateroot,
                     allow_failed=allow_failed, allow_downgrade=allow_downgrade)
    if result.deployed is not None:
        repo.set_ref(base.refspec, sb.to_commit)
    return result

"""The exception tree of bootree.

Every error bootree raises on purpose derives from :class:`BootreeError`, so the CLI can print
one line for it and exit 1, and library users can catch one class. Below the root the tree is
split by what the caller can do about it: bad data (:class:`FormatError`, :class:`RepoError`,
:class:`VerificationError`), bad network (:class:`FetchError`), bad deployment state
(:class:`SysrootError`). Subclasses carry the data they are about (a checksum, a path) so that
callers need not parse messages.

This module imports nothing from bootree and may be imported by every layer.
"""

from __future__ import annotations

import os


class BootreeError(Exception):
    """Root of every error bootree raises on purpose.

    ``hint`` is an optional second sentence telling the user what to do next; the CLI prints
    it after the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable whatever a subclass's constructor takes (errors cross process boundaries,
        # e.g. from a checkout worker): rebuilt from the class, the args and the attributes.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(cls: type[BootreeError], args: tuple[object, ...], state: dict[str, object]) -> BootreeError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


# --- format layer ------------------------------------------------------------------------------


class FormatError(BootreeError):
    """Bytes that do not decode to a valid value of the expected format."""


class TarFormatError(FormatError):
    """A tar archive (an OCI layer) with a malformed or truncated header, record or body."""


class GVariantError(FormatError):
    """Serialized GVariant data that is malformed or not in normal form."""


class InvalidChecksum(FormatError):
    """A string that is not 64 lowercase hex digits, or raw bytes that are not 32 long."""


class InvalidRefName(FormatError):
    """A ref or remote name that does not match ostree's rules."""

    def __init__(self, name: str, why: str = "") -> None:
        detail = f": {why}" if why else ""
        super().__init__(f"Invalid ref name {name!r}{detail}")
        self.name = name


class InvalidTreeEntry(FormatError):
    """A dirtree entry whose name could escape or confuse a checkout (``..``, ``/``, NUL)."""

    def __init__(self, name: str, where: str = "") -> None:
        at = f" in dirtree {where}" if where else ""
        # ostree's wording (scripts match it): "Invalid / in filename ../x", "Invalid filename .."
        what = "Invalid / in filename" if "/" in name else "Invalid filename"
        super().__init__(f"{what} {name}{at}")
        self.name = name


class KeyFileError(FormatError):
    """A GKeyFile (repo config, origin file) that cannot be parsed."""


class ComposefsFormatError(FormatError):
    """A composefs dump file or EROFS image that is malformed, or a tree composefs cannot hold."""


# --- repository storage ------------------------------------------------------------------------


class RepoError(BootreeError):
    """A repository that is missing, malformed or inconsistent."""


class RepoNotFound(RepoError):
    """No repository at the given path."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        super().__init__(f"no repository at {os.fspath(path)}", hint="create one with 'bootree init'")
        self.path = os.fspath(path)


class ObjectMissing(RepoError):
    """A referenced object is not in the repository."""

    def __init__(self, checksum: str, kind: str) -> None:
        # ostree's words first (scripts match them).
        if kind in ("commit", "dirtree", "dirmeta", "commitmeta"):
            super().__init__(f"No such metadata object {checksum}.{kind}")
        else:
            super().__init__(f"Object missing: {kind} object {checksum} not found")
        self.checksum = checksum
        self.kind = kind


class CorruptObject(RepoError):
    """An object whose bytes do not match its name or do not parse."""

    def __init__(self, checksum: str, kind: str, why: str) -> None:
        if kind in ("commit", "dirtree", "dirmeta"):
            # ostree's words for a metadata object that does not parse (scripts match them).
            super().__init__(f"{checksum}.{kind}: {why}")
        else:
            super().__init__(f"corrupt {kind} object {checksum}: {why}")
        self.checksum = checksum
        self.kind = kind
        self.why = why


class ChecksumMismatch(RepoError):
    """Data whose computed checksum differs from the one it was announced under."""

    def __init__(self, expected: str, actual: str, kind: str = "object") -> None:
        # ostree's wording, which scripts match, then bootree's own short name for the failure
        # (which bootree's callers and tests match).
        super().__init__(
            f"Corrupted {kind} object; checksum expected='{expected}' actual='{actual}' (checksum mismatch)"
        )
        self.expected = expected
        self.actual = actual
        self.kind = kind


class RefNotFound(RepoError):
    """A ref or revision that does not resolve."""

    def __init__(self, rev: str) -> None:
        super().__init__(f"ref or commit {rev!r} not found")
        self.rev = rev


class RefConflict(RepoError):
    """A compare-and-swap ref update whose expected old value no longer holds."""

    def __init__(self, ref: str, expected: str | None, actual: str | None) -> None:
        super().__init__(f"ref {ref} changed concurrently: expected {expected or 'none'}, found {actual or 'none'}")
        self.ref = ref
        self.expected = expected
        self.actual = actual


class SummaryNotFound(RepoError):
    """A repository without a ``summary`` file (``summary --view`` before ``summary -u``)."""

    def __init__(self, repo: os.PathLike[str] | str) -> None:
        super().__init__(f"{os.fspath(repo)} has no summary", hint="create it with 'bootree summary -u'")
        self.repo = os.fspath(repo)


class CorruptSummary(RepoError):
    """A ``summary`` file that does not parse."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where} is corrupt: {why}")
        self.where = where
        self.why = why


class LockTimeout(RepoError):
    """A repository or sysroot lock that could not be taken in time."""


class UnsupportedRepoMode(RepoError):
    """An operation that the repository's mode cannot perform (e.g. serving a bare repo)."""


class SourceError(RepoError):
    """A file or archive given to commit that cannot be read or is unsafe."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path


class CheckoutError(RepoError):
    """A checkout that would write outside its destination or over something it must not."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"checkout {path}: {why}")
        self.path = path


# --- trust ------------------------------------------------------------------------------------


class VerificationError(BootreeError):
    """A signature or checksum that does not verify against the trusted keys."""



class VerityUnsupported(VerificationError):
    """The file system (or kernel) cannot enable or measure fs-verity on this file."""

class SignatureError(VerificationError):
    """Signatures of a commit or summary that do not satisfy the trust policy.

    ``subject`` names what was checked (``commit <csum>``, ``summary of <url>``) and ``reason``
    is one of ``unsigned``, ``untrusted``, ``revoked``, ``invalid``, ``malformed``, so callers
    (and tests) need not parse the message. Messages never contain key material, only public
    key identities (a fingerprint, a base64 public key).
    """

    def __init__(self, subject: str, reason: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(f"{subject}: {detail}", hint=hint)
        self.subject = subject
        self.reason = reason
        self.detail = detail


class DowngradeError(VerificationError):
    """A commit older than the one it would replace (a replayed old, validly signed commit)."""

    def __init__(self, what: str, new: str, new_time: int, current: str, current_time: int) -> None:
        super().__init__(
            f"{what}: commit {new} (timestamp {new_time}) is older than the current {current} "
            f"(timestamp {current_time}): refusing a downgrade (Upgrade target is chronologically older)",
            hint="pass --allow-downgrade to install an older commit on purpose",
        )
        self.new = new
        self.new_time = new_time
        self.current = current
        self.current_time = current_time


class SummaryExpired(VerificationError):
    """A summary past its ``bootree.summary.expires`` time: a stale or frozen mirror."""

    def __init__(self, url: str, expires: int, now: int) -> None:
        super().__init__(
            f"summary of {url} expired at {expires} (now {now}): the mirror may be stale or frozen",
            hint="ask the publisher to re-sign the summary, or check the mirror",
        )
        self.url = url
        self.expires = expires
        self.now = now


# --- network -----------------------------------------------------------------------------------


class FetchError(BootreeError):
    """A download that failed: network error, bad status, too large, truncated or timed out."""

    def __init__(self, url: str, why: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(f"fetching {url}: {why}")
        self.url = url
        self.why = why
        self.status = status
        self.transient = transient


class NotFoundError(FetchError):
    """A remote file that does not exist (HTTP 404, missing local file)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "not found", status=404)


# --- sysroot -----------------------------------------------------------------------------------


class SysrootError(BootreeError):
    """A sysroot that is missing, malformed, or an operation on it that cannot proceed."""


class ExternalCommandError(BootreeError):
    """An external program that failed."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        super().__init__(f"{argv[0]} exited with status {returncode}" + (f": {last}" if last else ""))
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


# --- sysroot layer: specific errors (owned by the sysroot work, issue 3) ----------------------


class SysrootNotFound(SysrootError):
    """A directory that is not an ostree sysroot (no ``ostree/repo`` or ``ostree/deploy``)."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        super().__init__(
            f"{os.fspath(path)} is not a sysroot (no ostree/repo)", hint="create one with 'bootree admin init-fs DIR'"
        )
        self.path = os.fspath(path)


class StaterootNotFound(SysrootError):
    """A stateroot (``--os``) that has not been initialized with ``os-init``."""

    def __init__(self, stateroot: str) -> None:
        super().__init__(
            f"stateroot {stateroot!r} does not exist", hint=f"run 'bootree admin os-init {stateroot}' first"
        )
        self.stateroot = stateroot


class DeploymentNotFound(SysrootError):
    """A deployment index or name that is not in the current list."""

    def __init__(self, which: str) -> None:
        super().__init__(f"no deployment {which}")
        self.which = which


class BootConfigDamaged(SysrootError):
    """A write that would delete deployments a damaged boot configuration no longer lists.

    Reading a damaged configuration recovers the way ostree does where ostree does; a write
    on top of it (deploy, cleanup, ...) would treat every deployment it lost as garbage, so it
    is refused instead, before anything changes.
    """

    def __init__(self, damage: tuple[str, ...], unlisted: tuple[str, ...]) -> None:
        super().__init__(
            f"refusing to change the sysroot: the boot configuration is damaged ({'; '.join(damage)}) and does "
            f"not list deployment(s) {', '.join(unlisted)}, which a write would delete",
            hint="repair boot/loader (a symlink to loader.0 or loader.1 holding entries/) or remove the "
            "deployments by hand",
        )
        self.damage = damage
        self.unlisted = unlisted


class KernelNotFound(SysrootError):
    """A commit with no kernel in ``usr/lib/modules/<kver>/vmlinuz`` (nor a legacy layout)."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"no kernel found in {where}: No such file or directory "
            "(looked for usr/lib/modules/*/vmlinuz, usr/lib/ostree-boot, boot)"
        )
        self.where = where


class EtcMergeConflict(SysrootError):
    """A local /etc change that cannot be carried over without losing the new default.

    Raised before anything is written: the new deployment is discarded and the sysroot is
    left exactly as it was.
    """

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"/etc merge conflict at {path}: {why}", hint="move the local change aside and deploy again")
        self.path = path
        self.why = why


class NotBooted(SysrootError):
    """An operation that needs a booted deployment (staging, rollback) on a sysroot not booted."""


class NoRollback(SysrootError):
    """A rollback with no other deployment of the booted stateroot to go back to."""


class BootSimulationError(SysrootError):
    """The directory-sysroot boot simulator could not set up the deployment's root."""


# --- remotes and pulling (added by the network work) -------------------------------------------


class RemoteError(BootreeError):
    """A remote that is misconfigured, or a remote repository that cannot be pulled from."""


class RemoteNotFound(RemoteError):
    """No ``[remote "NAME"]`` section in the repository config."""

    def __init__(self, name: str) -> None:
        super().__init__(f"remote {name!r} not found", hint="list remotes with 'bootree remote list'")
        self.name = name


class RemoteExists(RemoteError):
    """``remote add`` of a name that is already configured."""

    def __init__(self, name: str) -> None:
        super().__init__(f"remote {name!r} already exists", hint="use --if-not-exists or --force")
        self.name = name


# --- install to disk and health checks (added by the boot-chain work, issue 5) -----------------


class InstallError(BootreeError):
    """An install to a disk image that cannot proceed: a missing tool, a bad size, a bad tree."""


# --- container images (issue 11) ---------------------------------------------------------------


class ImageError(BootreeError):
    """An OCI/container image that cannot be used: bad reference, manifest, layer or label."""


class InvalidImageReference(ImageError):
    """A string that is not an image reference bootree understands (``docker://``, ``oci:``, ...)."""


class LayerError(ImageError):
    """A layer tar that is unsafe or malformed (``..``, an escaping link, a device node)."""


class RegistryError(FetchError):
    """A registry that answered with an error (401 without credentials, MANIFEST_UNKNOWN, ...)."""


class PushError(RegistryError):
    """A push to a registry that failed (401/403 without push rights, a rejected blob or manifest)."""

    def __init__(self, url: str, why: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(url, why, status=status, transient=transient)
        self.message = f"pushing to {url}: {why}"
        self.args = (self.message,)


class ContainerPolicyError(VerificationError):
    """An image that the containers policy (``policy.json``) does not accept.

    ``reason`` is one of ``rejected`` (a ``reject`` requirement, or ostree-ext's refusal of a
    policy whose default accepts anything), ``unsigned`` (a signature was required, none
    exists), ``untrusted`` (signatures, none by a trusted key), ``invalid`` (a signature that
    does not verify, or whose claim does not match the image: another digest, another identity),
    ``config`` (a policy or registries.d file that does not parse, a key file that is missing).
    """

    def __init__(self, image: str, reason: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(f"{image}: {detail}", hint=hint)
        self.image = image
        self.reason = reason
        self.detail = detail


# --- static deltas (added by the delta work, issue 12) -----------------------------------------


class DeltaFormatError(FormatError):
    """A static-delta superblock, part or operation stream that does not decode or is inconsistent.

    Raised for truncated or corrupt parts, operations that read or write past their buffers,
    and object lists that do not match the operations: the delta is refused before anything
    it describes is published.
    """


class DeltaError(RepoError):
    """A static delta that cannot be generated, found or applied to this repository."""


class DeltaNotFound(DeltaError):
    """No delta with the given name (``FROM-TO`` or ``TO``) in the repository."""

    def __init__(self, name: str) -> None:
        super().__init__(f"static delta {name} not found", hint="list deltas with 'bootree static-delta list'")
        self.name = name


class BindingError(VerificationError):
    """A commit whose ``ostree.ref-binding`` / ``ostree.collection-binding`` metadata does not
    name the ref (or collection) it is pulled or checked as: a commit served under another name."""


class InjectedTestError(RepoError):
    """A failure asked for by ostree's test hook ``OSTREE_REPO_TEST_ERROR`` (``bootree.repo.testhooks``).

    The message is ostree's (``OSTREE_REPO_TEST_ERROR_PRE_COMMIT``, ...), which test scripts match.
    """


class FreezeError(BootreeError):
    """The freeze/thaw cycle of ``/boot``'s file system failed (``bootree._fs.freeze``)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"During fsfreeze-thaw: {why}")

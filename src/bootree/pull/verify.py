"""The verify step of a pull: received bytes -> verified values, with no I/O.

Layer: pull. Everything a pull decides about trust happens here, over bytes already in memory,
so it is tested without a server and a signing or policy change is made in one place:

* **checksums** — every object is proven against the checksum it was requested under
  (:func:`verify_metadata`, :func:`verify_content`: the format layer's
  :class:`~bootree.format.verified.VerifiedMetadata` / ``VerifiedContent``, the only values a
  transaction accepts); detached metadata must parse as ``a{sv}``;
* **ref binding** — a commit that lists ``ostree.ref-binding`` is pulled only under one of
  those refs (:func:`check_ref_binding`);
* **signatures** — a :class:`SignaturePolicy` sees the summary with its signature bytes and
  every fetched commit with its detached metadata, and raises to refuse. The policy a pull
  uses is :class:`bootree.pull.trust.TrustPolicy` (GPG and ed25519 keys, read from the
  repository and key files, so it lives outside this pure module). :func:`policy_for_remote`
  here is the fallback for a caller without a repository: :class:`FailClosed` for a remote
  asking for ``gpg-verify``/``sign-verify`` (refuse, as ostree does when it cannot verify) and
  :class:`NoSignatures` otherwise.

**The hook for signature verification.** Implement :class:`SignaturePolicy` and return it
from :func:`policy_for_remote`: ``check_start()`` runs before the first request; ``check_summary(data, signature)`` runs
before any ref of a summary is used; ``wants_detached_metadata`` true makes the engine hold every fetched commit until
its ``.commitmeta`` has arrived (or is known to be missing) and call
``check_commit(csum, commit, detached)`` before anything of the commit is written or walked. A
raise there stops the pull with that error and no ref moves.
"""

from __future__ import annotations

import stat
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bootree.errors import CorruptObject, FormatError, RemoteError, VerificationError
from bootree.format import gvariant
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import (
    ContentFraming,
    DecompressorFactory,
    decode_archive_header,
    stream_header_length,
)
from bootree.format.objects import Commit, FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata

__all__ = [
    "BindingCheck",
    "FailClosed",
    "NoSignatures",
    "SignaturePolicy",
    "Verifier",
    "check_bareuseronly",
    "check_ref_binding",
    "policy_for_remote",
    "received_header",
    "verify_commitmeta",
    "verify_content",
    "verify_metadata",
]


class SignaturePolicy(Protocol):
    """Decides whether signed things may be trusted; raises :class:`VerificationError` if not."""

    @property
    def wants_detached_metadata(self) -> bool:
        """Whether :meth:`check_commit` needs the commit's detached metadata (signatures)."""
        ...

    def check_start(self) -> None:
        """Called before the first request of a pull (e.g. refuse when no key is configured)."""
        ...

    def check_summary(self, data: bytes, signature: bytes | None) -> None:
        """Accept or refuse a remote summary (``signature``: ``summary.sig``, None if absent)."""
        ...

    def check_commit(self, csum: Checksum, commit: VerifiedMetadata, detached: bytes | None) -> None:
        """Accept or refuse a fetched commit (``detached``: its ``.commitmeta``, None if absent)."""
        ...


class NoSignatures:
    """The remote does not ask for signatures: nothing to check beyond checksums."""

    wants_detached_metadata = False

    def check_start(self) -> None:
        """Nothing to prepare."""

    def check_summary(self, data: bytes, signature: bytes | None) -> None:
        """Accept."""

    def check_commit(self, csum: Checksum, commit: VerifiedMetadata, detached: bytes | None) -> None:
        """Accept."""


@dataclass(frozen=True, slots=True)
class FailClosed:
    """The remote asks for a kind of signature bootree cannot verify: refuse what it covers.

    ``key`` is the first config key asking for commit signatures (``gpg-verify``,
    ``sign-verify``), ``summary_key`` the one asking for summary signatures
    (``gpg-verify-summary``, ``sign-verify-summary``); either may be None.
    """

    remote: str
    key: str | None
    summary_key: str | None = None

    wants_detached_metadata = False

    def error(self, key: str) -> VerificationError:
        """The refusal for ``key``, with the way out."""
        kind = key.split("-")[0].upper()
        return VerificationError(
            f"remote {self.remote!r} requires {kind} signature verification, which bootree does not implement yet",
            hint=f"set {key}=false for this remote (e.g. 'bootree remote add --no-gpg-verify ...')",
        )

    def check_start(self) -> None:
        """Refuse a pull before anything is fetched."""
        key = self.key or self.summary_key
        if key is not None:
            raise self.error(key)

    def check_summary(self, data: bytes, signature: bytes | None) -> None:
        """Refuse a summary if summary signatures are required."""
        if self.summary_key is not None:
            raise self.error(self.summary_key)

    def check_commit(self, csum: Checksum, commit: VerifiedMetadata, detached: bytes | None) -> None:
        """Refuse a commit if commit signatures are required."""
        if self.key is not None:
            raise self.error(self.key)


class _RemoteOptions(Protocol):
    @property
    def name(self) -> str: ...

    def get_bool(self, key: str, default: bool) -> bool: ...


def policy_for_remote(remote: _RemoteOptions) -> SignaturePolicy:
    """The signature policy a remote's config asks for (as ostree: ``gpg-verify`` defaults to
    true, ``gpg-verify-summary`` and the ``sign-verify`` keys to false)."""
    key = next((k for k in ("gpg-verify", "sign-verify") if remote.get_bool(k, k == "gpg-verify")), None)
    summary_key = next(
        (k for k in ("gpg-verify-summary", "sign-verify-summary") if remote.get_bool(k, False)), None
    )
    if key is None and summary_key is None:
        return NoSignatures()
    return FailClosed(remote.name, key, summary_key)


def verify_metadata(otype: ObjectType, csum: Checksum, data: bytes) -> VerifiedMetadata:
    """A commit, dirtree or dirmeta proven to hash to ``csum`` and to parse.

    Raises:
        ChecksumMismatch: the bytes hash to something else.
        CorruptObject: they do not parse.
    """
    return VerifiedMetadata.parse(otype, data, csum)


def verify_commitmeta(csum: Checksum, data: bytes) -> bytes:
    """Detached metadata of commit ``csum``, checked to be an ``a{sv}``.

    Raises:
        CorruptObject: it is not.
    """
    try:
        gvariant.decode("a{sv}", data)
    except FormatError as e:
        raise CorruptObject(csum, "commitmeta", str(e)) from e
    return data


def verify_content(
    csum: Checksum,
    data: bytes,
    framing: ContentFraming,
    inflater: tuple[DecompressorFactory, tuple[type[Exception], ...]] = (zlib.decompressobj, (zlib.error,)),
) -> VerifiedContent:
    """A received content object in ``framing``, proven to hash to ``csum``.

    ``inflater`` is a zlib-compatible ``decompressobj`` factory and its error types: the engine
    passes the repository's (zlib-ng, which inflates a pull's archived objects faster).

    Raises:
        CorruptObject: it does not parse or inflate.
        ChecksumMismatch: it hashes to something else.
    """
    if framing is ContentFraming.ARCHIVED:
        return VerifiedContent.parse_archived(data, csum, *inflater)
    return VerifiedContent.parse_stream(data, csum)


def received_header(data: bytes, framing: ContentFraming) -> FileHeader:
    """The header of a received content object (the start of ``data``), without its body.

    Raises:
        CorruptObject: for a malformed header (reported under ``unknown``; the checksum check
            names the object).
    """
    try:
        if framing is ContentFraming.ARCHIVED:
            return decode_archive_header(data).header
        end = stream_header_length(data)
        return FileHeader.from_bytes(data[8:end])
    except FormatError as e:
        raise CorruptObject("unknown", "file", str(e)) from e


def check_bareuseronly(csum: Checksum, header: FileHeader) -> None:
    """``pull --bareuseronly-files``: refuse content a bare-user-only checkout could not hold
    safely (setuid, setgid, sticky or world-writable files), as ostree does.

    Raises:
        VerificationError: for such a file, in ostree's words.
    """
    mode = header.mode
    if stat.S_ISREG(mode):
        bad = mode & 0o7777 & ~0o775
        if bad:
            raise VerificationError(f"Content object {csum}: invalid mode 0{mode:04o} with bits 0{bad:04o}")


def check_ref_binding(commit: Commit, refs: Iterable[str], csum: Checksum) -> None:
    """A commit that names the refs it was made for must be pulled under one of them.

    Raises:
        RemoteError: for a commit bound to other refs.
    """
    bound = commit.get("ostree.ref-binding")
    if not (isinstance(bound, list) and bound):
        return
    for ref in refs:
        if ref not in bound:
            raise RemoteError(
                f"commit {csum} is bound to ref(s) {', '.join(map(str, bound))}, not {ref!r}: "
                f"refusing to pull it as {ref}"
            )


#: A commit's bindings checked against one ref it is pulled as; raises to refuse.
BindingCheck = Callable[[Checksum, Commit, str], None]


def _ref_binding(csum: Checksum, commit: Commit, ref: str) -> None:
    check_ref_binding(commit, (ref,), csum)


@dataclass
class Verifier:
    """The verify step of one pull: its policy and the refs each target commit is pulled as.

    ``bindings`` checks each target commit against each ref it is pulled as (default: only its
    ``ostree.ref-binding``; a pull passes ostree's full check with the remote's collection ID,
    or a no-op for ``--disable-verify-bindings``).
    """

    policy: SignaturePolicy = field(default_factory=NoSignatures)
    refs_of: Mapping[Checksum, list[str]] = field(default_factory=dict)
    #: A check of every content object's header before it is written (``--bareuseronly-files``:
    #: :func:`check_bareuseronly`); raises to refuse the object.
    content_check: Callable[[Checksum, FileHeader], None] | None = None
    bindings: BindingCheck = _ref_binding

    def summary(self, data: bytes, signature: bytes | None) -> None:
        """Check a summary before its refs are used."""
        self.policy.check_summary(data, signature)

    def commit(self, csum: Checksum, data: bytes, detached: bytes | None) -> VerifiedMetadata:
        """A fetched commit: checksum, ref binding, then the signature policy.

        Raises:
            ChecksumMismatch, CorruptObject: bad bytes.
            RemoteError: a ref-binding violation.
            VerificationError: the policy refuses it.
        """
        verified = verify_metadata(ObjectType.COMMIT, csum, data)
        commit = verified.value
        assert isinstance(commit, Commit)
        self.check_bindings(csum, commit)
        self.policy.check_commit(csum, verified, detached)
        return verified

    def check_bindings(self, csum: Checksum, commit: Commit) -> None:
        """The binding checks of a target commit, also for one already complete here (a ref
        moving to it must be one it was made for, as ostree checks on every pull).

        Raises:
            RemoteError, BindingError: a commit bound to other refs (or another collection).
        """
        for ref in self.refs_of.get(csum, ()):
            self.bindings(csum, commit, ref)

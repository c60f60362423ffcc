"""``ostree-remote-image:REMOTE:IMAGE``: an image's ostree commit checked with an ostree remote's keys.

Layer: host (it joins :mod:`bootree.pull.trust`, which reads a remote's keys, to the container
import of :mod:`bootree.oci`, which may not import ``pull``). ostree-ext's rule for this origin
form: the image must be an encapsulated ostree image, and the commit inside it is verified as
``ostree_repo_signature_verify_commit_data(remote, commit, commitmeta, 0)`` does it:

* the remote's ``gpg-verify`` (default true) asks for a valid signature by a key of its GPG
  keyrings (``remote gpg-import``, ``gpgkeypath``, the global ``trusted.gpg.d``);
* its ``sign-verify`` asks for a valid signature of one of its engines (ed25519:
  ``verification-ed25519-key``/``-file``, else the system's ``trusted.ed25519``);
* both enabled: both must find one; neither: the image cannot be verified and is refused
  (ostree: "GPG verification disabled, and no signapi verifiers configured");
* a commit without detached metadata is refused ("Can't verify commit without detached metadata").

The remote is looked up in the sysroot repository's config, then in
``SYSROOT/etc/ostree/remotes.d/*.conf`` (where ``remote add --sysroot`` puts it on a booted system).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from bootree.errors import KeyFileError, RemoteNotFound, SignatureError, VerificationError
from bootree.format.checksum import Checksum
from bootree.format.keyfile import KeyFile
from bootree.oci.encapsulated import CommitCheck
from bootree.pull.remote import Remote, get_remote, section_name
from bootree.pull.trust import DEFAULT_ED25519_DIRS, TrustPolicy, policy_for_remote
from bootree.sysroot import Sysroot

__all__ = ["find_remote", "remote_commit_check"]


def find_remote(sysroot: Sysroot, name: str) -> Remote:
    """The remote ``name`` of the sysroot's repository (its config, then ``etc/ostree/remotes.d``).

    Raises:
        RemoteNotFound: neither has it.
        KeyFileError: a remotes.d file that does not parse.
    """
    try:
        return get_remote(sysroot.repo.config, name)
    except RemoteNotFound:
        pass
    confdir = sysroot.path / "etc/ostree/remotes.d"
    for conf in sorted(confdir.glob("*.conf")) if confdir.is_dir() else []:
        try:
            kf = KeyFile.from_text(conf.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"{conf}: cannot read: {e}") from None
        if kf.has_group(section_name(name)):
            return get_remote(kf, name)
    raise RemoteNotFound(name)


def _check(policy: TrustPolicy) -> CommitCheck:
    def check(csum: Checksum, commit: bytes, detached: bytes | None) -> None:
        subject = f"commit {csum}"
        if not policy.verifies_commits:
            raise VerificationError(f"Cannot verify commit for remote {policy.remote}; GPG verification disabled, "
                                    "and no signapi verifiers configured",
                                    hint=f"set gpg-verify=true or sign-verify=true for remote {policy.remote!r}")
        if detached is None:
            raise SignatureError(subject, "unsigned", "Can't verify commit without detached metadata "
                                 f"(remote {policy.remote!r} requires a signed commit)")
        policy.commit_signatures(csum, commit, detached)

    return check


@contextlib.contextmanager
def remote_commit_check(sysroot: Sysroot, name: str, *, ed25519_dirs: Sequence[Path] | None = None,
                        gpg_dir: Path | None = None) -> Iterator[CommitCheck]:
    """The check an ``ostree-remote-image:NAME:…`` pull runs on the encapsulated commit.

    Fails at once (before any network access) when the remote is unknown or asks for an engine
    that has no trusted key. ``ed25519_dirs``/``gpg_dir`` replace the system key directories (tests).

    Raises:
        RemoteNotFound: no such remote.
        VerificationError: a required engine without keys, an unreadable key file.
    """
    remote = find_remote(sysroot, name)
    policy = policy_for_remote(sysroot.repo.path, remote, gpg_dir=gpg_dir,
                               ed25519_dirs=DEFAULT_ED25519_DIRS if ed25519_dirs is None else ed25519_dirs)
    try:
        if policy.verifies_commits:
            policy.check_configured()
        yield _check(policy)
    finally:
        policy.close()

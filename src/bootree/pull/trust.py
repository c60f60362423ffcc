"""A remote's signature policy, as ostree configures it, and the checks a pull makes with it.

Layer: pull. Reads the remote's keys (ostree's names) and the key files they point to, and builds
a :class:`~bootree.sign.Verifier`; the puller calls :meth:`TrustPolicy.check_summary` before it
trusts any ref of a summary and :meth:`TrustPolicy.check_commit` after a commit and its detached
metadata arrived and before anything of its tree is fetched or written.

Remote keys (``remote add --set=KEY=VALUE``):

* ``gpg-verify`` (default true), ``gpg-verify-summary`` (default false): require a valid GPG
  signature on every pulled commit / on the summary. Trusted keys: ``<repo>/<remote>.trustedkeys.gpg``
  (written by ``remote gpg-import``), ``gpgkeypath=`` (files or directories, ``;`` or ``,``
  separated), and the global directory ``$OSTREE_GPG_HOME`` or ``/usr/share/ostree/trusted.gpg.d``.
* ``sign-verify`` (``true`` or a list of engines, ``ed25519`` or ostree's test-only ``dummy``),
  ``sign-verify-summary``: require a valid signature of one of those engines that has keys (each
  engine named explicitly must have one). ``dummy`` keys: ``verification-dummy-key`` and
  ``verification-dummy-file``; the engine works only with ``OSTREE_DUMMY_SIGN_ENABLED=1``
  (:mod:`bootree.sign.dummy`). Trusted keys: ``verification-ed25519-key`` (one base64 key, or
  several separated by ``;``) and ``verification-ed25519-file`` (one per line); with neither, the
  system files ``trusted.ed25519`` and ``trusted.ed25519.d/*`` under ``/etc/ostree`` and
  ``/usr/share/ostree``. Revoked keys: ``revoked.ed25519`` and ``revoked.ed25519.d/*`` there, plus
  bootree's ``verification-ed25519-revoked-file`` (ostree ignores it); revocation always wins.
* ``bootree.summary.expires`` in a summary's metadata (``t``, big-endian seconds, written by
  ``summary -u --expires-in``) is enforced by the client: an expired summary is refused, so a
  frozen mirror cannot hold a fleet on an old version without it noticing.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootree.errors import FormatError, KeyFileError, SignatureError, SummaryExpired, VerificationError
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, bswap64
from bootree.format.summary import SUMMARY_EXPIRES_KEY, Summary
from bootree.format.verified import VerifiedMetadata
from bootree.pull.remote import Remote, repo_chain
from bootree.sign import GpgVerifier, PublicKey, Verifier, VerifyResult, parse_public_keys
from bootree.sign.delta import is_signed, verify_superblock

__all__ = [
    "DEFAULT_ED25519_DIRS",
    "SUMMARY_EXPIRES_KEY",
    "TrustPolicy",
    "check_summary_expiry",
    "ed25519_dir_keys",
    "global_gpg_keyrings",
    "gpg_forget",
    "gpg_import",
    "gpg_keyrings",
    "policy_for_remote",
    "remote_gpg_keyrings",
]

#: Where ostree looks for system-wide ed25519 keys (``trusted.ed25519``, ``revoked.ed25519``).
DEFAULT_ED25519_DIRS = (Path("/etc/ostree"), Path("/usr/share/ostree"))
#: The global GPG keyring directory of ostree (``$OSTREE_GPG_HOME`` overrides it).
DEFAULT_GPG_DIR = Path("/usr/share/ostree/trusted.gpg.d")


def _read_keys(path: Path, what: str) -> list[PublicKey]:
    try:
        return parse_public_keys(path.read_bytes())
    except OSError as e:
        raise VerificationError(f"cannot read {what} {path}: {e.strerror}") from e
    except FormatError as e:
        raise VerificationError(f"{what} {path}: {e}") from e


def _dir_keys(base: Path, name: str) -> list[PublicKey]:
    keys: list[PublicKey] = []
    if (base / name).is_file():
        keys += _read_keys(base / name, "key file")
    d = base / f"{name}.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.is_file():
                keys += _read_keys(f, "key file")
    return keys


def ed25519_dir_keys(dirs: Sequence[Path] = DEFAULT_ED25519_DIRS) -> tuple[list[PublicKey], list[PublicKey]]:
    """Trusted and revoked ed25519 keys of ostree's key directories (``trusted.ed25519``,
    ``trusted.ed25519.d/*``, ``revoked.ed25519``, ``revoked.ed25519.d/*`` under each of ``dirs``;
    ostree's ``--keys-dir=DIR`` names one such directory).

    Raises:
        VerificationError: an unreadable or malformed key file.
    """
    trusted: list[PublicKey] = []
    revoked: list[PublicKey] = []
    for d in dirs:
        trusted += _dir_keys(d, "trusted.ed25519")
        revoked += _dir_keys(d, "revoked.ed25519")
    return trusted, revoked


def _list(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.replace(",", ";").split(";") if v.strip()]


def _keypath(remote: Remote) -> list[str]:
    """``gpgkeypath``: paths separated by ``,`` or ``;`` (not both, as ostree requires).

    An empty entry before another one is kept, so it fails as a missing path; a trailing
    separator is allowed.

    Raises:
        VerificationError: both separators are used.
    """
    value = remote.get("gpgkeypath") or ""
    if not value:
        return []
    if "," in value and ";" in value:
        raise VerificationError(f"remote {remote.name!r}: gpgkeypath: key value list contains more than one separator")
    parts = [p.strip() for p in value.replace(";", ",").split(",")]
    if parts and not parts[-1]:
        parts.pop()
    return parts


def global_gpg_keyrings(global_dir: Path | None = None) -> list[Path]:
    """The global keyring files: ``*.gpg`` of ``$OSTREE_GPG_HOME`` (else ostree's system directory)."""
    gdir = global_dir
    if gdir is None:
        env = os.environ.get("OSTREE_GPG_HOME")
        gdir = Path(env) if env else DEFAULT_GPG_DIR
    if not gdir.is_dir():
        return []
    return sorted(f for f in gdir.iterdir() if f.is_file() and f.suffix == ".gpg")


def remote_gpg_keyrings(repo_path: Path, remote: Remote) -> list[Path]:
    """The keyring files of a remote itself (``remote gpg-list-keys NAME``): its own and ``gpgkeypath``."""
    return gpg_keyrings(repo_path, remote, with_global=False)


def gpg_keyrings(repo_path: Path, remote: Remote, *, global_dir: Path | None = None,
                 with_global: bool = True) -> list[Path]:
    """The keyring files a remote's GPG signatures are checked against (ostree's search order)."""
    out: list[Path] = []
    # As ostree: the remote's own keyring in the repository, else in its parents (core.parent).
    for path in [p for p, _ in repo_chain(repo_path)] or [repo_path]:
        own = path / f"{remote.name}.trustedkeys.gpg"
        if own.is_file():
            out.append(own)
            break
    for entry in _keypath(remote):
        p = Path(entry)
        if entry and p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".gpg", ".asc")))
        elif entry and p.is_file():
            out.append(p)
        else:
            raise VerificationError(f"remote {remote.name!r}: gpgkeypath ({entry}): No such file or directory")
    if with_global:
        out.extend(global_gpg_keyrings(global_dir))
    return out


#: The engines ``sign-verify=true`` stands for (ostree: every engine it was built with).
SIGN_ENGINES = ("ed25519", "dummy")


def _sign_engines(remote: Remote, key: str) -> tuple[str, ...]:
    """A ``sign-verify``-style value: a boolean (``true``: every engine) or a list of engines.

    Raises:
        VerificationError: an engine no one implements (ostree's wording).
    """
    value = remote.get(key)
    if value is None:
        return ()
    try:
        return SIGN_ENGINES if remote.get_bool(key, False) else ()
    except KeyFileError:
        engines = _list(value)
        unknown = [e for e in engines if e not in SIGN_ENGINES]
        if unknown:
            raise VerificationError(
                f"remote {remote.name!r}: {key}={value}: Requested signature type is not implemented",
                hint=f"known signature types: {', '.join(SIGN_ENGINES)}",
            ) from None
        return tuple(engines)


def _dummy_keys(remote: Remote) -> list[str]:
    """``verification-dummy-key`` and the lines of ``verification-dummy-file`` (ostree's test engine)."""
    keys = [remote.get("verification-dummy-key") or ""]
    path = remote.get("verification-dummy-file")
    if path:
        try:
            keys += Path(path).read_text().splitlines()
        except OSError as e:
            raise VerificationError(f"cannot read verification-dummy-file {path}: {e.strerror}") from e
    return [k.strip() for k in keys if k.strip()]


@dataclass
class TrustPolicy:
    """What a pull from one remote requires, and the keys to check it with.

    It is the remote's :class:`~bootree.pull.verify.SignaturePolicy`, the pull seams' hook: the
    session calls :meth:`check_summary` before any ref of the summary is used, and the object
    engine holds each commit until its detached metadata is in and calls :meth:`check_commit`
    before anything of it is written or walked.
    """

    remote: str
    verifier: Verifier = field(default_factory=Verifier)
    #: The remote's URL, named in errors about its summary.
    url: str = ""
    gpg_verify: bool = False
    gpg_verify_summary: bool = False
    sign_verify: bool = False
    sign_verify_summary: bool = False
    #: The engines ``sign-verify`` named explicitly: each must have a key (``true`` names none).
    explicit_engines: tuple[str, ...] = ()
    #: Current time for the summary expiry (tests pin it).
    now: float | None = None
    #: Called with every commit that passed, before it is used (the puller's downgrade check).
    commit_hook: Callable[[Checksum, Commit], None] | None = None

    @property
    def verifies_commits(self) -> bool:
        """Whether commits must be verified (so held until their signature is checked)."""
        return self.gpg_verify or self.sign_verify

    @property
    def verifies_summary(self) -> bool:
        """Whether the summary must carry a valid signature before its refs are trusted."""
        return self.gpg_verify_summary or self.sign_verify_summary

    def close(self) -> None:
        """Release the GPG verifier's temporary home."""
        self.verifier.close()

    @property
    def wants_detached_metadata(self) -> bool:
        """The seams' hook: hold commits until their ``.commitmeta`` is in (when commits are verified)."""
        return self.verifies_commits

    def check_start(self) -> None:
        """The seams' hook, before the first request: see :meth:`check_configured`."""
        self.check_configured()

    def check_configured(self) -> None:
        """Fail before any download when a required engine has no trusted key at all.

        Raises:
            VerificationError: e.g. ``gpg-verify=true`` (ostree's default) and no keyring.
        """
        if (self.gpg_verify or self.gpg_verify_summary) and self.verifier.gpg is None:
            raise VerificationError(
                f"remote {self.remote!r} requires GPG signatures but no trusted GPG key is configured",
                hint=f"import the publisher's key ('bootree remote gpg-import {self.remote} -k KEYRING'), "
                "or set gpg-verify=false for this remote",
            )
        keyed = {"ed25519": bool(self.verifier.ed25519), "dummy": bool(self.verifier.dummy)}
        for engine in self.explicit_engines:
            if not keyed.get(engine):
                raise VerificationError(
                    f"remote {self.remote!r}: No keys found for required signapi type {engine}",
                    hint=f"set verification-{engine}-key or verification-{engine}-file for this remote",
                )
        if (self.sign_verify or self.sign_verify_summary) and not any(keyed.values()):
            raise VerificationError(
                f"remote {self.remote!r} requires signatures but no trusted ed25519 key is configured",
                hint="set verification-ed25519-key or verification-ed25519-file for this remote",
            )

    def check_commit(self, csum: Checksum, commit: VerifiedMetadata, detached: bytes | None) -> None:
        """Check a fetched commit's detached metadata against the policy, then the commit hook.

        Raises:
            SignatureError: the commit does not satisfy the policy.
            DowngradeError: from the hook.
        """
        self.commit_signatures(csum, commit.data, detached)
        if self.commit_hook is not None:
            value = commit.value
            assert isinstance(value, Commit)
            self.commit_hook(csum, value)

    def commit_signatures(self, csum: str, commit: bytes, meta: bytes | None) -> VerifyResult:
        """The signature checks of a commit's bytes (``meta``: its detached metadata).

        Raises:
            SignatureError: the commit does not satisfy the policy.
        """
        if not self.verifies_commits and not meta:
            return VerifyResult(f"commit {csum}", ())
        return self.verifier.check(
            f"commit {csum}", commit, meta, require_gpg=self.gpg_verify, require_sign=self.sign_verify
        )

    def check_delta_superblock(self, name: str, data: bytes) -> None:
        """Check a fetched static-delta superblock file's own signatures, when it is signed.

        A signed superblock (``static-delta generate --sign``) is checked against the remote's
        ed25519 keys when it has any: a signature that no trusted key made fails the pull,
        since the file was altered or signed by someone else. An unsigned one passes: the
        commit it embeds goes through :meth:`check_commit` like any pulled commit, and every
        object is checked against its checksum. (libostree 2022.7 does not check delta
        signatures when pulling at all.)

        Raises:
            SignatureError: signed, and no valid signature by a trusted key.
        """
        if not (self.sign_verify or self.verifier.ed25519) or not is_signed(data):
            return
        verify_superblock(f"static delta {name}", data, verifier=self.verifier)

    def check_summary(self, data: bytes, signature: bytes | None) -> None:
        """Check ``summary.sig`` (None: the server has none) and the expiry of the summary.

        Raises:
            SignatureError: the summary does not satisfy the policy.
            SummaryExpired: a summary past its ``bootree.summary.expires``.
        """
        subject = f"summary of {self.url or self.remote}"
        if self.verifies_summary:
            if signature is None:
                raise SignatureError(subject, "unsigned", "no summary.sig, but the remote requires a signed summary")
            self.verifier.check(
                subject, data, signature, require_gpg=self.gpg_verify_summary, require_sign=self.sign_verify_summary
            )
        try:
            summary = Summary.from_bytes(data)
        except FormatError:
            return  # the session reports a corrupt summary itself
        check_summary_expiry(self.url or self.remote, summary, self.now)


def check_summary_expiry(url: str, summary: Summary, now: float | None = None) -> None:
    """Refuse a summary past its ``bootree.summary.expires`` time.

    Raises:
        SummaryExpired: it has expired.
    """
    value = summary.get(SUMMARY_EXPIRES_KEY)
    if not isinstance(value, int):
        return
    expires = bswap64(value)
    current = int(time.time() if now is None else now)
    if current > expires:
        raise SummaryExpired(url, expires, current)


def policy_for_remote(
    repo_path: Path,
    remote: Remote,
    *,
    ed25519_dirs: Sequence[Path] = DEFAULT_ED25519_DIRS,
    gpg_dir: Path | None = None,
) -> TrustPolicy:
    """The policy and trusted keys configured for ``remote`` (see the module docstring).

    Raises:
        VerificationError: an unreadable or malformed key file, an unknown signature type.
        KeyFileError: a boolean key with a non-boolean value.
    """
    engines = _sign_engines(remote, "sign-verify")
    summary_engines = _sign_engines(remote, "sign-verify-summary")
    explicit = [e for es in (engines, summary_engines) if es != SIGN_ENGINES for e in es]
    policy = TrustPolicy(
        remote.name,
        url=remote.url,
        gpg_verify=remote.get_bool("gpg-verify", True),
        gpg_verify_summary=remote.get_bool("gpg-verify-summary", False),
        sign_verify=bool(engines),
        sign_verify_summary=bool(summary_engines),
        explicit_engines=tuple(dict.fromkeys(explicit)),
    )
    keyrings = gpg_keyrings(repo_path, remote, global_dir=gpg_dir)
    gpg = GpgVerifier(keyrings=keyrings) if keyrings else None
    trusted: list[PublicKey] = []
    for text in _list(remote.get("verification-ed25519-key")):
        try:
            trusted.append(PublicKey.from_base64(text))
        except FormatError as e:
            raise VerificationError(f"remote {remote.name!r}: verification-ed25519-key: {e}") from e
    key_file = remote.get("verification-ed25519-file")
    if key_file:
        trusted += _read_keys(Path(key_file), "verification-ed25519-file")
    if not trusted:
        for d in ed25519_dirs:
            trusted += _dir_keys(d, "trusted.ed25519")
    revoked: list[PublicKey] = []
    for d in ed25519_dirs:
        revoked += _dir_keys(d, "revoked.ed25519")
    revoked_file = remote.get("verification-ed25519-revoked-file")
    if revoked_file:
        revoked += _read_keys(Path(revoked_file), "verification-ed25519-revoked-file")
    dummy = _dummy_keys(remote) if "dummy" in engines + summary_engines else []
    policy.verifier = Verifier(gpg=gpg, ed25519=_unique(trusted), revoked=_unique(revoked), dummy=tuple(dummy))
    return policy


def _unique(keys: Iterable[PublicKey]) -> tuple[PublicKey, ...]:
    return tuple(dict.fromkeys(keys))


def gpg_forget(repo_path: Path, remote: str) -> bool:
    """Remove ``<repo>/<remote>.trustedkeys.gpg`` (a deleted remote's keys, as ``ostree remote delete``).

    Whether there was one: a remote added again later must not silently trust the old keys.
    """
    try:
        os.unlink(repo_path / f"{remote}.trustedkeys.gpg")
    except FileNotFoundError:
        return False
    return True


def gpg_import(
    repo_path: Path, remote: Remote, keyrings: Sequence[Path], *, key_ids: Sequence[str] = (), fsync: bool = True
) -> list[str]:
    """Add keys to ``<repo>/<remote>.trustedkeys.gpg`` (``ostree remote gpg-import NAME -k KEYRING``).

    Keys already trusted stay; the keyring is replaced atomically. Returns the fingerprints now
    trusted for the remote.

    Raises:
        VerificationError: a keyring gpg cannot read, or nothing to import.
    """
    from bootree import _fs
    from bootree.sign.gpg import export_keys, key_fingerprints

    target = repo_path / f"{remote.name}.trustedkeys.gpg"
    before = set(key_fingerprints(target.read_bytes())) if target.is_file() else set()
    merged = new = export_keys(keyrings, key_ids=key_ids)
    if target.is_file():
        with tempfile.TemporaryDirectory(prefix="bootree-gpgi-") as tmp:
            staged = Path(tmp) / "new.gpg"
            staged.write_bytes(new)
            merged = export_keys([target, staged])
    fingerprints = key_fingerprints(merged)
    _fs.write_atomic(target, merged, fsync=fsync)
    return [f for f in fingerprints if f not in before]

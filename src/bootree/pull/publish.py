"""Server side of the protocol: the summary (``summary -u``) and the signatures a publisher adds.

Layer: pull. Regenerating the summary is the repository's operation (:mod:`bootree.repo.summary`;
these names stay importable from here). As with ostree, a regenerated summary invalidates
``summary.sig``, which is deleted: sign again after regenerating.

Signing lives here: a publisher signs commits (detached metadata, ``.commitmeta``) and the
summary (``summary.sig``) with :mod:`bootree.sign`; both files are replaced atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bootree import _fs
from bootree.errors import RepoError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType, bswap64
from bootree.format.summary import SUMMARY_EXPIRES_KEY
from bootree.repo import Repo
from bootree.repo.summary import delta_b64, update_summary
from bootree.sign import (
    ED25519_KEY,
    GpgVerifier,
    PublicKey,
    SecretKey,
    Verifier,
    VerifyResult,
    add_dummy,
    add_ed25519,
    add_gpg,
    detached,
)

__all__ = [
    "delete_ed25519_signatures",
    "delete_gpg_signatures",
    "delta_b64",
    "expiry_metadata",
    "sign_commit",
    "sign_summary",
    "update_summary",
    "verify_commit",
]



def _write_commitmeta(repo: Repo, csum: Checksum, data: bytes) -> None:
    with repo.transaction() as txn:
        txn.write_commitmeta(csum, data)


def sign_commit(
    repo: Repo,
    csum: Checksum,
    *,
    ed25519_keys: Sequence[SecretKey] = (),
    gpg_key_ids: Sequence[str] = (),
    gpg_homedir: Path | None = None,
    dummy_keys: Sequence[str] = (),
) -> None:
    """Append signatures of commit ``csum`` to its detached metadata (``ostree sign``, ``gpg-sign``).

    Other keys and earlier signatures are kept; the metadata is replaced atomically.

    Raises:
        ObjectMissing: no such commit.
        SignatureError: gpg could not sign.
        RepoError: a GPG key that already signed the commit (ostree refuses a second signature).
        FormatError: the existing detached metadata is malformed.
    """
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    meta = repo.read_commitmeta(csum)
    if dummy_keys:
        meta = add_dummy(meta, dummy_keys)
    if ed25519_keys:
        meta = add_ed25519(data, meta, ed25519_keys)
    if gpg_key_ids:
        _refuse_resigning(csum, data, meta, gpg_key_ids, gpg_homedir)
        meta = add_gpg(data, meta, gpg_key_ids, homedir=gpg_homedir)
    if meta is not None:
        _write_commitmeta(repo, csum, meta)


def _gpg_signer_in(v: GpgVerifier, data: bytes, sig: bytes, key_ids: Sequence[str]) -> str | None:
    """Which of ``key_ids`` made GPG signature ``sig`` of ``data`` (fingerprint or key-ID
    suffix, as gpg reports the signer, known key or not), or None."""
    wanted = {k.upper().removeprefix("0X"): k for k in key_ids}
    found = [c.key.upper() for c in v.verify(data, [sig]) if c.key]
    return next((k for f in found for w, k in wanted.items() if f.endswith(w) or w.endswith(f)), None)


def _refuse_resigning(csum: Checksum, data: bytes, meta: bytes | None, key_ids: Sequence[str],
                      homedir: Path | None) -> None:
    """ostree refuses to sign a commit again with a key that already signed it."""
    sigs = detached.signatures(detached.decode(meta), detached.GPG_KEY) if meta is not None else []
    if not sigs:
        return
    with GpgVerifier(homedir=homedir) as v:
        for sig in sigs:
            key = _gpg_signer_in(v, data, sig, key_ids)
            if key is not None:
                raise RepoError(f"Commit {csum} is already signed with GPG key {key}")


def delete_ed25519_signatures(repo: Repo, csum: Checksum, keys: Sequence[PublicKey]) -> int:
    """Remove the ed25519 signatures that ``keys`` made on ``csum`` (``ostree sign --delete``); how many.

    Raises:
        ObjectMissing: no such commit.
        FormatError: the existing detached metadata is malformed.
    """
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    entries = detached.decode(repo.read_commitmeta(csum))
    out, removed = detached.remove_signatures(
        entries, ED25519_KEY, lambda sig: any(k.verifies(data, sig) for k in keys)
    )
    if removed:
        _write_commitmeta(repo, csum, detached.encode(out))
    return removed


def delete_gpg_signatures(repo: Repo, csum: Checksum, key_ids: Sequence[str], *, homedir: Path | None = None) -> int:
    """Remove the GPG signatures made by ``key_ids`` (``ostree gpg-sign --delete``); how many.

    A signature's key is read by gpg (from ``homedir``'s keyring, or the key ID the signature
    names when the key is unknown) and matched by fingerprint or key-ID suffix.

    Raises:
        ObjectMissing: no such commit.
        FormatError: the existing detached metadata is malformed.
    """
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    entries = detached.decode(repo.read_commitmeta(csum))
    with GpgVerifier(homedir=homedir) as v:
        out, removed = detached.remove_signatures(
            entries, detached.GPG_KEY, lambda sig: _gpg_signer_in(v, data, sig, key_ids) is not None
        )
    if removed:
        _write_commitmeta(repo, csum, detached.encode(out))
    return removed


def verify_commit(repo: Repo, csum: Checksum, verifier: Verifier, *, require_gpg: bool = False,
                  require_ed25519: bool = False, require_sign: bool = False) -> VerifyResult:
    """Check the signatures of a local commit (``sign --verify``, ``show --gpg-verify``).

    Raises:
        ObjectMissing: no such commit.
        SignatureError: a required engine found no valid signature.
    """
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    return verifier.check(f"commit {csum}", data, repo.read_commitmeta(csum),
                          require_gpg=require_gpg, require_ed25519=require_ed25519, require_sign=require_sign)


def sign_summary(
    repo: Repo,
    *,
    ed25519_keys: Sequence[SecretKey] = (),
    gpg_key_ids: Sequence[str] = (),
    gpg_homedir: Path | None = None,
    dummy_keys: Sequence[str] = (),
) -> None:
    """Add signatures of the current ``summary`` to ``summary.sig`` (``summary --gpg-sign``/``--sign``).

    Raises:
        RepoError: the repository has no summary.
        SignatureError: gpg could not sign.
    """
    path = repo.path / "summary"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RepoError(f"{repo.path} has no summary", hint="create it with 'bootree summary -u'") from None
    sig_path = repo.path / "summary.sig"
    sig = sig_path.read_bytes() if sig_path.exists() else None
    if dummy_keys:
        sig = add_dummy(sig, dummy_keys)
    if ed25519_keys:
        sig = add_ed25519(data, sig, ed25519_keys)
    if gpg_key_ids:
        sig = add_gpg(data, sig, gpg_key_ids, homedir=gpg_homedir)
    if sig is not None:
        _fs.write_atomic(sig_path, sig, fsync=repo.fsync)


def expiry_metadata(expires: int) -> tuple[str, Variant]:
    """The summary metadata entry of bootree's expiry (``t`` big-endian seconds), for ``update_summary``."""
    return (SUMMARY_EXPIRES_KEY, Variant("t", bswap64(expires)))

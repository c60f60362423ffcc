"""Server side of the protocol: regenerate a repository's ``summary`` (``summary -u``).

Layer: pull (it reads a repository and writes the files a static server publishes). The bytes
come from :class:`bootree.format.summary.Summary`, so a client (ours or ostree) sees exactly what
``ostree summary -u`` would publish: local branches only (remote refs are excluded), the repo
mode as written in its config, static-delta superblock digests, and per-TO delta indexes under
``delta-indexes/``. As with ostree, a regenerated summary invalidates ``summary.sig``, which is
deleted (sign again after regenerating).

Signing lives here too: a publisher signs commits (detached metadata, ``.commitmeta``) and the
summary (``summary.sig``) with :mod:`bootree.sign`; both files are replaced atomically.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bootree import _fs
from bootree.errors import InvalidChecksum, RepoError
from bootree.format import gvariant
from bootree.format.checksum import Checksum, from_raw
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType, bswap64
from bootree.format.summary import Summary
from bootree.pull.trust import SUMMARY_EXPIRES_KEY
from bootree.repo import Repo
from bootree.sign import (
    ED25519_KEY,
    GpgVerifier,
    PublicKey,
    SecretKey,
    Verifier,
    VerifyResult,
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

log = logging.getLogger(__name__)


def delta_b64(csum: Checksum) -> str:
    """ostree's modified base64 of a checksum (``/`` -> ``_``, no padding), used in delta paths."""
    return base64.b64encode(bytes.fromhex(csum)).decode("ascii").rstrip("=").replace("/", "_")


def _b64_to_hex(s: str) -> Checksum:
    raw = base64.b64decode(s.replace("_", "/") + "=" * (-len(s) % 4))
    return from_raw(raw)


def _find_deltas(repo: Repo) -> dict[str, bytes]:
    """Delta name (hex ``FROM-TO`` or ``TO``) -> SHA-256 of its superblock."""
    out: dict[str, bytes] = {}
    root = repo.path / "deltas"
    if not root.is_dir():
        return out
    for sb in sorted(root.glob("*/*/superblock")):
        prefix, rest = sb.parent.parent.name, sb.parent.name
        try:
            if "-" in rest:
                frm, to = rest.split("-", 1)
                name = f"{_b64_to_hex(prefix + frm)}-{_b64_to_hex(to)}"
            else:
                name = _b64_to_hex(prefix + rest)
        except (ValueError, InvalidChecksum):
            log.warning("ignoring unrecognised delta directory %s", sb.parent)
            continue
        out[name] = hashlib.sha256(sb.read_bytes()).digest()
    return out


def _write_delta_indexes(repo: Repo, deltas: dict[str, bytes]) -> None:
    by_to: dict[str, list[str]] = {}
    for name in deltas:
        by_to.setdefault(name.rpartition("-")[2], []).append(name)
    for to, names in by_to.items():
        b64 = delta_b64(Checksum(to))
        path = repo.path / "delta-indexes" / b64[:2] / f"{b64[2:]}.index"
        _fs.makedirs(path.parent)
        data = gvariant.encode(
            "a{sv}",
            [
                (
                    "ostree.static-deltas",
                    Variant("a{sv}", [(n, Variant("ay", deltas[n])) for n in sorted(names)]),
                )
            ],
        )
        _fs.write_atomic(path, data, fsync=repo.fsync)


def update_summary(
    repo: Repo, *, extra_metadata: Iterable[tuple[str, Variant]] = (), now: int | None = None
) -> Summary:
    """Regenerate ``summary`` (and ``delta-indexes/``) from the repository's branches.

    Raises:
        ObjectMissing: if a branch points at a commit that is not in the repository.
    """
    refs: dict[str, tuple[Checksum, bytes]] = {}
    for name, csum in repo.list_refs().items():
        if ":" in name:
            continue  # remote refs are not published
        refs[name] = (csum, repo.load_metadata(ObjectType.COMMIT, csum))
    deltas = {} if repo.config.get_bool("core", "no-deltas-in-summary", False) else _find_deltas(repo)
    summary = Summary.build(
        refs,
        mode=repo.config.get("core", "mode", "bare") or "bare",
        last_modified=int(time.time()) if now is None else now,
        tombstone_commits=repo.config.get_bool("core", "tombstone-commits", False),
        deltas=deltas,
        extra_metadata=extra_metadata,
    )
    if deltas:
        _write_delta_indexes(repo, _find_deltas(repo))
    _fs.write_atomic(repo.path / "summary", summary.to_bytes(), fsync=repo.fsync)
    (repo.path / "summary.sig").unlink(missing_ok=True)
    return summary


# --- signatures of commits and of the summary (ostree sign / gpg-sign / summary --gpg-sign) ----


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
) -> None:
    """Append signatures of commit ``csum`` to its detached metadata (``ostree sign``, ``gpg-sign``).

    Other keys and earlier signatures are kept; the metadata is replaced atomically.

    Raises:
        ObjectMissing: no such commit.
        SignatureError: gpg could not sign.
        FormatError: the existing detached metadata is malformed.
    """
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    meta = repo.read_commitmeta(csum)
    if ed25519_keys:
        meta = add_ed25519(data, meta, ed25519_keys)
    if gpg_key_ids:
        meta = add_gpg(data, meta, gpg_key_ids, homedir=gpg_homedir)
    if meta is not None:
        _write_commitmeta(repo, csum, meta)


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
    wanted = [k.upper().removeprefix("0X") for k in key_ids]
    with GpgVerifier(homedir=homedir) as v:

        def made_by_wanted(sig: bytes) -> bool:
            found = [c.key.upper() for c in v.verify(data, [sig]) if c.key]
            return any(f.endswith(w) or w.endswith(f) for f in found for w in wanted)

        out, removed = detached.remove_signatures(entries, detached.GPG_KEY, made_by_wanted)
    if removed:
        _write_commitmeta(repo, csum, detached.encode(out))
    return removed


def verify_commit(repo: Repo, csum: Checksum, verifier: Verifier, *, require_gpg: bool = False,
                  require_ed25519: bool = False) -> VerifyResult:
    """Check the signatures of a local commit (``sign --verify``, ``show --gpg-verify``).

    Raises:
        ObjectMissing: no such commit.
        SignatureError: a required engine found no valid signature.
    """
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    return verifier.check(f"commit {csum}", data, repo.read_commitmeta(csum),
                          require_gpg=require_gpg, require_ed25519=require_ed25519)


def sign_summary(
    repo: Repo,
    *,
    ed25519_keys: Sequence[SecretKey] = (),
    gpg_key_ids: Sequence[str] = (),
    gpg_homedir: Path | None = None,
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
    if ed25519_keys:
        sig = add_ed25519(data, sig, ed25519_keys)
    if gpg_key_ids:
        sig = add_gpg(data, sig, gpg_key_ids, homedir=gpg_homedir)
    if sig is not None:
        _fs.write_atomic(sig_path, sig, fsync=repo.fsync)


def expiry_metadata(expires: int) -> tuple[str, Variant]:
    """The summary metadata entry of bootree's expiry (``t`` big-endian seconds), for ``update_summary``."""
    return (SUMMARY_EXPIRES_KEY, Variant("t", bswap64(expires)))

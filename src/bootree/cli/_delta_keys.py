"""Keys for signed static deltas: ``--sign``/``--keys-file`` to sign, and the public keys that
``static-delta verify``, ``apply-offline`` and ``upgrade --from-file`` check with.

Layer: cli. The key sources are ostree's: for ed25519, public keys given as arguments (base64,
or files of them), ``--keys-file=FILE`` (only that file), ``--keys-dir=DIR`` (its
``trusted.ed25519[.d]`` and ``revoked.ed25519[.d]``), else the system directories
``/etc/ostree`` and ``/usr/share/ostree``. Secret keys come from files or standard input only
(never the command line, see :mod:`bootree.cli.sign_cmds`); ostree's test-only ``dummy`` type
takes its "keys" as text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bootree.cli._key_options import from_file_options, keys_options
from bootree.errors import FormatError, VerificationError
from bootree.sign import PublicKey, Verifier, parse_public_keys
from bootree.sign.delta import SIGN_TYPES, sign_superblock, verify_superblock

if TYPE_CHECKING:
    from bootree.format.keyfile import KeyFile
    from bootree.sysroot import Sysroot

# The signing, remote-policy and sysroot modules are imported where used: ``static-delta
# apply-offline`` of an unsigned file needs none of them, and its start-up is serial time.

__all__ = ["delta_checker", "delta_signer", "from_file_options", "keys_options", "offline_update_checks", "run_upgrade_from_file", "sign_type_option"]


def sign_type_option(func: Callable[..., None]) -> Callable[..., None]:
    """``--sign-type`` (default ed25519, as ostree built with libsodium)."""
    return click.option(
        "--sign-type", default="ed25519", show_default=True, type=click.Choice(SIGN_TYPES),
        help="Signature type ('dummy' is ostree's test-only type, needs OSTREE_DUMMY_SIGN_ENABLED=1).",
    )(func)


def _lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise VerificationError(f"cannot read key file {path}: {e.strerror}") from e


def delta_signer(sign_type: str, keys: tuple[str, ...], keys_file: Path | None) -> Callable[[bytes], bytes] | None:
    """The superblock signer for ``generate --sign=KEY… [--keys-file=FILE]``, or ``None`` (unsigned).

    Raises:
        FormatError: a key file that holds no valid secret keys (the text is never quoted).
    """
    if not keys and keys_file is None:
        return None
    if sign_type == "dummy":
        texts = list(keys) + (_lines(keys_file) if keys_file is not None else [])
        return lambda data: sign_superblock(data, dummy_keys=texts)
    from bootree.cli.sign_cmds import read_secret_keys

    secret = read_secret_keys(keys, keys_file)
    return lambda data: sign_superblock(data, ed25519_keys=secret)


def _public(keys: Sequence[str]) -> list[PublicKey]:
    out: list[PublicKey] = []
    for key in keys:
        path = Path(key)
        try:
            out.extend(parse_public_keys(path.read_bytes()) if path.is_file() else [PublicKey.from_base64(key)])
        except FormatError as e:
            raise VerificationError(f"public key {key}: {e}") from e
    return out


def delta_checker(
    subject: str,
    sign_type: str,
    keys: Sequence[str],
    keys_file: Path | None,
    keys_dir: Path | None,
    *,
    system_optional: bool,
) -> Callable[[bytes], None] | None:
    """The signature check of a superblock file with the keys the options name.

    With no key at all: the system key directories; when they hold none, ``None`` if
    ``system_optional`` (``apply-offline`` then verifies nothing, as ostree), else a check that
    fails ("no keys loaded").

    Raises:
        VerificationError: an unreadable or malformed public key or key file.
    """
    if sign_type == "dummy":
        key = keys[-1] if keys else None  # libostree's dummy engine keeps the last key it is given

        def check_dummy(data: bytes) -> None:
            verify_superblock(subject, data, sign_type="dummy", dummy_key=key)

        return check_dummy
    trusted = _public(keys)
    revoked: list[PublicKey] = []
    if keys_file is not None:
        try:
            trusted += parse_public_keys(keys_file.read_bytes())
        except OSError as e:
            raise VerificationError(f"cannot read key file {keys_file}: {e.strerror}") from e
        except FormatError as e:
            raise VerificationError(f"key file {keys_file}: {e}") from e
    elif not keys:
        from bootree.pull.trust import DEFAULT_ED25519_DIRS, ed25519_dir_keys

        dir_trusted, revoked = ed25519_dir_keys([keys_dir] if keys_dir is not None else DEFAULT_ED25519_DIRS)
        trusted += dir_trusted
        if not trusted and system_optional and keys_dir is None:
            return None
    verifier = Verifier(ed25519=tuple(dict.fromkeys(trusted)), revoked=tuple(dict.fromkeys(revoked)))

    def check(data: bytes) -> None:
        verify_superblock(subject, data, sign_type="ed25519", verifier=verifier)

    return check


def offline_update_checks(
    repo_path: Path, config: KeyFile, refspec: str | None, keys_file: Path | None, keys_dir: Path | None,
) -> tuple[Callable[[bytes], None] | None, Callable[[str, bytes, bytes | None], object] | None]:
    """The checks of ``upgrade --from-file``: the file's signature, and the commit's when unsigned.

    The keys are ``--keys-file``/``--keys-dir`` when given, else those of the origin's remote
    (``verification-ed25519-key``/``-file``), else the system's. When the remote requires
    signed commits (``gpg-verify``, ``sign-verify``), an unsigned file's commit must carry a
    valid signature of its own, as a pull of it would.

    Raises:
        VerificationError: unreadable or malformed keys, an unknown remote signature setting.
    """
    from bootree.pull.remote import get_remote
    from bootree.pull.trust import policy_for_remote

    subject = "offline update file"
    remote_name = refspec.partition(":")[0] if refspec and ":" in refspec else None
    policy = policy_for_remote(repo_path, get_remote(config, remote_name)) if remote_name else None
    check: Callable[[bytes], None] | None
    if keys_file is not None or keys_dir is not None or policy is None or not policy.verifier.ed25519:
        check = delta_checker(subject, "ed25519", (), keys_file, keys_dir, system_optional=True)
    else:
        verifier = Verifier(ed25519=policy.verifier.ed25519, revoked=policy.verifier.revoked)
        check = functools.partial(_check_with, subject, verifier)
    if policy is None or not policy.verifies_commits:
        return check, None
    return check, policy.commit_signatures


def _check_with(subject: str, verifier: Verifier, data: bytes) -> None:
    verify_superblock(subject, data, sign_type="ed25519", verifier=verifier)


def run_upgrade_from_file(sysroot: Sysroot, path: Path, keys_file: Path | None, keys_dir: Path | None, *,
                          stateroot: str | None, stage_it: bool, allow_failed: bool, allow_downgrade: bool) -> bool:
    """``upgrade --from-file`` (the admin and the bootc spellings): check, apply, deploy, print.

    Returns whether a deployment was made or staged.
    """
    from bootree.sysroot.offline import upgrade_from_file
    from bootree.sysroot.upgrade import upgrade_base

    with sysroot.lock():
        base = upgrade_base(sysroot, stateroot)
        check, commit_check = offline_update_checks(sysroot.repo.path, sysroot.repo.config, base.refspec,
                                                    keys_file, keys_dir)
        result = upgrade_from_file(sysroot, path, check_signature=check, check_commit=commit_check,
                                   stage_it=stage_it, stateroot=stateroot, allow_failed=allow_failed,
                                   allow_downgrade=allow_downgrade)
    click.echo(result.message)
    if result.deployed is not None and result.deployed.swap is not None:
        click.echo(result.deployed.swap.message)
    return result.deployed is not None

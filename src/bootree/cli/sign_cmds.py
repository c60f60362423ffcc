"""Signing commands, named and optioned as ostree's: sign, gpg-sign (and helpers for commit, summary, show).

Layer: cli. The work is done by :mod:`bootree.pull.publish` (signing in a repository) and
:mod:`bootree.sign`; this module reads keys and renders results.

Secret keys never travel on the command line (any local user can read another process's
arguments in ``/proc``): ``sign`` takes them from ``--keys-file=FILE``, or KEY arguments that
name a key file or ``-`` (standard input). GPG keys stay in their GnuPG home; only their IDs are
given.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import open_repo, print_json, repo_option
from bootree.errors import FormatError, VerificationError
from bootree.format.checksum import Checksum
from bootree.repo import Repo
from bootree.sign import (
    GpgVerifier,
    PublicKey,
    SecretKey,
    SignatureCheck,
    Verifier,
    parse_public_keys,
    parse_secret_keys,
)

__all__ = ["check_sign_type", "gpg_block", "read_secret_keys", "show_gpg_verifier", "signing_keys"]


SIGN_TYPES = ("ed25519", "dummy")


def check_sign_type(sign_type: str) -> None:
    """Refuse a ``--sign-type`` that no engine implements, in ostree's words.

    ``dummy`` is ostree's test-only engine (:mod:`bootree.sign.dummy`): its "keys" are plain
    strings that end up in the signature, so, unlike ed25519 secret keys, they may be given
    on the command line; it works only with ``OSTREE_DUMMY_SIGN_ENABLED=1``.
    """
    if sign_type not in SIGN_TYPES:
        raise VerificationError("Requested signature type is not implemented",
                                hint="bootree knows 'ed25519' (GPG: use gpg-sign)")


def _read_source(source: str, what: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    if not path.is_file():
        # Never echo the argument: it may be a secret key typed on the command line.
        raise click.UsageError(
            f"{what} must be a key file or '-' (standard input): keys on the command line are visible "
            "to every local user; put the key in a file (mode 0600) and pass its path or --keys-file"
        )
    try:
        return path.read_bytes()
    except OSError as e:
        raise VerificationError(f"cannot read key file {path}: {e.strerror}") from e


def read_secret_keys(keys: tuple[str, ...], keys_file: Path | None) -> list[SecretKey]:
    """The ed25519 secret keys of KEY arguments (files or ``-``) and ``--keys-file``.

    Raises:
        FormatError: a file holding something other than base64 secret keys (the text is never quoted).
    """
    out: list[SecretKey] = []
    sources = list(keys) + ([str(keys_file)] if keys_file is not None else [])
    for source in sources:
        try:
            out.extend(parse_secret_keys(_read_source(source, "KEY")))
        except FormatError as e:
            raise FormatError(f"{'standard input' if source == '-' else source}: {e}") from None
    if not out:
        raise click.UsageError("no secret key given: pass --keys-file=FILE or KEY files")
    return out


def signing_keys(keys: tuple[str, ...], sign_type: str) -> tuple[list[SecretKey], tuple[str, ...]]:
    """``--sign=KEY --sign-type=TYPE`` of commit and summary: (ed25519 secret keys, dummy keys).

    Read before anything is written, so that a bad key changes nothing.

    Raises:
        VerificationError: an unknown type, or dummy keys while the dummy engine is disabled.
        FormatError: an ed25519 key file holding something else.
    """
    check_sign_type(sign_type)
    if sign_type == "dummy":
        from bootree.sign import dummy

        dummy.require_enabled()
        return [], keys
    return read_secret_keys(keys, None), ()


def _public_keys(keys: tuple[str, ...], keys_file: Path | None) -> list[PublicKey]:
    out: list[PublicKey] = []
    for key in keys:
        if Path(key).is_file() or key == "-":
            out.extend(parse_public_keys(_read_source(key, "KEY")))
        else:
            out.append(PublicKey.from_base64(key))  # public: fine on the command line
    if keys_file is not None:
        out.extend(parse_public_keys(_read_source(str(keys_file), "--keys-file")))
    return out


def _date(ts: int | None) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(ts)) if ts is not None else "(unknown date)"


def gpg_block(checks: list[SignatureCheck]) -> list[str]:
    """Lines in the layout of ``ostree show``'s signature report."""
    lines = [f"Found {len(checks)} signature{'s' if len(checks) != 1 else ''}:"]
    for c in checks:
        keyid = c.key[-16:] if c.key else "(unknown)"
        algo = f"{c.algorithm} " if c.algorithm else ""
        lines.append("")
        lines.append(f"  Signature made {_date(c.timestamp)} using {algo}key ID {keyid}")
        if c.status == "good":
            lines.append(f'  Good signature from "{c.user}"')
        elif c.status == "untrusted":
            lines.append("  Can't check signature: public key not found")
        elif c.status == "bad":
            lines.append(f'  BAD signature from "{c.user}"')
        else:
            lines.append(f"  {c.status.capitalize()} signature" + (f' from "{c.user}"' if c.user else ""))
        if c.status == "good" and len(c.key) > 16:
            lines.append(f"  Primary key ID {c.key}")
    return lines


def show_gpg_verifier(repo: Repo, homedir: Path | None, remote: str | None) -> GpgVerifier:
    """The keys ``show`` checks GPG signatures with: a remote's, a keyring directory's, or the global ones.

    ``--gpg-homedir=DIR`` takes every ``*.gpg`` keyring file in DIR, as ostree does; a GnuPG home
    without such files is used through its own public keyring.
    """
    from bootree.pull.remote import find_remote
    from bootree.pull.trust import global_gpg_keyrings, gpg_keyrings

    if remote is not None:
        return GpgVerifier(keyrings=gpg_keyrings(repo.path, find_remote(repo.path, repo.config, remote)))
    # As ostree (no remote): the global keyrings ($OSTREE_GPG_HOME), and those of --gpg-homedir.
    trusted = global_gpg_keyrings()
    if homedir is not None:
        rings = sorted(p for p in homedir.glob("*.gpg") if p.is_file() and p.name != "trustdb.gpg")
        if not rings and not trusted:
            return GpgVerifier(homedir=homedir)
        trusted = [*rings, *trusted] if rings else [
            *(p for p in (homedir / "pubring.kbx", homedir / "pubring.gpg") if p.is_file()), *trusted]
    return GpgVerifier(keyrings=trusted)


def _resolve(repo: Repo, rev: str) -> Checksum:
    csum = repo.resolve_rev(rev)
    assert csum is not None
    return csum


@cli.command("sign")
@repo_option
@click.argument("commit")
@click.argument("keys", nargs=-1)
@click.option("-s", "--sign-type", default="ed25519", show_default=True, help="Signature type.")
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read keys from FILE, one base64 key per line (secret keys to sign, public keys otherwise).")
@click.option("--verify", is_flag=True, help="Verify signatures with the given public keys.")
@click.option("-d", "--delete", is_flag=True, help="Delete the signatures made by the given public keys.")
@click.option("--json", "as_json", is_flag=True, help="With --verify: print the checks as JSON.")
@click.pass_context
def sign_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    commit: str,
    keys: tuple[str, ...],
    sign_type: str,
    keys_file: Path | None,
    verify: bool,
    delete: bool,
    as_json: bool,
) -> None:
    """Sign COMMIT with ed25519 (ostree's ostree.sign.ed25519 detached metadata).

    KEY arguments name files holding base64 secret keys (or '-' for standard input); with
    --verify or --delete they are base64 public keys or files of them.

    \b
    Examples:
      bootree sign --keys-file=secret.ed25519 os/main
      bootree sign --verify os/main "$(cat public.ed25519)"
    """
    from bootree.pull.publish import delete_ed25519_signatures, sign_commit, verify_commit

    check_sign_type(sign_type)
    if verify and delete:
        raise click.UsageError("--verify and --delete are exclusive")
    repo = open_repo(ctx, repo_path)
    csum = _resolve(repo, commit)
    if sign_type == "dummy":
        _dummy_sign(repo, csum, keys, verify=verify, delete=delete)
        return
    if verify or delete:
        public = _public_keys(keys, keys_file)
        if not public:
            raise click.UsageError("no public key given")
        if delete:
            n = delete_ed25519_signatures(repo, csum, public)
            click.echo(f"Deleted {n} signature{'s' if n != 1 else ''} from commit {csum}")
            return
        result = verify_commit(repo, csum, Verifier(ed25519=tuple(public)), require_ed25519=True)
        if as_json:
            print_json([{"engine": c.engine, "valid": c.valid, "status": c.status, "key": c.key} for c in result.checks])
            return
        for c in result.checks:
            if c.valid:
                click.echo(f"Signature verified successfully with key '{c.key}'")
        return
    sign_commit(repo, csum, ed25519_keys=read_secret_keys(keys, keys_file))


def _dummy_sign(repo: Repo, csum: Checksum, keys: tuple[str, ...], *, verify: bool, delete: bool) -> None:
    """``sign --sign-type=dummy``: KEY arguments are the dummy key strings themselves."""
    from bootree.pull.publish import sign_commit, verify_commit
    from bootree.sign import dummy

    if delete:
        raise click.UsageError("--delete is not supported for the dummy signature type")
    if not keys:
        raise click.UsageError("no key given")
    if not verify:
        sign_commit(repo, csum, dummy_keys=keys)
        return
    try:
        verify_commit(repo, csum, Verifier(dummy=keys), require_sign=True)
    except VerificationError as e:  # not enabled, unsigned or another key: ostree says just this
        raise VerificationError("No valid signatures found") from e
    click.echo(f"{dummy.NAME}: Signature verified")


@cli.command("gpg-sign")
@repo_option
@click.argument("commit")
@click.argument("key_ids", nargs=-1, required=True)
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), help="GnuPG home of the signing keys.")
@click.option("-d", "--delete", is_flag=True, help="Delete the signatures made by the given key IDs.")
@click.pass_context
def gpg_sign_cmd(
    ctx: click.Context, repo_path: Path | None, commit: str, key_ids: tuple[str, ...], gpg_homedir: Path | None, delete: bool
) -> None:
    """Sign COMMIT with GPG key KEY-ID (ostree.gpgsigs detached metadata), as ostree gpg-sign."""
    from bootree.pull.publish import delete_gpg_signatures, sign_commit

    repo = open_repo(ctx, repo_path)
    csum = _resolve(repo, commit)
    if delete:
        n = delete_gpg_signatures(repo, csum, key_ids, homedir=gpg_homedir)
        click.echo(f"Signatures deleted: {n}")
        return
    sign_commit(repo, csum, gpg_key_ids=key_ids, gpg_homedir=gpg_homedir)


@cli.command("sign-keygen")
@click.argument("secret_file", type=click.Path(dir_okay=False, path_type=Path))
def sign_keygen_cmd(secret_file: Path) -> None:
    """Make an ed25519 key pair: SECRET_FILE (mode 0600) and SECRET_FILE.pub; print the public key.

    The files are in ostree's formats (base64 of seed and public key; base64 of the public key),
    for 'sign --keys-file', 'commit --sign' and a remote's verification-ed25519-file.
    """
    from bootree import _fs

    public_file = secret_file.with_name(secret_file.name + ".pub")
    for f in (secret_file, public_file):
        if f.exists():
            raise click.UsageError(f"{f} exists: refusing to overwrite a key")
    key = SecretKey.generate()
    _fs.write_atomic(secret_file, (key.base64 + "\n").encode(), mode=0o600)  # created 0600: never readable by others
    _fs.write_atomic(public_file, (key.public.base64 + "\n").encode())
    click.echo(key.public.base64)

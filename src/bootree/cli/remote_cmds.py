"""Remote commands, named and optioned as ostree's: remote (add, delete, list, cookies, gpg-import,
refs, show-url) and summary. Pulls are in :mod:`bootree.cli.pull_cmds`.

Layer: cli. Parses options, calls :mod:`bootree.pull` (the remote's session, its summary) and
:mod:`bootree.repo`, and renders the result.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bootree.cli import cli
from bootree.cli._common import (
    json_option,
    kv_option,
    open_repo,
    print_json,
    repo_option,
)
from bootree.errors import RemoteError
from bootree.format.gvariant import Variant
from bootree.format.gvtext import print_text
from bootree.format.keyfile import KeyFile
from bootree.format.summary import Summary
from bootree.pull import (
    add_remote,
    delete_remote,
    get_remote,
    list_remotes,
)
from bootree.pull.publish import expiry_metadata, sign_summary
from bootree.pull.remote import find_remote
from bootree.pull.session import fetch_remote_summary
from bootree.repo import Repo
from bootree.repo.summary import read_summary, update_summary

if TYPE_CHECKING:
    from bootree.sign.gpgkeys import GpgKey, GpgSubkey

# --- remote ------------------------------------------------------------------------------------


@cli.group("remote")
@click.option("--sysroot", "sysroot_path", type=click.Path(file_okay=False, path_type=Path), hidden=True,
              help="As 'remote add --sysroot' (ostree accepts it before the subcommand).")
@click.pass_context
def remote_group(ctx: click.Context, sysroot_path: Path | None) -> None:
    """Manage remote repositories ([remote "NAME"] sections of the repo config)."""
    ctx.ensure_object(dict)["remote_sysroot"] = sysroot_path


@remote_group.command("add")
@repo_option
@click.argument("name")
@click.argument("url")
@click.argument("branches", nargs=-1)
@click.option(
    "--set",
    "set_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set config option KEY=VALUE for the remote.",
)
@click.option("--no-gpg-verify", is_flag=True, help="Disable GPG verification.")
@click.option("--no-sign-verify", is_flag=True, help="Disable signature verification (GPG and others).")
@click.option("--sign-verify", "sign_verify_keys", multiple=True, metavar="KEYTYPE=[inline|file]:PUBKEY",
              help="Verify signatures using KEYTYPE=inline:PUBKEY or KEYTYPE=file:/path/to/key (ed25519).")
@click.option("--gpg-import", "gpg_import_files", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Import GPG keys from FILE for this remote.")
@click.option("--if-not-exists", is_flag=True, help="Do nothing if the remote exists.")
@click.option("--force", is_flag=True, help="Replace the remote if it exists.")
@click.option("--contenturl", help="Use URL when fetching content (objects).")
@click.option("--collection-id", help="Collection ID of the remote's refs.")
@click.option("--sysroot", "sysroot_path", type=click.Path(file_okay=False, path_type=Path),
              help="Add the remote to the sysroot at PATH (its repository, or its deployment's /etc).")
@click.pass_context
def remote_add_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    sysroot_path: Path | None,
    name: str,
    url: str,
    branches: tuple[str, ...],
    set_options: tuple[str, ...],
    no_gpg_verify: bool,
    no_sign_verify: bool,
    sign_verify_keys: tuple[str, ...],
    gpg_import_files: tuple[Path, ...],
    if_not_exists: bool,
    force: bool,
    contenturl: str | None,
    collection_id: str | None,
) -> None:
    """Add a remote repository NAME at URL (optionally with default BRANCHES)."""
    if if_not_exists and force:
        raise click.UsageError("--if-not-exists and --force cannot be used together")
    sysroot_path = sysroot_path or (ctx.obj or {}).get("remote_sysroot")
    repo = open_repo(ctx, sysroot_path / "ostree/repo" if sysroot_path is not None else repo_path)
    options = [kv_option(o, "--set") for o in set_options]
    keys = [_sign_verify_option(spec) for spec in sign_verify_keys]  # their engines become sign-verify
    if sign_verify_keys and no_sign_verify:
        raise click.UsageError("--sign-verify and --no-sign-verify are exclusive")
    from bootree.pull.remote import remotes_config_dir

    confdir = remotes_config_dir(sysroot_path, repo.config) if sysroot_path is not None else None
    config = KeyFile() if confdir is not None else repo.config
    added = add_remote(
        config,
        name,
        url,
        branches=branches,
        contenturl=contenturl,
        options=options,
        gpg_verify=False if (no_gpg_verify or no_sign_verify) else None,
        sign_verify=False if no_sign_verify else None,
        verification_keys=keys,
        collection_id=collection_id,
        if_not_exists=if_not_exists,
        force=force,
    )
    if added and confdir is not None:
        from bootree.pull.remote import save_remote_file

        added = save_remote_file(confdir, name, config, if_not_exists=if_not_exists, force=force)
    elif added:
        repo.save_config()
    if added:
        if gpg_import_files:
            from bootree.pull.trust import gpg_import

            n = gpg_import(repo.path, get_remote(repo.config, name), gpg_import_files, fsync=repo.fsync)
            click.echo(f"Imported {len(n)} GPG key{'s' if len(n) != 1 else ''} to remote \"{name}\"")


def _sign_verify_option(spec: str) -> tuple[str, str, str]:
    """ostree's ``--sign-verify=ed25519=inline:KEY`` / ``ed25519=file:PATH``: the engine and its remote key.

    The errors use ostree's words, which scripts match.
    """
    from bootree.pull.trust import SIGN_ENGINES

    kind, sep, ref = spec.partition("=")
    if not sep:
        raise click.BadParameter(f"Failed to parse KEYTYPE=[inline|file]:DATA in {spec}", param_hint="--sign-verify")
    if kind not in SIGN_ENGINES:
        raise click.BadParameter(f"Requested signature type is not implemented: {kind}", param_hint="--sign-verify")
    how, sep2, value = ref.partition(":")
    if not sep2 or how not in ("inline", "file") or not value:
        raise click.BadParameter(f"Invalid key reference {how}, expected inline|file", param_hint="--sign-verify")
    return kind, f"verification-{kind}-key" if how == "inline" else f"verification-{kind}-file", value


@remote_group.command("delete")
@repo_option
@click.argument("name")
@click.option("--if-exists", is_flag=True, help="Do nothing if the remote does not exist.")
@click.pass_context
def remote_delete_cmd(ctx: click.Context, repo_path: Path | None, name: str, if_exists: bool) -> None:
    """Delete remote NAME (and its refs/remotes/NAME refs and trusted GPG keyring)."""
    from bootree.pull.trust import gpg_forget

    repo = open_repo(ctx, repo_path)
    if delete_remote(repo.config, name, if_exists=if_exists):
        repo.save_config()
        repo.refs.delete_remote(name)
        gpg_forget(repo.path, name)


@remote_group.command("list")
@repo_option
@click.option("-u", "--show-urls", is_flag=True, help="Show remote URLs in the list.")
@json_option
@click.pass_context
def remote_list_cmd(ctx: click.Context, repo_path: Path | None, show_urls: bool, as_json: bool) -> None:
    """List remote names (sorted, as ostree), with those of the parent repositories (core.parent)."""
    repo = open_repo(ctx, repo_path)
    found = {r.name: r for r in list_remotes(repo.config)}
    seen = {os.path.realpath(repo.path)}
    parent = repo.config.get("core", "parent")
    while parent and os.path.realpath(parent) not in seen:
        seen.add(os.path.realpath(parent))
        upper = Repo.open(parent)
        for r in list_remotes(upper.config):
            found.setdefault(r.name, r)
        parent = upper.config.get("core", "parent")
    remotes = sorted(found.values(), key=lambda r: r.name)
    if as_json:
        print_json([{"name": r.name, "url": r.url, "options": dict(r.options)} for r in remotes])
        return
    width = max((len(r.name) for r in remotes), default=0)
    for r in remotes:
        click.echo(f"{r.name:<{width}}  {r.url}" if show_urls else r.name)


@remote_group.command("add-cookie")
@repo_option
@click.argument("name")
@click.argument("domain")
@click.argument("path")
@click.argument("cookie_name", metavar="COOKIE")
@click.argument("value")
@click.pass_context
def remote_add_cookie_cmd(
    ctx: click.Context, repo_path: Path | None, name: str, domain: str, path: str, cookie_name: str, value: str
) -> None:
    """Add a cookie that pulls from remote NAME send to DOMAIN under PATH."""
    from bootree.pull.cookies import Cookie, add_cookie

    repo = open_repo(ctx, repo_path)
    get_remote(repo.config, name)
    add_cookie(repo, name, Cookie(domain, path, cookie_name, value))


@remote_group.command("delete-cookie")
@repo_option
@click.argument("name")
@click.argument("domain")
@click.argument("path")
@click.argument("cookie_name", metavar="COOKIE")
@click.argument("value", required=False)
@click.pass_context
def remote_delete_cookie_cmd(
    ctx: click.Context, repo_path: Path | None, name: str, domain: str, path: str, cookie_name: str, value: str | None
) -> None:
    """Remove a cookie of remote NAME (VALUE is accepted as ostree takes it)."""
    from bootree.pull.cookies import delete_cookie

    if not delete_cookie(open_repo(ctx, repo_path), name, domain, path, cookie_name):
        raise RemoteError(f"Cookie {cookie_name} for {domain}{path} not found")


@remote_group.command("list-cookies")
@repo_option
@click.argument("name")
@click.pass_context
def remote_list_cookies_cmd(ctx: click.Context, repo_path: Path | None, name: str) -> None:
    """List the cookies of remote NAME."""
    from bootree.pull.cookies import list_cookies

    for c in list_cookies(open_repo(ctx, repo_path), name):
        click.echo(f"Name: {c.name}\nValue: {c.value}\nDomain: {c.domain}\nPath: {c.path}\n"
                   f"Secure: {'yes' if c.secure else 'no'}\nExpires: {c.expires or 'session'}\n")


@remote_group.command("show-url")
@repo_option
@click.argument("name")
@click.pass_context
def remote_show_url_cmd(ctx: click.Context, repo_path: Path | None, name: str) -> None:
    """Print the URL of remote NAME."""
    repo = open_repo(ctx, repo_path)
    click.echo(find_remote(repo.path, repo.config, name).url)


def _fetch_summary(repo: Repo, name: str) -> Summary:
    from bootree.pull.summarycache import SummaryCache
    from bootree.pull.trust import policy_for_remote

    remote = find_remote(repo.path, repo.config, name)
    policy = policy_for_remote(repo.path, remote)  # a signed summary is checked before it is shown
    try:
        return fetch_remote_summary(remote, policy=policy, cache=SummaryCache.for_repo(repo.path)).summary
    finally:
        policy.close()


@remote_group.command("summary")
@repo_option
@click.argument("name")
@click.pass_context
def remote_summary_cmd(ctx: click.Context, repo_path: Path | None, name: str) -> None:
    """Show the summary remote NAME publishes (checked as a pull checks it), and, when the remote
    verifies summary signatures with GPG, those signatures (as ostree's ``remote summary``)."""
    from bootree.cli.sign_cmds import gpg_block
    from bootree.pull.summarycache import SummaryCache
    from bootree.pull.trust import gpg_keyrings, policy_for_remote
    from bootree.sign import GpgVerifier, detached

    repo = open_repo(ctx, repo_path)
    remote = find_remote(repo.path, repo.config, name)
    policy = policy_for_remote(repo.path, remote)
    try:
        found = fetch_remote_summary(remote, policy=policy, cache=SummaryCache.for_repo(repo.path))
    finally:
        policy.close()
    _render_summary(found.summary)
    if found.signature is None or not remote.get_bool("gpg-verify-summary", False):
        return
    sigs = detached.signatures(detached.decode(found.signature), detached.GPG_KEY)
    with GpgVerifier(keyrings=gpg_keyrings(repo.path, remote)) as verifier:
        checks = verifier.verify(found.data, sigs)
    lines = gpg_block(checks)
    click.echo(f"\nGPG: Verification enabled, found {len(checks)} signature{'s' if len(checks) != 1 else ''}:")
    click.echo("\n".join(lines[1:]))


@remote_group.command("refs")
@repo_option
@click.argument("name")
@json_option
@click.pass_context
def remote_refs_cmd(ctx: click.Context, repo_path: Path | None, name: str, as_json: bool) -> None:
    """List the refs remote NAME publishes in its summary, as NAME:REF."""
    summary = _fetch_summary(open_repo(ctx, repo_path), name)
    if as_json:
        print_json({f"{name}:{r.name}": r.commit for r in summary.refs})
        return
    for r in summary.refs:
        click.echo(f"{name}:{r.name}")


# --- summary -------------------------------------------------------------------------------------


def _ts(v: int) -> str:
    return dt.datetime.fromtimestamp(v, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00")


#: The summary file's GVariant type (refs with commit size, checksum and metadata; metadata).
_SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"


def _render_summary(summary: Summary) -> None:
    main = summary.collection_id
    listed = [(main, r) for r in summary.refs]
    listed += [(cid, r) for cid, refs in summary.collection_map.items() for r in refs]
    for cid, r in listed:
        click.echo(f"* ({cid}, {r.name})" if cid is not None else f"* {r.name}")
        click.echo(f"    Latest Commit ({r.commit_size} bytes):")
        click.echo(f"      {r.commit}")
        if r.version is not None:
            click.echo(f"    Version (ostree.commit.version): {r.version}")
        if r.timestamp is not None:
            click.echo(f"    Timestamp (ostree.commit.timestamp): {_ts(r.timestamp)}")
        click.echo("")
    labels = {
        "ostree.summary.mode": "Repository Mode",
        "ostree.summary.last-modified": "Last-Modified",
        "ostree.summary.tombstone-commits": "Has Tombstone Commits",
        "ostree.summary.collection-id": "Collection ID",
        "ostree.summary.collection-map": "Collection Map",
    }
    labels["ostree.static-deltas"] = "Static Deltas"
    for key, value in summary.metadata:
        label = labels.get(key)
        if key == "ostree.summary.last-modified" and summary.last_modified is not None:
            text = _ts(summary.last_modified)
        elif key == "ostree.summary.collection-map" and label:
            text = "(printed above)"
        elif key == "ostree.static-deltas":
            text = print_text(value.type, value.value)  # GVariant text, as ostree prints it
        elif value.type == "b":
            text = ("Yes" if value.value else "No") if label else ("true" if value.value else "false")
        else:
            text = str(value.value) if label else print_text(value.type, value.value)
        click.echo(f"{label} ({key}): {text}" if label else f"{key}: {text}")


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    factor = units.get(t[-1:], 0)
    number = t[:-1] if factor else t
    if not number.isdigit():
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 3600, 90m, 12h, 7d)", param_hint="--expires-in")
    return int(number) * (factor or 1)


@remote_group.command("gpg-import")
@repo_option
@click.argument("name")
@click.argument("key_ids", nargs=-1)
@click.option("-k", "--keyring", "keyrings", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Import keys from a keyring file (repeatable).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Import keys from standard input.")
@click.pass_context
def remote_gpg_import_cmd(
    ctx: click.Context, repo_path: Path | None, name: str, key_ids: tuple[str, ...],
    keyrings: tuple[Path, ...], from_stdin: bool,
) -> None:
    """Trust GPG keys for remote NAME (<repo>/NAME.trustedkeys.gpg), as ostree remote gpg-import."""
    import sys
    import tempfile

    from bootree.pull.trust import gpg_import

    repo = open_repo(ctx, repo_path)
    remote = get_remote(repo.config, name)
    if not keyrings and not from_stdin:
        raise click.UsageError("give -k KEYRING or --stdin")
    with tempfile.TemporaryDirectory(prefix="bootree-import-") as tmp:
        sources = list(keyrings)
        if from_stdin:
            staged = Path(tmp) / "stdin.gpg"
            staged.write_bytes(sys.stdin.buffer.read())
            sources.append(staged)
        added = gpg_import(repo.path, remote, sources, key_ids=key_ids, fsync=repo.fsync)
    click.echo(f"Imported {len(added)} GPG key{'s' if len(added) != 1 else ''} to remote \"{name}\"")


@cli.command("summary")
@repo_option
@click.option("-u", "--update", is_flag=True, help="Regenerate the summary file (deletes summary.sig).")
@click.option("-v", "--view", is_flag=True, help="Print the summary in human-readable form.")
@click.option("--raw", is_flag=True, help="Print the summary as GVariant text (as ostree's --raw).")
@click.option(
    "--add-metadata",
    "-m",
    "add_metadata",
    multiple=True,
    metavar="KEY=VALUE",
    help="Additional metadata (VALUE in GVariant text, as commit --add-metadata: 'text', 5, @u 5, @a{sv} {}).",
)
@click.option("--gpg-sign", "gpg_keys", multiple=True, metavar="KEY-ID", help="GPG key to sign the summary with.")
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), help="GnuPG home of the signing keys.")
@click.option("--sign", "sign_keys", multiple=True, metavar="KEYFILE",
              help="Sign with the ed25519 secret key(s) in KEYFILE ('-': standard input).")
@click.option("-s", "--sign-type", default="ed25519", show_default=True, help="Signature type of --sign.")
@click.option("--expires-in", metavar="DURATION",
              help="With -u: clients refuse the summary after DURATION (e.g. 3600, 90m, 12h, 7d): bootree.summary.expires.")
@json_option
@click.pass_context
def summary_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    update: bool,
    view: bool,
    add_metadata: tuple[str, ...],
    raw: bool,
    gpg_keys: tuple[str, ...],
    gpg_homedir: Path | None,
    sign_keys: tuple[str, ...],
    sign_type: str,
    expires_in: str | None,
    as_json: bool,
) -> None:
    """Manage the summary file of a repository (what 'pull' reads first).

    -u regenerates it (and removes summary.sig); --gpg-sign / --sign then sign it, as ostree.
    """
    from bootree.cli.sign_cmds import signing_keys

    repo = open_repo(ctx, repo_path)
    view = view or raw
    if not update and not view and not gpg_keys and not sign_keys:
        raise click.UsageError("no action given: use --update, --view, --gpg-sign or --sign")
    if expires_in is not None and not update:
        raise click.UsageError("--expires-in needs --update")
    secret, dummy_keys = signing_keys(sign_keys, sign_type) if sign_keys else ([], ())
    if update:
        extra = []
        for item in add_metadata:
            key, value = kv_option(item, "--add-metadata")
            extra.append((key, _parse_variant(value)))
        if expires_in is not None:
            extra.append(expiry_metadata(int(time.time()) + _duration(expires_in)))
        update_summary(repo, extra_metadata=extra)
    if gpg_keys or secret or dummy_keys:
        sign_summary(repo, ed25519_keys=secret, gpg_key_ids=gpg_keys, gpg_homedir=gpg_homedir, dummy_keys=dummy_keys)
    if view:
        summary = read_summary(repo)
        if raw:
            from bootree.format.gvariant import decode
            from bootree.format.gvtext import byteswap

            data = (repo.path / "summary").read_bytes()
            value = byteswap(_SUMMARY_TYPE, decode(_SUMMARY_TYPE, data))  # as ostree prints it
            click.echo(print_text(_SUMMARY_TYPE, value, annotate=True))
        elif as_json:
            print_json(
                {
                    "refs": {
                        r.name: {
                            "commit": r.commit,
                            "size": r.commit_size,
                            "version": r.version,
                            "timestamp": r.timestamp,
                        }
                        for r in summary.refs
                    },
                    "mode": summary.mode,
                    "last-modified": summary.last_modified,
                    "static-deltas": {k: v.hex() for k, v in summary.static_deltas.items()},
                }
            )
        else:
            _render_summary(summary)


def _parse_variant(text: str) -> Variant:
    from bootree.cli._common import parse_gvariant_text

    return parse_gvariant_text(text)


@remote_group.command("gpg-list-keys")
@repo_option
@click.argument("name", required=False)
@click.pass_context
def remote_gpg_list_keys_cmd(ctx: click.Context, repo_path: Path | None, name: str | None) -> None:
    """List the GPG keys trusted for remote NAME (without NAME: the global ones), as ostree."""
    from bootree.pull.trust import global_gpg_keyrings, remote_gpg_keyrings
    from bootree.sign.gpgkeys import list_keys

    repo = open_repo(ctx, repo_path)
    rings = remote_gpg_keyrings(repo.path, get_remote(repo.config, name)) if name else global_gpg_keyrings()
    for line in _gpg_key_lines(list_keys(rings)):
        click.echo(line)


def _gpg_key_lines(keys: list[GpgKey]) -> list[str]:
    """ostree's layout: Key, Created, [Expires|Expired], UID lines with their update URLs, Subkeys."""
    import time

    def when(ts: int) -> str:
        return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(ts))

    def sub(k: GpgSubkey, primary: bool) -> list[str]:
        lead = "" if primary else "  "
        flags = (" (revoked)" if k.revoked else "") + (" (invalid)" if k.invalid else "")
        out = [f"{lead}{'Key' if primary else 'Subkey'}: {k.fingerprint}{flags}", f"{lead}  Created: {when(k.created)}"]
        if k.expires > 0:
            out.append(f"{lead}  {'Expired' if k.expired else 'Expires'}: {when(k.expires)}")
        return out

    lines: list[str] = []
    for key in keys:
        lines += sub(key.primary, True)
        for u in key.uids:
            lines.append(f"  UID: {u.uid}" + (" (revoked)" if u.revoked else "") + (" (invalid)" if u.invalid else ""))
            lines.append(f"  Advanced update URL: {u.advanced_url or ''}")
            lines.append(f"  Direct update URL: {u.direct_url or ''}")
        for s in key.subkeys:
            lines += sub(s, False)
    return lines

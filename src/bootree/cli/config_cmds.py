"""ostree's small repository commands that have no other home: ``config``, ``reset``, ``checksum``.

Layer: cli. ``config get|set|unset`` edit the repository's ``config`` key file in place
(comments and unknown keys kept, written atomically); ``reset`` moves a ref to any commit.
"""

from __future__ import annotations

from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import open_repo, repo_option
from bootree.errors import RepoError


class ConfigKeyMissing(RepoError):
    """``config get`` of a key (or group) the config file does not have."""


def _group_and_key(group: str | None, name: str) -> tuple[str, str]:
    """``--group=G KEY``, or ``GROUP.KEY`` split at its first dot (as ostree splits it)."""
    if group is not None:
        return group, name
    g, sep, key = name.partition(".")
    if not sep or not g or not key:
        raise click.UsageError(f"key {name!r} must be GROUP.KEY (or give --group)")
    return g, key


def _arity(args: tuple[str, ...], n: int, usage: str) -> None:
    if len(args) > n:
        raise RepoError("Too many arguments given")
    if len(args) < n:
        raise click.UsageError(f"usage: {usage}")


@cli.command("config", context_settings={"ignore_unknown_options": True})
@repo_option
@click.option("--group", help="The key file group (default: the part of KEY before its first dot).")
@click.argument("action", type=click.Choice(["get", "set", "unset"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def config_cmd(ctx: click.Context, repo_path: Path | None, group: str | None, action: str, args: tuple[str, ...]) -> None:
    """Read or change repository configuration: get KEY, set KEY VALUE, unset KEY.

    KEY is GROUP.KEY (core.mode) or, with --group='remote "NAME"', the key alone. 'unset' of a
    key or group that does not exist succeeds, as with ostree.

    \b
    Examples:
      bootree --repo=repo config get core.mode
      bootree --repo=repo config set --group='remote "origin"' gpg-verify false
    """
    repo = open_repo(ctx, repo_path)
    config = repo.config
    if action == "get":
        _arity(args, 1, "config get [--group=GROUP] KEY")
        g, key = _group_and_key(group, args[0])
        if not config.has_group(g):
            raise ConfigKeyMissing(f"Key file does not have group '{g}'")
        value = config.get(g, key)
        if value is None:
            raise ConfigKeyMissing(f"Key file does not have key '{key}' in group '{g}'")
        click.echo(value)
        return
    if action == "set":
        _arity(args, 2, "config set [--group=GROUP] KEY VALUE")
        g, key = _group_and_key(group, args[0])
        config.set(g, key, args[1])
    else:
        _arity(args, 1, "config unset [--group=GROUP] KEY")
        g, key = _group_and_key(group, args[0])
        if not config.remove_key(g, key):
            return
    with repo.lock(exclusive=True):
        repo.save_config()


@cli.command("reset")
@repo_option
@click.argument("ref")
@click.argument("commit")
@click.pass_context
def reset_cmd(ctx: click.Context, repo_path: Path | None, ref: str, commit: str) -> None:
    """Point REF (which must exist) at COMMIT, a ref or checksum, older or not."""
    repo = open_repo(ctx, repo_path)
    current = repo.resolve_rev(ref)
    target = repo.resolve_rev(commit)
    assert current is not None and target is not None  # resolve_rev raises RefNotFound
    repo.set_ref(ref, target, expected=current)
    from bootree.repo.summary import refs_changed

    refs_changed(repo)


@cli.command("checksum")
@click.option("--ignore-xattrs", is_flag=True, help="Leave extended attributes out of the checksum.")
@click.argument("path", type=click.Path(exists=False, path_type=Path))
def checksum_cmd(ignore_xattrs: bool, path: Path) -> None:
    """Print the object checksum PATH would have in a repository: a file's content checksum
    (with its owner, mode and xattrs), or a directory's dirmeta checksum."""
    import hashlib
    import os
    import stat

    from bootree import _fs
    from bootree.format.objects import DirMeta, FileHeader

    st = os.lstat(path)
    xattrs = () if ignore_xattrs else _fs.list_xattrs(path)
    if stat.S_ISDIR(st.st_mode):
        meta = DirMeta(st.st_uid, st.st_gid, stat.S_IFDIR | (st.st_mode & 0o7777), xattrs)
        click.echo(hashlib.sha256(meta.to_bytes()).hexdigest())
        return
    if stat.S_ISLNK(st.st_mode):
        click.echo(FileHeader(st.st_uid, st.st_gid, st.st_mode, 0, os.readlink(path), xattrs).checksum())
        return
    if not stat.S_ISREG(st.st_mode):
        raise RepoError(f"{path}: not a regular file, symbolic link or directory")
    header = FileHeader(st.st_uid, st.st_gid, st.st_mode, 0, "", xattrs)
    hasher = hashlib.sha256(header.checksum_prefix())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    click.echo(hasher.hexdigest())

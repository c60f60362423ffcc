"""Ref commands, as ostree names them: refs (list, create, alias, delete) and rev-parse.

Layer: cli: parse, call :mod:`bootree.repo`, render.
"""

from __future__ import annotations

from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import (
    json_option,
    open_repo,
    repo_option,
)
from bootree.cli.render import emit
from bootree.errors import RepoError
from bootree.format.objects import ObjectType
from bootree.repo import Repo

# --- reading ---------------------------------------------------------------------------------


@cli.command("refs")
@repo_option
@click.argument("prefixes", nargs=-1)
@click.option("--delete", is_flag=True, help="Delete the refs matching each PREFIX.")
@click.option("--list", "full_names", is_flag=True, help="Print full ref names (do not strip PREFIX).")
@click.option("-A", "--alias", is_flag=True, help="With --create, make NEWREF an alias of the ref PREFIX; else list aliases.")
@click.option("--create", metavar="NEWREF", help="Create NEWREF pointing at the commit PREFIX resolves to.")
@click.option("--force", is_flag=True, help="With --create, replace an existing NEWREF.")
@click.option("--remote", help="List only this remote's refs.")
@click.option(
    "-c",
    "--collections",
    is_flag=True,
    help="Work on collection refs, printed as (COLLECTION, REF); each PREFIX is a collection ID, "
    "--create takes COLLECTION:REF.",
)
@json_option
@click.pass_context
def refs_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    prefixes: tuple[str, ...],
    delete: bool,
    full_names: bool,
    alias: bool,
    create: str | None,
    force: bool,
    remote: str | None,
    collections: bool,
    as_json: bool,
) -> None:
    """List refs (remote ones as REMOTE:REF), or create, alias or delete them.

    As ostree, ``refs PREFIX`` prints the refs under PREFIX relative to it (``--list``: full
    names); an alias is a ref that follows another one (a symbolic link in refs/heads).
    """
    repo = open_repo(ctx, repo_path)
    if delete and not prefixes:
        raise click.UsageError("At least one PREFIX is required when deleting refs")
    if collections:
        _collection_refs(repo, prefixes, create=create, delete=delete, as_json=as_json)
        return
    if create:
        if len(prefixes) != 1:
            raise click.UsageError("--create=NEWREF needs one existing ref or commit as argument")
        _create_ref(repo, prefixes[0], create, alias=alias, force=force)
        from bootree.repo.summary import refs_changed

        refs_changed(repo)
        return
    if delete:
        aliased = {target for _a, target in repo.refs.aliases().items()}
        for prefix in prefixes:
            # Ref files are not read (a ref holding garbage can still be deleted, as ostree).
            names = repo.refs.names(prefix, remote=remote) if remote is not None else _refs_under(repo, prefix, read=False)
            for name in names:
                if name in aliased:
                    raise RepoError(f"Ref '{name}' has an active alias; delete the alias first")
                repo.set_ref(name, None)
        from bootree.repo.summary import refs_changed

        refs_changed(repo)
        return
    if alias:
        for name, target in repo.refs.aliases().items():
            click.echo(f"{name} -> {target}")
        return
    refs: dict[str, str] = {}
    if remote is not None:
        refs = {name: name for name in repo.list_refs(remote=remote)}
    elif not prefixes:
        refs = _refs_under(repo, None)
    for prefix in prefixes if remote is None else ():
        refs.update(_refs_under(repo, prefix))
    if as_json:
        emit({n: repo.refs.get(n) for n in refs}, as_json=True, text=list)
        return
    for full, shown in refs.items():
        click.echo(full if full_names else shown)


def _collection_refs(repo: Repo, prefixes: tuple[str, ...], *, create: str | None, delete: bool, as_json: bool) -> None:
    """``refs --collections``: list (each PREFIX a collection ID), ``--create=COLLECTION:REF``
    or ``--delete`` collection refs, as ostree does."""
    from bootree.repo.collections import CollectionRef, list_collection_refs, set_collection_ref
    from bootree.repo.summary import refs_changed

    if create:
        if len(prefixes) != 1:
            raise click.UsageError("--create=COLLECTION:REF needs one existing ref or commit as argument")
        cid, sep, name = create.partition(":")
        if not sep:
            raise click.BadParameter(f"{create!r}: expected COLLECTION:REF", param_hint="--create")
        set_collection_ref(repo.refs, repo.config, CollectionRef(cid, name), repo.resolve_rev(prefixes[0]), fsync=repo.fsync)
        refs_changed(repo)
        return
    found = {}
    for match in prefixes or (None,):
        found.update(list_collection_refs(repo.refs, repo.config, match))
    if delete:
        for cref in found:
            set_collection_ref(repo.refs, repo.config, cref, None, fsync=repo.fsync)
        refs_changed(repo)
        return
    ordered = sorted(found)
    if as_json:
        rows = [{"collection_id": c.collection_id, "ref": c.ref, "checksum": found[c]} for c in ordered]
        emit(rows, as_json=True, text=lambda _rows: [str(c) for c in ordered])
        return
    for cref in ordered:
        click.echo(str(cref))


def _create_ref(repo: Repo, source: str, new: str, *, alias: bool, force: bool) -> None:
    """``refs SOURCE --create=NEW`` (``-A``: NEW follows the ref SOURCE), refusing to replace a ref
    (unless ``force``) or a directory of refs."""
    from bootree.format.refspec import parse_refspec

    spec = parse_refspec(new)
    existing = repo.refs.get(spec)
    if alias and spec.remote is None and spec.ref in repo.refs.aliases():
        existing = None  # an alias may be pointed elsewhere, as with ostree
    if existing is not None and not force:
        raise RepoError(f"Ref '{new}' already exists (use --force to replace it)")
    if alias:
        if spec.remote is not None:
            raise RepoError(f"Cannot create alias to remote ref: {new}")
        target = parse_refspec(source)
        if target.remote is not None or repo.refs.get(target) is None:
            raise RepoError(f"Cannot create alias to non-existent ref: {source}")
        repo.refs.set_alias(new, target.ref)
        return
    repo.set_ref(new, repo.resolve_rev(source), expected=existing if force else None)


def _refs_under(repo: Repo, prefix: str | None, *, read: bool = True) -> dict[str, str]:
    """Refs ``PREFIX`` names, as ``{full name: name as ostree prints it}``.

    As ostree: ``foo`` lists the local refs under ``foo/`` relative to it (``test-1``), a
    prefix that is itself a ref lists that ref by its full name, and ``REMOTE:`` or
    ``REMOTE:PREFIX`` lists that remote's refs as ``REMOTE:NAME`` (relative to PREFIX).
    Without a prefix every local and remote ref is listed by its full name. ``read=False``
    takes the names without reading (or judging) the ref files, as a delete needs.
    """
    listing = repo.list_refs if read else repo.refs.names
    if prefix is None:
        return {name: name for name in listing()}
    remote, sep, path = prefix.rpartition(":")
    if sep:
        candidates = {n.partition(":")[2]: n for n in listing(remote=remote)}
    else:
        candidates = {n: n for n in listing() if ":" not in n}
    path = "" if path == "." else path.rstrip("/")
    if not path:
        return {full: full for full in candidates.values()}
    if path in candidates:
        return {candidates[path]: candidates[path]}
    lead = f"{remote}:" if sep else ""
    return {
        full: lead + name[len(path) + 1 :]
        for name, full in candidates.items()
        if name.startswith(path + "/")
    }


@cli.command("rev-parse")
@repo_option
@click.argument("rev", required=False)
@click.option("-S", "--single", is_flag=True, help="Print the repository's only commit (an error unless there is exactly one).")
@json_option
@click.pass_context
def rev_parse_cmd(ctx: click.Context, repo_path: Path | None, rev: str | None, single: bool, as_json: bool) -> None:
    """Print the commit checksum a ref, remote:ref, abbreviated checksum or REV^ resolves to."""
    repo = open_repo(ctx, repo_path)
    if single:
        if rev is not None:
            raise click.UsageError("--single takes no REV")
        commits = sorted(c for t, c in repo.store.iter_objects() if t is ObjectType.COMMIT)
        if not commits:
            raise RepoError("No commit objects found")
        if len(commits) > 1:
            raise RepoError(f"Multiple commit objects found ({len(commits)})")
        rev, csum = commits[0], commits[0]
    elif rev is None:
        raise click.UsageError("a REV is required (or --single)")
    else:
        csum = repo.resolve_rev(rev)
    emit({"rev": rev, "checksum": csum}, as_json=as_json, text=lambda v: [v["checksum"]])



"""``find-remotes``, as ostree's: which configured remotes serve some collection refs; ``--pull`` them.

Layer: cli: parse, call :mod:`bootree.pull.finder`, print ostree's report (scripts grep its
``Result N: URL``, `` - Keyring: FILE``, ``    - (COLLECTION, REF) = COMMIT`` and
``N/M refs were found.`` lines).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import open_repo, repo_option
from bootree.errors import BootreeError
from bootree.pull.finder import FinderResult, find_remotes, pull_found
from bootree.repo.collections import CollectionRef, validate_collection_id

#: The finders ostree knows; only ``config`` exists in bootree.
_FINDERS = ("config", "lan", "mount")


def _wanted(args: tuple[str, ...]) -> list[CollectionRef]:
    if not args or len(args) % 2:
        raise click.UsageError("at least one COLLECTION-ID REF pair must be specified")
    out = []
    for cid, ref in zip(args[::2], args[1::2], strict=True):
        validate_collection_id(cid)
        out.append(CollectionRef(cid, ref))
    return out


def _print_results(results: list[FinderResult], wanted: list[CollectionRef]) -> int:
    """ostree's listing of the results; returns how many wanted refs were found anywhere."""
    if not results:
        click.echo("No results.")
        return 0
    for i, res in enumerate(results):
        modified = (
            dt.datetime.fromtimestamp(res.last_modified, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if res.last_modified
            else "unknown"
        )
        click.echo(f"Result {i}: {res.remote.url}")
        click.echo(" - Finder: OstreeRepoFinderConfig")
        click.echo(f" - Keyring: {res.keyring}")
        click.echo(f" - Priority: {res.priority}")
        click.echo(f" - Summary last modified: {modified}")
        click.echo(" - Refs:")
        for ref, hit in res.refs.items():
            click.echo(f"    - {ref} = {hit.checksum if hit is not None else '(not found)'}")
        click.echo("")
    found = [w for w in wanted if any(r.refs.get(w) is not None for r in results)]
    click.echo(f"{len(found)}/{len(wanted)} refs were found.")
    missing = [w for w in wanted if w not in found]
    if missing:
        click.echo("Refs not found in any remote:")
        for w in missing:
            click.echo(f" - {w}")
    return len(found)


@cli.command("find-remotes")
@repo_option
@click.argument("pairs", nargs=-1, metavar="COLLECTION-ID REF [COLLECTION-ID REF...]")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Use custom cache dir.")
@click.option("--disable-fsync", is_flag=True, help="Do not invoke fsync().")
@click.option("--finders", help="Use the specified comma separated list of finders (only 'config' exists).")
@click.option("--pull", "do_pull", is_flag=True, help="Pull the most recent commit found.")
@click.option("--mirror", is_flag=True, help="Do a mirror pull (see ostree pull --mirror).")
@click.pass_context
def find_remotes_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    pairs: tuple[str, ...],
    cache_dir: Path | None,
    disable_fsync: bool,
    finders: str | None,
    do_pull: bool,
    mirror: bool,
) -> None:
    """Find remotes that serve the collection refs COLLECTION-ID REF (the config finder: every
    configured remote with one of those collection IDs, by its summary)."""
    wanted = _wanted(pairs)
    names = [f.strip() for f in (finders or "config").split(",") if f.strip()]
    unknown = [f for f in names if f not in _FINDERS]
    if unknown:
        raise click.UsageError(f"unknown finder {unknown[0]!r}")
    if names != ["config"]:
        raise click.UsageError("only the 'config' finder is implemented (no mount or LAN finder)")
    if mirror and not do_pull:
        raise click.UsageError("--mirror can only be specified with --pull")
    repo = open_repo(ctx, repo_path, fsync=False if disable_fsync else None)
    results = find_remotes(repo, wanted)
    n_found = _print_results(results, wanted)
    if not do_pull or not n_found:
        return
    outcome = pull_found(repo, results, wanted, mirror=mirror, cache_dir=cache_dir)
    click.echo(f"Pulled {len(outcome.pulled)}/{n_found} refs successfully.")
    if outcome.failed:
        name, err = next(iter(outcome.failed.items()))
        raise BootreeError(f"Failed to pull some refs from the remotes: {name}: {err}")

"""Repository maintenance, as ostree's: fsck (with --delete and --composefs) and prune.

Layer: cli: parse, call :mod:`bootree.repo` (and :mod:`bootree.composefs.check`), render.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import click

from bootree.cli import cli
from bootree.cli._common import (
    format_size,
    json_option,
    open_repo,
    parse_timestamp,
    progress_bar,
    repo_option,
)
from bootree.cli.render import emit
from bootree.errors import RepoError
from bootree.format.checksum import Checksum
from bootree.format.objects import ObjectType
from bootree.pull.summarycache import prune_summary_cache

# --- maintenance -----------------------------------------------------------------------------


@cli.command("fsck")
@repo_option
@click.option("-q", "--quiet", is_flag=True, help="Only print error messages.")
@click.option("-a", "--all", "all_errors", is_flag=True, help="Accepted for ostree: bootree always reports every bad object.")
@click.option("--delete", is_flag=True, help="Delete corrupt objects and mark the commits that reach them partial.")
@click.option(
    "--composefs",
    "check_composefs",
    is_flag=True,
    help="Also regenerate the composefs image of each commit that records a digest and compare, "
    "and check the objects every deployment's .ostree.cfs redirects to.",
)
@click.option("--verify-bindings", is_flag=True, help="Check that each ref's commit is bound to it (ostree.ref-binding, ostree.collection-binding).")
@click.option("--verify-back-refs", is_flag=True, help="Check that each ref a commit is bound to exists.")
@click.option("--add-tombstones", is_flag=True, help="Replace each commit whose parent is missing by a tombstone (and turn tombstones on).")
@json_option
@click.pass_context
def fsck_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    quiet: bool,
    all_errors: bool,
    delete: bool,
    check_composefs: bool,
    verify_bindings: bool,
    verify_back_refs: bool,
    add_tombstones: bool,
    as_json: bool,
) -> None:
    """Verify every commit and every object it reaches; exit 1 listing each bad object.

    Problems are printed as ostree prints them (``error: In commits C: ...``). With --delete
    the bad objects are removed and their commits marked partial, so that a later pull
    fetches them again; fsck keeps failing until it has.
    """
    repo = open_repo(ctx, repo_path)
    say = (lambda text: None) if quiet or as_json else click.echo
    say("Validating refs...")
    say("Validating refs in collections...")
    if verify_bindings or verify_back_refs:
        from bootree.repo.collections import fsck_bindings

        fsck_bindings(
            repo.refs,
            repo.config,
            repo.reader.try_read_commit,
            (c for t, c in repo.store.iter_objects() if t is ObjectType.COMMIT),
            verify_bindings=verify_bindings,
            verify_back_refs=verify_back_refs,
        )
    say("Enumerating commits...")
    fsck_partial = [c for c in repo.partial_commits() if repo.is_partial_by_fsck(c)]
    with progress_bar("Verifying objects") as prog:

        def on_progress(done: int, total: int) -> None:
            prog.update(completed=done, total=total)

        result = repo.fsck(progress=on_progress)
        if check_composefs:
            from bootree.composefs.check import fsck_composefs

            result.problems.extend(fsck_composefs(repo, known={p.checksum for p in result.problems}))
    if as_json:
        report = result.to_json()
        report["ok"] = result.ok and not fsck_partial  # a commit fsck made partial is still bad
        emit(report, as_json=True, text=list)
        if not report["ok"]:
            ctx.exit(1)
        return
    say(f"Verifying content integrity of {result.commits - len(result.partial)} commit objects...")
    marked: list[Checksum] = []
    unfixed = []
    for p in result.problems:
        where = f"In commits {', '.join(p.commits)}: " if p.commits else ""
        # As ostree: a missing object makes its commits partial (a pull can complete them);
        # with --delete a corrupt one is removed and does the same.
        missing = p.kind in _FSCK_DELETABLE and p.message.startswith(("Object missing", "No such metadata object"))
        if p.kind in _FSCK_DELETABLE and (delete or missing):
            click.echo(f"{'error: ' if missing else ''}{where}{p.message}", err=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(repo.object_path(_FSCK_DELETABLE[p.kind], Checksum(p.checksum)))
            for c in p.commits:
                if c not in marked:
                    click.echo(f"Marking commit as partial: {c}", err=True)
                    repo.mark_partial(c, by_fsck=True)
                    marked.append(c)
        else:
            click.echo(f"error: {where}{p.message}", err=True)
            unfixed.append(p)
    if add_tombstones:
        from bootree.repo.prune import add_tombstones as tombstone_orphans

        for c in tombstone_orphans(repo):
            click.echo(f"Adding tombstone for commit {c}")
    elif result.partial:
        say(f"{len(result.partial)} partial commits not verified")
    if unfixed:
        click.echo(f"error: Repository corruption encountered ({len(unfixed)} bad objects)", err=True)
        ctx.exit(1)
    bad_partial = set(fsck_partial) | set(marked)
    if bad_partial:
        click.echo(f"error: {len(bad_partial)} partial commits from fsck-detected corruption", err=True)
        ctx.exit(1)
    click.echo(f"object fsck of {result.commits} commits completed successfully - no errors found.")


#: Bad objects ``fsck --delete`` removes (a pull fetches them again), by problem kind.
_FSCK_DELETABLE = {"file": ObjectType.FILE, "dirtree": ObjectType.DIR_TREE, "dirmeta": ObjectType.DIR_META}


@cli.command("prune")
@repo_option
@click.option("--refs-only", is_flag=True, help="Only refs are roots; commits they do not reach are deleted.")
@click.option("--depth", type=int, default=-1, show_default=True, help="Parents to keep per root (-1 = all).")
@click.option("--keep-younger-than", metavar="DATE", help="On each ref, keep only the commits at least this new (a date as GNU date reads it, or @SECONDS).")
@click.option("--no-prune", is_flag=True, help="Only report what would be deleted.")
@click.option("--delete-commit", metavar="COMMIT", help="Delete this commit (no ref may name it; it leaves a tombstone) before pruning.")
@click.option("--static-deltas-only", is_flag=True, help="With --delete-commit: delete only the static deltas to that commit.")
@click.option("--retain-branch-depth", "retain", multiple=True, metavar="BRANCH=DEPTH", help="Keep DEPTH parents of BRANCH (-1 = all).")
@click.option("--only-branch", "only_branches", multiple=True, metavar="BRANCH", help="Prune only BRANCH (repeatable); other refs are kept whole.")
@click.option("--commit-only", is_flag=True, help="Only walk and delete commit objects.")
@json_option
@click.pass_context
def prune_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    refs_only: bool,
    depth: int,
    keep_younger_than: str | None,
    no_prune: bool,
    delete_commit: str | None,
    static_deltas_only: bool,
    retain: tuple[str, ...],
    only_branches: tuple[str, ...],
    commit_only: bool,
    as_json: bool,
) -> None:
    """Delete objects that no ref (or, without --refs-only, no commit) reaches, as ostree's prune."""
    from bootree.delta.store import prune_deltas
    from bootree.repo.prune import PruneOptions, prune_repo
    from bootree.repo.prune import delete_commit as delete_one

    repo = open_repo(ctx, repo_path)
    if delete_commit:
        if no_prune:
            raise click.UsageError("Cannot specify both --delete-commit and --no-prune")
        csum = repo.resolve_rev(delete_commit)
        if static_deltas_only:
            prune_deltas(repo, to=csum)
        else:
            delete_one(repo, csum)
    elif static_deltas_only:
        raise RepoError("--static-deltas-only requires --delete-commit; see https://github.com/ostreedev/ostree/issues/1479")
    opts = PruneOptions(
        refs_only=refs_only,
        depth=depth,
        keep_younger_than=parse_timestamp(keep_younger_than, signed=True) if keep_younger_than else None,
        retain_branch_depth=dict(_branch_depth(r) for r in retain),
        only_branches=only_branches,
        commit_only=commit_only,
        dry_run=no_prune,
    )
    result = prune_repo(repo, opts)
    if not no_prune:
        prune_deltas(repo)
        prune_summary_cache(repo)
    report = {"total": result.total, "deleted": result.deleted, "bytes_freed": result.bytes_freed, "dry_run": no_prune,
              "commit_only": commit_only}
    emit(report, as_json=as_json, text=_prune_lines)


def _branch_depth(spec: str) -> tuple[str, int]:
    """``BRANCH=DEPTH`` of --retain-branch-depth, with ostree's error texts.

    Raises:
        RepoError: without ``=``, or for a depth that is not a number.
    """
    branch, eq, depth = spec.partition("=")
    if not eq:
        raise RepoError(f"Invalid value {spec}, must specify BRANCH=DEPTH")
    try:
        return branch, int(depth)
    except ValueError:
        raise RepoError(f"Invalid depth {depth}") from None


def _prune_lines(r: dict[str, Any]) -> list[str]:
    """Prune's summary in ostree's words (sizes as GLib's ``g_format_size``)."""
    total = f"Total (commit only) objects: {r['total']}" if r["commit_only"] else f"Total objects: {r['total']}"
    if not r["deleted"]:
        return [total, "No unreachable objects"]
    if r["dry_run"]:
        return [total, f"Would delete: {r['deleted']} objects, freeing {format_size(r['bytes_freed'])}"]
    return [total, f"Deleted {r['deleted']} objects, {format_size(r['bytes_freed'])} freed"]

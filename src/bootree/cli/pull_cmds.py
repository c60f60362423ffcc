"""Pull commands, as ostree's: pull (HTTP, file:// and local remotes), pull-local; and serve.

Layer: cli: parse, call :mod:`bootree.pull` (or :mod:`bootree.transport` for serve), render
progress (a rich bar with objects and bytes, only on a terminal) and a final one-line report in the
shape of ostree's ("N metadata, M content objects fetched; K KiB transferred in S seconds").
Remote configuration and summaries are in :mod:`bootree.cli.remote_cmds`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from bootree.cli import _common, cli
from bootree.cli._common import (
    json_option,
    kv_option,
    open_repo,
    print_json,
    progress_enabled,
    repo_option,
)
from bootree.pull import (
    PullConfig,
    PullEvent,
    PullResult,
    pull,
    pull_local,
)
from bootree.pull.deltas import StaticDeltas
from bootree.pull.remote import find_remote
from bootree.repo.summary import update_summary

# --- pull ----------------------------------------------------------------------------------------


class _PullDisplay:
    """A rich progress bar (objects and bytes) fed by :class:`PullEvent`s."""

    def __init__(self, prog: Any) -> None:
        self.prog = prog
        self.objects = prog.add_task("objects", total=None)
        self.bytes = prog.add_task("received", total=None, bytes_mode=True)

    def __call__(self, ev: PullEvent) -> None:
        self.prog.update(self.objects, completed=ev.fetched, total=max(ev.requested, ev.fetched) or None)
        self.prog.update(self.bytes, completed=ev.bytes)


@contextmanager
def _progress() -> Iterator[Callable[[PullEvent], None] | None]:
    if not progress_enabled():
        yield None
        return
    # Imported here: rich.progress is slow to import, and a pull without a terminal shows none.
    from rich.filesize import decimal
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class BytesOrCount(DownloadColumn):
        """Objects as ``M/N``, bytes as a download size."""

        def render(self, task: Any) -> Any:
            if task.fields.get("bytes_mode"):
                return Text(decimal(int(task.completed)), style="progress.download")
            total = "?" if task.total is None else f"{int(task.total)}"
            return Text(f"{int(task.completed)}/{total}", style="progress.download")

    with _common.live_progress(
        TextColumn("[bold]{task.description:>9}"),
        BarColumn(),
        BytesOrCount(),
        TimeElapsedColumn(),
        console=_common.err_console,
        transient=True,
    ) as prog:
        yield _PullDisplay(prog)


def _report(result: PullResult, *, local: bool = False) -> None:
    from bootree.cli._common import format_size

    if result.deltas is not None:
        d = result.deltas  # ostree's line for a dry run through deltas
        click.echo(
            f"Delta update: {d.fetched_parts}/{d.parts} parts, {format_size(d.fetched_size)}/{format_size(d.size)}, "
            f"{format_size(d.uncompressed)} total uncompressed"
        )
        return
    if result.dry_run:
        click.echo(
            f"would fetch {result.metadata_fetched} metadata, {result.content_fetched} content objects "
            f"({result.bytes_fetched // 1024} KiB of metadata read)"
        )
        return
    # ostree's line, which scripts grep: sizes as GLib writes them.
    if local:
        click.echo(
            f"{result.metadata_fetched} metadata, {result.content_fetched} content objects imported; "
            f"{format_size(result.content_bytes)} content written"
        )
        return
    cached = ""  # ostree's note on objects taken from --localcache-repo
    if result.metadata_local or result.content_local:
        cached = f" ({result.metadata_local} meta, {result.content_local} content local)"
    click.echo(
        f"{result.metadata_fetched} metadata, {result.content_fetched} content objects fetched{cached}; "
        f"{format_size(result.bytes_fetched)} transferred in {int(result.seconds)} seconds; "
        f"{format_size(result.content_bytes)} content written"
    )


def _pull_config(network_retries: int | None) -> PullConfig:
    cfg = PullConfig()
    if network_retries is not None:
        cfg = dataclasses.replace(cfg, fetch=dataclasses.replace(cfg.fetch, max_attempts=network_retries + 1))
    return cfg


@cli.command("pull")
@repo_option
@click.argument("remote")
@click.argument("refs", nargs=-1)
@click.option("--commit-metadata-only", is_flag=True, help="Fetch only the commit metadata.")
@click.option(
    "--mirror",
    is_flag=True,
    help="Write refs suitable for a mirror (refs/heads) and fetch all refs if none given.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be downloaded.")
@click.option("--depth", type=int, default=0, show_default=True, help="Traverse DEPTH parents (-1=infinite).")
@click.option("--disable-fsync", is_flag=True, help="Do not invoke fsync().")
@click.option("--disable-static-deltas", is_flag=True, help="Do not use static deltas.")
@click.option("--require-static-deltas", is_flag=True, help="Require static deltas (also for file:// remotes).")
@click.option(
    "--network-retries",
    type=int,
    default=None,
    help="How many times each download is retried on a transient error (default 4).",
)
@click.option("--url", "url_override", help="Pull from this URL instead of the remote's.")
@click.option("--http-header", "http_headers", multiple=True, metavar="NAME=VALUE", help="Add an HTTP request header.")
@click.option("--append-user-agent", metavar="PRODUCT/VERSION", help="Add this product to the User-Agent header (after bootree's own).")
@click.option(
    "--per-object-fsync",
    is_flag=True,
    help="Accepted for ostree: bootree makes every object durable before the pull commits either way.",
)
@click.option("--allow-downgrade", is_flag=True, help="Allow a ref to move to an older commit.")
@click.option("--localcache-repo", "-L", "localcache", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Take objects from this local repository when it has them (repeatable).")
@click.option("--bareuseronly-files", is_flag=True,
              help="Refuse files a bare-user-only repository must not hold (setuid, setgid, world-writable).")
@click.option("--subpath", "subpaths", multiple=True, metavar="PATH",
              help="Only pull PATH of the tree (repeatable); the commit stays partial.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the remote's signed summary in DIR/summaries instead of REPO/tmp/cache.",
)
@click.option("--disable-verify-bindings", is_flag=True, help="Do not check the commits' ref and collection bindings.")
@json_option
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    remote: str,
    refs: tuple[str, ...],
    commit_metadata_only: bool,
    mirror: bool,
    dry_run: bool,
    depth: int,
    disable_fsync: bool,
    disable_static_deltas: bool,
    require_static_deltas: bool,
    network_retries: int | None,
    url_override: str | None,
    http_headers: tuple[str, ...],
    append_user_agent: str | None,
    per_object_fsync: bool,
    allow_downgrade: bool,
    localcache: tuple[Path, ...],
    bareuseronly_files: bool,
    subpaths: tuple[str, ...],
    cache_dir: Path | None,
    disable_verify_bindings: bool,
    as_json: bool,
) -> None:
    """Download REFS (REF, REF@COMMIT or COMMIT) from REMOTE; 'REMOTE:REF' also works.

    Signatures are verified as the remote's config says (gpg-verify, gpg-verify-summary,
    sign-verify, sign-verify-summary): the summary before its refs are used, each commit
    before any of its tree is fetched.
    """
    repo = open_repo(ctx, repo_path, fsync=False if disable_fsync else None)
    wanted = list(refs)
    if ":" in remote:
        remote, _, first = remote.partition(":")
        wanted.insert(0, first)
    rem = find_remote(repo.path, repo.config, remote)
    if url_override:
        rem = dataclasses.replace(rem, options=(*rem.options, ("url", url_override)))
    cfg = _pull_config(network_retries)
    if disable_static_deltas and require_static_deltas:
        raise click.UsageError("--disable-static-deltas and --require-static-deltas are exclusive")
    if disable_static_deltas or require_static_deltas:
        mode = StaticDeltas.DISABLE if disable_static_deltas else StaticDeltas.REQUIRE
        cfg = dataclasses.replace(cfg, static_deltas=mode)
    headers = [kv_option(h, "--http-header") for h in http_headers]
    from bootree.pull.cookies import cookie_header

    cookies = cookie_header(repo, remote, rem.url)
    if cookies:
        headers.append(("Cookie", cookies))
    if headers:
        cfg = dataclasses.replace(cfg, fetch=dataclasses.replace(cfg.fetch, headers=tuple(headers)))
    if append_user_agent:
        agent = f"{cfg.fetch.user_agent} {append_user_agent}"
        cfg = dataclasses.replace(cfg, fetch=dataclasses.replace(cfg.fetch, user_agent=agent))
    with _progress() as display:
        result = pull(
            repo,
            rem,
            wanted,
            config=cfg,
            depth=depth,
            commit_metadata_only=commit_metadata_only,
            mirror=mirror,
            dry_run=dry_run,
            progress=display,
            allow_downgrade=allow_downgrade,
            subpaths=subpaths,
            localcache=localcache,
            bareuseronly_files=bareuseronly_files,
            cache_dir=cache_dir,
            verify_bindings=not disable_verify_bindings,
        )
    _emit(result, as_json)


def _emit(result: PullResult, as_json: bool, *, local: bool = False) -> None:
    if as_json:
        print_json(
            {
                "refs": dict(result.refs),
                "metadata_fetched": result.metadata_fetched,
                "content_fetched": result.content_fetched,
                "bytes": result.bytes_fetched,
                "requests": result.requests,
                "seconds": round(result.seconds, 3),
                "dry_run": result.dry_run,
            }
        )
    else:
        _report(result, local=local)


class _BareGpgVerify(click.Command):
    """``--gpg-verify`` as ostree's pull-local reads it: a flag (``--gpg-verify SOURCE`` must not
    take SOURCE as its value), or ``--gpg-verify=BOOL``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, ["--gpg-verify=true" if a == "--gpg-verify" else a for a in args])


@cli.command("pull-local", cls=_BareGpgVerify)
@repo_option
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.argument("refs", nargs=-1)
@click.option("--remote", help="Write refs as REMOTE:REF instead of local branches.")
@click.option("--commit-metadata-only", is_flag=True, help="Fetch only the commit metadata.")
@click.option("--depth", type=int, default=0, show_default=True, help="Traverse DEPTH parents (-1=infinite).")
@click.option("--disable-fsync", is_flag=True, help="Do not invoke fsync().")
@click.option("--untrusted", is_flag=True, help="Verify checksums of the source (bootree always does).")
@click.option("--dry-run", is_flag=True, help="Only print what would be copied.")
@click.option("--gpg-verify", "gpg_verify", is_flag=False, flag_value="true", default=None, metavar="[=BOOL]",
              help="Require GPG signatures trusted for --remote on every commit.")
@click.option("--gpg-verify-summary", is_flag=True,
              help="Require the source's summary to be signed by a GPG key trusted for --remote.")
@click.option("--require-static-deltas", is_flag=True, help="Use the source's static deltas; fail if there is none.")
@click.option("--disable-verify-bindings", is_flag=True, help="Do not check the commits' ref and collection bindings.")
@json_option
@click.pass_context
def pull_local_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    source: Path,
    refs: tuple[str, ...],
    remote: str | None,
    commit_metadata_only: bool,
    depth: int,
    disable_fsync: bool,
    untrusted: bool,
    dry_run: bool,
    gpg_verify: str | None,
    gpg_verify_summary: bool,
    require_static_deltas: bool,
    disable_verify_bindings: bool,
    as_json: bool,
) -> None:
    """Copy REFS (default: all branches) from the repository at SOURCE, verifying every object."""
    from bootree.format.keyfile import parse_bool

    repo = open_repo(ctx, repo_path, fsync=False if disable_fsync else None)
    cfg = _pull_config(None)
    if require_static_deltas:
        cfg = dataclasses.replace(cfg, static_deltas=StaticDeltas.REQUIRE)
    policy = None
    verify_commits = gpg_verify is not None and parse_bool(gpg_verify)
    if verify_commits or gpg_verify_summary:
        if remote is None:
            raise click.UsageError("--gpg-verify and --gpg-verify-summary need --remote=REMOTE (whose keys to trust)")
        from bootree.pull.trust import policy_for_remote

        policy = policy_for_remote(repo.path, find_remote(repo.path, repo.config, remote))
        policy.gpg_verify = verify_commits
        policy.gpg_verify_summary = gpg_verify_summary
    try:
        with _progress() as display:
            result = pull_local(
                repo,
                source,
                list(refs),
                remote=remote,
                config=cfg,
                depth=depth,
                commit_metadata_only=commit_metadata_only,
                dry_run=dry_run,
                progress=display,
                policy=policy,
                verify_bindings=not disable_verify_bindings,
            )
    finally:
        if policy is not None:
            policy.close()
    _emit(result, as_json, local=True)


# --- serve ----------------------------------------------------------------------------------------


@cli.command("serve")
@repo_option
@click.option("--port", "-p", type=int, default=8080, show_default=True, help="TCP port (0 = any free port).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--update-summary", "regenerate", is_flag=True, help="Regenerate the summary before serving.")
@click.pass_context
def serve_cmd(ctx: click.Context, repo_path: Path | None, port: int, address: str, regenerate: bool) -> None:
    """Serve an archive repository over HTTP (static files with Range support; use nginx in production)."""
    from bootree.transport.server import StaticServer  # http.server is slow to import: only here

    repo = open_repo(ctx, repo_path)
    if regenerate:
        update_summary(repo)
    if repo.mode.value != "archive":
        click.echo(
            f"warning: {repo.path} is a {repo.mode.value} repository; clients can only pull from archive repositories",
            err=True,
        )
    server = StaticServer(repo.path, host=address, port=port)
    click.echo(f"serving {repo.path} at {server.url}/ (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    finally:
        server.stop()

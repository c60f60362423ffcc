"""Shared pieces of the command-line interface: options, repo opening, output.

Layer: cli. Every command module imports from here so that ``--repo``, ``--json`` and the
progress display look and behave the same in every command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from bootree.repo import Repo

F = TypeVar("F", bound=Callable[..., Any])

_consoles: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``console`` (stdout) and ``err_console`` (stderr), created on first use.

    rich takes tens of milliseconds to import; commands that print plain lines never pay it.
    Human output goes to stdout; progress and diagnostics to stderr so that pipes stay clean.
    """
    if name in ("console", "err_console"):
        if name not in _consoles:
            from rich.console import Console

            _consoles["console"] = Console(highlight=False, soft_wrap=True)
            _consoles["err_console"] = Console(stderr=True, highlight=False)
        return _consoles[name]
    raise AttributeError(name)


def repo_option(func: F) -> F:
    """Add ``--repo=PATH`` to a command (ostree accepts it after the command name too)."""
    return click.option(
        "--repo",
        "repo_path",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Path to the repository (default: the current directory if it is one, $OSTREE_REPO, then $OSTREE_SYSROOT/ostree/repo).",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json`` to a read command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def repo_path_from(ctx: click.Context, repo_path: Path | None) -> Path:
    """Resolve the repository path: the command's ``--repo``, the global one, then ostree's defaults."""
    if repo_path is not None:
        return repo_path
    obj = ctx.find_root().obj or {}
    if obj.get("repo") is not None:
        return Path(obj["repo"])
    return default_repo_path()


def default_repo_path() -> Path:
    """ostree's default repository: the current directory if it is one, then ``$OSTREE_REPO``,
    then the system repository ``$OSTREE_SYSROOT/ostree/repo`` (``/ostree/repo``).

    Raises:
        click.UsageError: when none of them is given or exists.
    """
    if os.path.isdir("objects") and os.path.isfile("config"):
        return Path(".")
    env = os.environ.get("OSTREE_REPO")
    if env:
        return Path(env)
    sysroot = os.environ.get("OSTREE_SYSROOT")
    system = Path(sysroot or "/") / "ostree" / "repo"
    if sysroot or system.is_dir():
        return system
    raise click.UsageError("no repository given: use --repo=PATH or set OSTREE_REPO")


def open_repo(ctx: click.Context, repo_path: Path | None, *, fsync: bool | None = None) -> Repo:
    """Open the repository the command line names (see :func:`repo_path_from`).

    ``fsync`` (``None``: the repository's ``core.fsync``) is passed to :meth:`Repo.open`.

    Raises:
        RepoNotFound: when there is no repository there.
    """
    from bootree.repo import Repo

    return Repo.open(repo_path_from(ctx, repo_path), fsync=fsync)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (the shared renderer's, :mod:`bootree.cli.render`)."""
    from bootree.cli.render import print_json as render_json

    render_json(value)


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal (never in pipes, logs or CI)."""
    if os.environ.get("BOOTREE_NO_PROGRESS") or not sys.stderr.isatty():
        return False  # decided without importing rich (tens of milliseconds)
    return bool(__getattr__("err_console").is_terminal)


class ProgressHandle:
    """One task of a rich progress bar; ``update`` takes completed/total/description."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task

    def update(self, **fields: Any) -> None:
        """Update the task (``completed=``, ``total=``, ``description=``, ``advance=``)."""
        self.progress.update(self.task, **fields)


class _NoProgress(ProgressHandle):
    def __init__(self) -> None:
        super().__init__(None, None)

    def update(self, **fields: Any) -> None:
        pass


_NO_PROGRESS = _NoProgress()


@contextmanager
def progress_bar(description: str, *, total: int | None = None, bytes_mode: bool = False) -> Iterator[ProgressHandle]:
    """A rich progress bar on stderr, disabled when stderr is not a terminal."""
    if not progress_enabled():
        yield _NO_PROGRESS
        return
    # Imported here: rich.progress is slow to import and most commands finish without it.
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
    columns.append(DownloadColumn() if bytes_mode else MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=__getattr__("err_console"), transient=True) as prog:
        yield ProgressHandle(prog, prog.add_task(description, total=total))

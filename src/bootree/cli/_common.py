"""Shared pieces of the command-line interface: options, repo opening, output.

Layer: cli. Every command module imports from here so that ``--repo``, ``--json`` and the
progress display look and behave the same in every command.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bootree.errors import GVariantError

if TYPE_CHECKING:
    from bootree.format.gvariant import Variant
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
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
    columns.append(DownloadColumn() if bytes_mode else MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    with live_progress(*columns, console=__getattr__("err_console"), transient=True) as prog:
        yield ProgressHandle(prog, prog.add_task(description, total=total))


@contextmanager
def live_progress(*columns: Any, **options: Any) -> Iterator[Any]:
    """A started ``rich.progress.Progress`` whose refresh thread has ended when this returns.

    Why: rich stops its refresh thread (a daemon) by setting an event and does not wait for it.
    If the command then exits, the interpreter's shutdown can catch that thread between two
    steps, and CPython ends it with ``pthread_exit``, which aborts the process (rc 134) on a
    system image without ``libgcc_s``, after the work was done. Seen in the qemu boot chain.
    """
    from rich.progress import Progress

    prog = Progress(*columns, **options)
    with prog:
        refresher = getattr(prog.live, "_refresh_thread", None)
        yield prog
    if refresher is not None:
        refresher.join(timeout=5)


def parse_timestamp(value: str, *, signed: bool = False) -> int:
    """Parse ``@SECONDS`` or an ISO 8601 date (UTC unless it carries an offset).

    ``signed``: a date before 1970 is a negative number (ostree's ``parse_datetime`` reads
    them; its commit stores one as the uint64 the bits make, which the caller does).

    Raises:
        click.BadParameter: for anything else.
    """
    if value.startswith("@"):
        try:
            seconds = int(value[1:])
        except ValueError:
            raise click.BadParameter(f"invalid timestamp {value!r}") from None
        low = -(2**63) if signed else 0
        if not low <= seconds < 2**64:  # a commit's timestamp is a uint64
            raise click.BadParameter(f"timestamp {value!r} is out of range")
        return seconds
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        when = None
    # The other forms ostree's scripts use (it reads dates as GNU date does): "2005-10-29
    # 12:43:29 +0000", "October 25 1985", "1 week ago".
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S %z", "%B %d %Y", "%b %d %Y", "%d %B %Y"):
        if when is None:
            with contextlib.suppress(ValueError):
                when = dt.datetime.strptime(value, fmt)
    if when is None:
        when = _relative_date(value)
    if when is None:
        raise click.BadParameter(f"invalid timestamp {value!r}: use @SECONDS or an ISO 8601 date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when.timestamp() < 0 and not signed:
        raise click.BadParameter(f"timestamp {value!r} is before 1970")
    return int(when.timestamp())


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400,
          "year": 365 * 86400}


def _relative_date(value: str) -> dt.datetime | None:
    """``N UNIT[s] ago`` (GNU date's relative form; a month is 30 days, a year 365), else ``None``."""
    words = value.lower().split()
    if len(words) != 3 or words[2] != "ago" or not words[0].isdigit():
        return None
    unit = _UNITS.get(words[1].removesuffix("s"))
    if unit is None:
        return None
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(words[0]) * unit)


def parse_gvariant_text(text: str) -> Variant:
    """Parse ``--add-metadata`` VALUE as GVariant text, as ostree does (``commit`` and ``summary``).

    Raises:
        click.BadParameter: for text that is not a GVariant value (see :mod:`bootree.format.gvtext`).
    """
    from bootree.format.gvtext import parse_text

    try:
        return parse_text(text)
    except GVariantError as e:
        raise click.BadParameter(str(e)) from None


def kv_option(value: str, option: str) -> tuple[str, str]:
    """``--set``, ``--http-header``, ``summary --add-metadata``: ``KEY=VALUE`` split once."""
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
    return key, val


def split_kv(value: str, option: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{option} expects KEY=VALUE, got {value!r}")
    return key, val


def format_size(n: int) -> str:
    """A byte count as GLib's ``g_format_size`` writes it (ostree's messages): 260 bytes, 1.2 kB."""
    if n < 1000:
        return "1 byte" if n == 1 else f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000 or unit == "PB":
            break
    return f"{value:.1f}\u00a0{unit}"  # GLib separates a unit with a no-break space

"""bootree's command-line interface: parse arguments, call the library, render the result.

Layer: cli, the top. Nothing in bootree imports this package. Each command group lives in its
own module (``repo_cmds``, ``admin_cmds``, ``remote_cmds``, ...) and registers itself on
:data:`cli` when imported; :func:`main` maps errors to exit codes:

* 0 success; 1 a :class:`~bootree.errors.BootreeError` (one line ``error: ...``, plus a hint);
* 2 usage errors (click's own); 130 interrupted.

Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from bootree import __version__
from bootree.errors import BootreeError

#: Modules that add commands to :data:`cli`, imported in this order by :func:`main`.
_COMMAND_MODULES = [
    "bootree.cli.repo_cmds",
    "bootree.cli.admin_cmds",
    "bootree.cli.remote_cmds",
    "bootree.cli.install_cmds",
    "bootree.cli.bootc_cmds",
    "bootree.cli.composefs_cmds",
    "bootree.cli.delta_cmds",
    "bootree.cli.sign_cmds",
]


#: Which module defines each top-level command, so that a command imports only its own layer
#: (``bootree init`` need not import the HTTP stack). Commands missing here are still found:
#: an unknown name loads every module in :data:`_COMMAND_MODULES`.
_COMMAND_HOME = {
    **dict.fromkeys(
        ["init", "commit", "checkout", "refs", "rev-parse", "log", "show", "ls", "cat", "diff", "fsck", "prune"],
        "bootree.cli.repo_cmds",
    ),
    "admin": "bootree.cli.admin_cmds",
    **dict.fromkeys(["remote", "summary", "pull", "pull-local", "serve"], "bootree.cli.remote_cmds"),
    **dict.fromkeys(["install", "health"], "bootree.cli.install_cmds"),
    **dict.fromkeys(["switch", "upgrade", "update", "rollback", "status"], "bootree.cli.bootc_cmds"),
    "composefs": "bootree.cli.composefs_cmds",
    "static-delta": "bootree.cli.delta_cmds",
    **dict.fromkeys(["sign", "gpg-sign", "sign-keygen"], "bootree.cli.sign_cmds"),
}


class _LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        home = _COMMAND_HOME.get(cmd_name)
        if home is not None and home in _COMMAND_MODULES:
            importlib.import_module(home)
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None:
            _load_commands()
            cmd = super().get_command(ctx, cmd_name)
        return cmd


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bootree")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Path to the repository, for every command that takes one (as ostree's --repo).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, debug: bool) -> None:
    """bootree: image-based OS updates, compatible with OSTree repositories and sysroots.

    Repository commands follow ostree's names and options (init, commit, checkout, log, show,
    ls, cat, diff, refs, rev-parse, fsck, prune, ...). Deployment commands live under
    'bootree admin'. Run 'bootree COMMAND --help' for each command's manual.
    """
    ctx.ensure_object(dict)
    ctx.obj["repo"] = repo
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(name)s: %(message)s")


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        # With standalone_mode=False click returns ctx.exit()'s code instead of raising it.
        rc = cli.main(args=args, prog_name="bootree", standalone_mode=False)
        if isinstance(rc, int):
            return rc
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except BootreeError as e:
        if debug:
            raise
        click.echo(f"error: {e.message}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        # The system said no (a full disk, a read-only file system, permissions) somewhere no
        # typed error was raised for it: still one line, naming the file.
        if debug:
            raise
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"error: {e.strerror or e}{where}", err=True)
        return 1
    return 0

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
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from bootree import __version__
from bootree.errors import BootreeError

#: Modules that add commands to :data:`cli`, imported in this order by :func:`main`.
_COMMAND_MODULES = [
    "bootree.cli.repo_cmds",
    "bootree.cli.refs_cmds",
    "bootree.cli.show_cmds",
    "bootree.cli.maint_cmds",
    "bootree.cli.admin_cmds",
    "bootree.cli.remote_cmds",
    "bootree.cli.pull_cmds",
    "bootree.cli.finder_cmds",
    "bootree.cli.install_cmds",
    "bootree.cli.bootc_cmds",
    "bootree.cli.config_cmds",
    "bootree.cli.composefs_cmds",
    "bootree.cli.delta_cmds",
    "bootree.cli.sign_cmds",
    "bootree.cli.container_cmds",
]


#: Which module defines each top-level command, so that a command imports only its own layer
#: (``bootree init`` need not import the HTTP stack). Commands missing here are still found:
#: an unknown name loads every module in :data:`_COMMAND_MODULES`.
_COMMAND_HOME = {
    **dict.fromkeys(["init", "commit", "checkout"], "bootree.cli.repo_cmds"),
    **dict.fromkeys(["refs", "rev-parse"], "bootree.cli.refs_cmds"),
    **dict.fromkeys(["log", "show", "ls", "cat", "diff", "export"], "bootree.cli.show_cmds"),
    **dict.fromkeys(["fsck", "prune"], "bootree.cli.maint_cmds"),
    "admin": "bootree.cli.admin_cmds",
    **dict.fromkeys(["remote", "summary"], "bootree.cli.remote_cmds"),
    **dict.fromkeys(["pull", "pull-local", "serve"], "bootree.cli.pull_cmds"),
    "find-remotes": "bootree.cli.finder_cmds",
    **dict.fromkeys(["install", "health"], "bootree.cli.install_cmds"),
    **dict.fromkeys(["switch", "upgrade", "update", "rollback", "status"], "bootree.cli.bootc_cmds"),
    **dict.fromkeys(["config", "reset", "checksum"], "bootree.cli.config_cmds"),
    "composefs": "bootree.cli.composefs_cmds",
    "static-delta": "bootree.cli.delta_cmds",
    **dict.fromkeys(["sign", "gpg-sign", "sign-keygen"], "bootree.cli.sign_cmds"),
    "container": "bootree.cli.container_cmds",
}


class OstreeCommand(click.Command):
    """A command that also takes ostree's common ``-v``/``--verbose`` (debug logging).

    Commands with a ``-v`` of their own (``summary -v`` is ``--view``) keep theirs.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        own = {o for p in self.params for o in getattr(p, "opts", [])}
        verbose = [a for a in args if a in ("-v", "--verbose") and a not in own]
        if verbose:
            end = args.index("--") if "--" in args else len(args)
            args = [a for i, a in enumerate(args) if i >= end or a in own or a not in ("-v", "--verbose")]
            logging.getLogger().setLevel(logging.DEBUG)
        return super().parse_args(ctx, args)


class OstreeGroup(click.Group):
    """A command group whose help and errors read as ostree's, which scripts parse.

    The help lists subcommands under ``Builtin Commands:``; a missing subcommand fails with
    ``No command specified`` and an unknown one with ``Unknown command``, each after the
    usage line on stderr. Subgroups (``admin``, ``remote``, ...) get this class too.
    """

    group_class: type[click.Group] | type[type] = type
    command_class = OstreeCommand

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = [(n, c) for n in self.list_commands(ctx) if (c := self.get_command(ctx, n)) is not None and not c.hidden]
        if not commands:
            return
        with formatter.section("Builtin Commands"):
            # One line per command (scripts take each line's first word as a command name).
            first = min(max(len(n) for n, _ in commands), 30) + 2
            limit = max(formatter.width - formatter.current_indent - first - 2, 10)
            formatter.write_dl([(n, c.get_short_help_str(limit=limit)) for n, c in commands])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            raise click.UsageError("No command specified", ctx)
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand:
            raise click.UsageError(f"Unknown command '{args[0]}'", ctx) from None


class _LazyGroup(OstreeGroup):
    """A click group that imports a command's module only when that command is used.

    An unknown ``NAME`` runs ``ostree-NAME`` from PATH, as ostree does for its extensions.
    """

    group_class: type[click.Group] | type[type] = OstreeGroup

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import shutil

            external = shutil.which(f"ostree-{name}")
            if external is not None:
                os.execv(external, [external, *args[1:]])
        return super().resolve_command(ctx, args)

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


#: The libostree release whose command line (and installed test suite) bootree follows.
OSTREE_COMPAT_VERSION = "2022.7"

#: The ``Features:`` that ``--version`` lists, as libostree names them. Scripts (ostree's own
#: tests among them) enable or skip whole areas by this list, so it names only what bootree
#: really implements; a feature is added here in the change that implements it.
FEATURES: list[str] = ["gpgme", "libarchive"]


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version`` as ostree prints it: YAML that scripts grep for ``- FEATURE`` lines."""
    if not value or ctx.resilient_parsing:
        return
    lines = ["libostree:", f" Version: '{OSTREE_COMPAT_VERSION}'", f" Implementation: bootree {__version__}"]
    lines.append(" Features:")
    lines.extend(f"  - {name}" for name in FEATURES)
    click.echo("\n".join(lines))
    ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print version information (libostree-compatible YAML with the feature list) and exit.",
)
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


def prog_name() -> str:
    """``ostree`` when started under that name (a link named ostree), else ``bootree``.

    ostree's scripts check that usage texts name the command they ran (``ostree admin``).
    """
    return "ostree" if os.path.basename(sys.argv[0]) == "ostree" else "bootree"


#: Options of the top-level group; any other option before the command name is the command's.
_GLOBAL_OPTIONS = {"--repo", "--debug", "--version", "--help", "-h"}


def ostree_argv(args: list[str]) -> list[str]:
    """Move command options given before the command name after it, as ostree accepts them
    anywhere (``ostree --repo=R --print-metadata-key=K show REV``).

    Only ``--name=value`` and flag forms move; ``--repo PATH`` keeps its value.
    """
    lead: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        lead.append(args[i])
        if args[i] == "--repo" and i + 1 < len(args):
            lead.append(args[i + 1])
            i += 1
        i += 1
    if i >= len(args) or not lead:
        return args
    keep: list[str] = []
    move: list[str] = []
    j = 0
    while j < len(lead):
        name = lead[j].split("=", 1)[0]
        if name == "--repo" and "=" not in lead[j]:
            keep.extend(lead[j : j + 2])
            j += 2
            continue
        (keep if name in _GLOBAL_OPTIONS else move).append(lead[j])
        j += 1
    return [*keep, args[i], *move, *args[i + 1 :]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    args = ostree_argv(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    try:
        # With standalone_mode=False click returns ctx.exit()'s code instead of raising it.
        rc = cli.main(args=args, prog_name=prog_name(), standalone_mode=False)
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

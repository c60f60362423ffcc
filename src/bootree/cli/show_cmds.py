"""Commands that read commits and trees, as ostree's: log, show, ls, cat, diff.

Layer: cli: parse, call :mod:`bootree.repo`, render (ostree's text or ``--json``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bootree.cli import cli
from bootree.cli._common import (
    json_option,
    open_repo,
    repo_option,
)
from bootree.cli.render import emit
from bootree.errors import ObjectMissing, RepoError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, ObjectType
from bootree.repo import Repo
from bootree.repo.modes import RepoMode


def _variant_json(v: Any) -> Any:
    if isinstance(v, Variant):
        return _variant_json(v.value)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_variant_json(x) for x in v]
    return v


def _commit_json(csum: Checksum, c: Commit) -> dict[str, Any]:
    return {
        "checksum": csum,
        "parent": c.parent,
        "subject": c.subject,
        "body": c.body,
        "timestamp": c.timestamp,
        "date": _date(c.timestamp),
        "version": c.version,
        "content_checksum": c.content_checksum,
        "root_tree": c.root_tree,
        "root_meta": c.root_meta,
        "metadata": {k: _variant_json(v) for k, v in c.metadata},
    }


def _date(ts: int) -> str:
    """A commit's time as ostree prints it: the uint64 read as a signed time (a commit made
    with a date before 1970 holds its two's complement), out-of-range values as seconds."""
    signed = ts - 2**64 if ts >= 2**63 else ts
    try:
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=signed)
    except OverflowError:
        return f"@{signed}"
    return when.strftime("%Y-%m-%d %H:%M:%S +0000")


@dataclass(frozen=True, slots=True)
class _CommitView:
    """A commit as ``log`` and ``show`` render it (its JSON adds the date and the version)."""

    csum: Checksum
    commit: Commit

    def to_json(self) -> dict[str, Any]:
        return _commit_json(self.csum, self.commit)


@dataclass(frozen=True, slots=True)
class _History:
    """``log``: the commits found, newest first, and whether older ones are not in the repo."""

    commits: tuple[_CommitView, ...]
    truncated: bool

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.commits]


def _history_lines(h: _History) -> list[str]:
    lines = [line for view in h.commits for line in _commit_lines(view)]
    if h.truncated:
        lines.append("<< History beyond this commit not fetched >>")
    return lines


def _commit_lines(view: _CommitView) -> list[str]:
    csum, c = view.csum, view.commit
    lines = [f"commit {csum}"]
    if c.parent:
        lines.append(f"Parent:  {c.parent}")
    lines.append(f"ContentChecksum:  {c.content_checksum}")
    lines.append(f"Date:  {_date(c.timestamp)}")
    if c.version:
        lines.append(f"Version: {c.version}")
    lines.append("")
    lines.append(f"    {c.subject}")
    lines.append("")
    if c.body:
        lines.extend(f"    {line}" for line in c.body.splitlines())
        lines.append("")
    return lines




@cli.command("log")
@repo_option
@click.argument("rev")
@json_option
@click.pass_context
def log_cmd(ctx: click.Context, repo_path: Path | None, rev: str, as_json: bool) -> None:
    """Show the history of a ref or commit, newest first, as far as parents are present."""
    repo = open_repo(ctx, repo_path)
    csum: Checksum | None = repo.resolve_rev(rev)
    commits: list[_CommitView] = []
    truncated = False
    while csum is not None:
        if not repo.has_object(ObjectType.COMMIT, csum):
            if not commits:  # the commit asked for is not there: an error, as ostree's (exit 1)
                raise ObjectMissing(csum, "commit")
            truncated = True
            break
        c = repo.read_commit(csum)
        commits.append(_CommitView(csum, c))
        csum = c.parent
    emit(_History(tuple(commits), truncated), as_json=as_json, text=_history_lines)


@cli.command("show")
@repo_option
@click.argument("rev")
@click.option("--print-metadata-key", "key", help="Print only the value of this metadata key.")
@click.option("--print-sizes", is_flag=True, help="Print the sizes the commit records (ostree.sizes) and how much is still needed.")
@click.option("--raw", is_flag=True, help="Print the commit object as GVariant text (byte-swapped, as ostree's --raw).")
@click.option("--print-detached-metadata-key", "detached_key", help="Print only the value of this detached metadata key.")
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), help="Check GPG signatures with the keyrings in DIR.")
@click.option("--gpg-verify-remote", metavar="REMOTE", help="Check GPG signatures with REMOTE's trusted keys.")
@json_option
@click.pass_context
def show_cmd(
    ctx: click.Context, repo_path: Path | None, rev: str, key: str | None, print_sizes: bool, raw: bool,
    detached_key: str | None,
    gpg_homedir: Path | None, gpg_verify_remote: str | None, as_json: bool,
) -> None:
    """Show one commit: checksum, parent, content checksum, date, version, subject and body.

    A commit with GPG signatures is followed by their report, as ostree show prints it.
    """
    repo = open_repo(ctx, repo_path)
    csum = repo.resolve_rev(rev)
    c = repo.read_commit(csum)
    if print_sizes:
        from bootree.cli._common import format_size
        from bootree.repo.sizes import sizes_report

        report = sizes_report(c, repo.has_object)
        if report is None:
            raise RepoError(f"Commit {csum} has no ostree.sizes metadata (commit with --generate-sizes)")
        r = report
        lines = [
            f"Compressed size (needed/total): {format_size(r.archived_needed)}/{format_size(r.archived_total)}",
            f"Unpacked size (needed/total): {format_size(r.unpacked_needed)}/{format_size(r.unpacked_total)}",
            f"Number of objects (needed/total): {r.objects_needed}/{r.objects_total}",
        ]
        emit(dataclasses.asdict(r), as_json=as_json, text=lambda _v: lines)
        return
    if raw and key is None and not as_json:
        from bootree.format.gvariant import decode
        from bootree.format.gvtext import byteswap, print_text
        from bootree.format.objects import COMMIT_TYPE

        value = decode(COMMIT_TYPE, repo.load_metadata(ObjectType.COMMIT, csum))
        click.echo(f"commit {csum}")
        click.echo(print_text(COMMIT_TYPE, byteswap(COMMIT_TYPE, value), annotate=True))
        return
    if detached_key is not None:
        from bootree.sign import detached

        entries = detached.decode(repo.read_commitmeta(csum))
        value = next((v for k, v in entries if k == detached_key), None)
        if value is None:
            raise RepoError(f"no such detached metadata key {detached_key!r} in commit {csum}")
        _emit_variant(value, as_json)
        return
    if key is None and not as_json:
        emit(_CommitView(csum, c), as_json=False, text=_commit_lines)
        _print_signatures(repo, csum, gpg_homedir, gpg_verify_remote)
        return
    if key is not None:
        found = next((v for k, v in c.metadata if k == key), None)
        if found is None:
            raise RepoError(f"no such metadata key {key!r} in commit {csum}")
        _emit_variant(found, as_json)
        return
    emit(_CommitView(csum, c), as_json=as_json, text=_commit_lines)


def _emit_variant(value: Variant, as_json: bool) -> None:
    """One metadata value: GVariant text as ostree prints it (byte-swapped, its convention for
    metadata numbers, and type-annotated); JSON through the one renderer, unswapped."""
    from bootree.format.gvtext import byteswap, print_text

    shown = byteswap(value.type, value.value) if sys.byteorder == "little" else value.value
    emit(_variant_json(value), as_json=as_json, text=lambda _x: [print_text(value.type, shown, annotate=True)])


def _print_signatures(repo: Repo, csum: Checksum, homedir: Path | None, remote: str | None) -> None:
    from bootree.cli.sign_cmds import gpg_block, show_gpg_verifier
    from bootree.sign import detached

    sigs = detached.signatures(detached.decode(repo.read_commitmeta(csum)), detached.GPG_KEY)
    if not sigs:
        return
    data = repo.load_metadata(ObjectType.COMMIT, csum)
    with show_gpg_verifier(repo, homedir, remote) as verifier:
        lines = gpg_block(verifier.verify(data, sigs))
    click.echo()
    for line in lines:
        click.echo(line)


def _mode_char(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "-"


@cli.command("ls")
@repo_option
@click.argument("rev")
@click.argument("paths", nargs=-1)
@click.option("-R", "--recursive", is_flag=True, help="Recurse into directories.")
@click.option("-C", "--checksum", "show_checksum", is_flag=True, help="Show object checksums.")
@click.option("-d", "--dironly", is_flag=True, help="List the directory itself, not its contents.")
@json_option
@click.pass_context
def ls_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    rev: str,
    paths: tuple[str, ...],
    recursive: bool,
    show_checksum: bool,
    dironly: bool,
    as_json: bool,
) -> None:
    """List the files of a commit, with mode, owner and size, as ``ostree ls``."""
    repo = open_repo(ctx, repo_path)
    csum = repo.resolve_rev(rev)
    rows: list[dict[str, Any]] = []
    for base in paths or ("/",):
        base_depth = len([p for p in base.split("/") if p])
        for path, kind, obj, meta in repo.walk_tree(csum, base):
            depth = len([p for p in path.split("/") if p])
            if dironly and depth > base_depth:
                break
            if not recursive and depth > base_depth + 1:
                continue
            if kind == "d":
                assert meta is not None
                dm = repo.read_dirmeta(meta)
                rows.append({"path": path, "type": "dir", "mode": dm.mode, "uid": dm.uid, "gid": dm.gid,
                             "size": 0, "dirtree": obj, "dirmeta": meta})
            else:
                try:
                    content = repo.open_file(obj)
                except ObjectMissing:  # ostree's words (e.g. outside a partial commit's --subpath)
                    raise RepoError(f"Couldn't find file object '{obj}'") from None
                with content:
                    header, size = content.header, content.size if content.stream is not None else 0
                row = {"path": path, "type": "symlink" if header.is_symlink else "file", "mode": header.mode,
                       "uid": header.uid, "gid": header.gid, "size": size, "checksum": obj}
                if header.is_symlink:
                    row["target"] = header.symlink_target
                rows.append(row)
    emit(rows, as_json=as_json, text=lambda rs: [_ls_line(r, show_checksum) for r in rs])


def _ls_line(r: dict[str, Any], show_checksum: bool) -> str:
    prefix = f"{_mode_char(r['mode'])}0{r['mode'] & 0o7777:04o} {r['uid']} {r['gid']} {r['size']:6d} "
    if show_checksum:
        prefix += f"{r['dirtree']} {r['dirmeta']} " if r["type"] == "dir" else f"{r['checksum']} "
    line: str = prefix + r["path"]
    if r["type"] == "symlink":
        line += f" -> {r['target']}"
    return line


@cli.command("cat")
@repo_option
@click.argument("rev")
@click.argument("paths", nargs=-1, required=True)
@click.pass_context
def cat_cmd(ctx: click.Context, repo_path: Path | None, rev: str, paths: tuple[str, ...]) -> None:
    """Write the contents of files in a commit to standard output."""
    repo = open_repo(ctx, repo_path)
    csum = repo.resolve_rev(rev)
    out = sys.stdout.buffer
    for p in paths:
        entries = list(repo.walk_tree(csum, p))
        if not entries or entries[0][1] != "f":
            raise RepoError(f"{p}: not a regular file in {rev}")
        content = repo.open_file(entries[0][2])
        if content.stream is None:
            raise RepoError(f"{p}: is a symlink to {content.header.symlink_target}")
        with content.stream as stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    out.flush()


@cli.command("diff")
@repo_option
@click.argument("rev_a")
@click.argument("rev_b", required=False)
@click.option("--no-xattrs", is_flag=True, help="Leave extended attributes out of the comparison.")
@click.option("--owner-uid", type=int, help="Compare the files on disk of the second side as owned by UID.")
@click.option("--owner-gid", type=int, help="Compare the files on disk of the second side as owned by GID.")
@json_option
@click.pass_context
def diff_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    rev_a: str,
    rev_b: str | None,
    no_xattrs: bool,
    owner_uid: int | None,
    owner_gid: int | None,
    as_json: bool,
) -> None:
    """List files modified (M), deleted (D) and added (A) from REV_A to REV_B.

    Either side may be a directory on disk, named as ostree names one: a path starting with
    '/' or './'. With one argument, REV is compared with its parent (REV^).
    """
    from bootree.repo.diff import CommitSide, DiffOptions, DirSide, diff_trees

    repo = open_repo(ctx, repo_path)
    if rev_b is None:
        rev_a, rev_b = f"{rev_a}^", rev_a

    def side(arg: str) -> CommitSide | DirSide:
        if arg.startswith(("/", "./")):
            return DirSide(Path(arg))
        c = repo.read_commit(repo.resolve_rev(arg))
        return CommitSide(repo.reader, c.root_tree, c.root_meta)

    ignore = no_xattrs or repo.mode is RepoMode.BARE_USER_ONLY or repo.config.get_bool("core", "disable-xattrs", False)
    opts = DiffOptions(ignore_xattrs=ignore, owner_uid=owner_uid, owner_gid=owner_gid)
    entries = diff_trees(side(rev_a), side(rev_b), opts)
    emit(entries, as_json=as_json, text=lambda es: [f"{e.kind}    {e.path}" for e in es])




@cli.command("export")
@repo_option
@click.argument("rev")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the archive to FILE (default: standard output).")
@click.option("--subpath", default="/", metavar="PATH", help="Export only this directory of the commit.")
@click.option("--prefix", default="", metavar="PATH", help="Prepend PATH to every name in the archive (e.g. 'root/').")
@click.option("--no-xattrs", is_flag=True, help="Accepted for ostree: a GNU tar archive holds no extended attributes.")
@click.pass_context
def export_cmd(ctx: click.Context, repo_path: Path | None, rev: str, output: Path | None, subpath: str, prefix: str, no_xattrs: bool) -> None:
    """Write the tree of REV as a GNU tar archive, as ostree export does."""
    from bootree.repo.export import export_tar, export_tar_file

    repo = open_repo(ctx, repo_path)
    csum = repo.resolve_rev(rev)
    if output is None:
        export_tar(repo, csum, sys.stdout.buffer, subpath=subpath, prefix=prefix)
        sys.stdout.buffer.flush()
        return
    try:
        export_tar_file(repo, csum, output, subpath=subpath, prefix=prefix)
    except OSError as e:
        raise RepoError(f"{output}: {e.strerror or e}") from e

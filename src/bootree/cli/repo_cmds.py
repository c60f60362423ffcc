"""Repository commands, named and optioned as ostree's: init, commit, checkout, refs, log, show,
ls, cat, rev-parse, diff, fsck, prune.

Layer: cli. Each command parses its options, calls :mod:`bootree.repo`, and renders the result
(human text as ostree prints it, or ``--json``).
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import os
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
    progress_bar,
    repo_option,
    repo_path_from,
)
from bootree.cli.render import emit
from bootree.errors import ObjectMissing, RepoError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, ObjectType
from bootree.repo import CheckoutMode, CheckoutOptions, CommitOptions, Repo, RepoMode, SourceKind, TreeSource
from bootree.repo.checkout import links_files


def _resolve(repo: Repo, rev: str) -> Checksum:
    return repo.resolve_rev(rev)


def parse_timestamp(value: str) -> int:
    """Parse ``@SECONDS`` or an ISO 8601 date (UTC unless it carries an offset).

    Raises:
        click.BadParameter: for anything else.
    """
    if value.startswith("@"):
        try:
            seconds = int(value[1:])
        except ValueError:
            raise click.BadParameter(f"invalid timestamp {value!r}") from None
        if not 0 <= seconds < 2**64:  # a commit's timestamp is a uint64
            raise click.BadParameter(f"timestamp {value!r} is out of range")
        return seconds
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"invalid timestamp {value!r}: use @SECONDS or an ISO 8601 date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when.timestamp() < 0:
        raise click.BadParameter(f"timestamp {value!r} is before 1970")
    return int(when.timestamp())


_TYPED_PREFIXES = {
    "byte": "y", "int16": "n", "uint16": "q", "int32": "i", "uint32": "u",
    "int64": "x", "uint64": "t", "double": "d", "string": "s",
}


def parse_gvariant_text(text: str) -> Variant:
    """Parse the GVariant text forms people use with ``--add-metadata``.

    Supported: quoted strings, ``true``/``false``, integers (int32, as GLib), floats, lists of
    strings (``['a', 'b']``), and a type keyword prefix such as ``uint64 5`` or ``string x``.

    Raises:
        click.BadParameter: for other forms.
    """
    t = text.strip()
    word, _, rest = t.partition(" ")
    if word in _TYPED_PREFIXES and rest:
        code = _TYPED_PREFIXES[word]
        inner = parse_gvariant_text(rest)
        value = inner.value
        if code == "d":
            value = float(value)
        elif code == "s":
            value = str(value)
        return Variant(code, value)
    if t in ("true", "false"):
        return Variant("b", t == "true")
    try:
        lit = ast.literal_eval(t)
    except (ValueError, SyntaxError):
        raise click.BadParameter(f"unsupported GVariant text {text!r}") from None
    if isinstance(lit, bool):
        return Variant("b", lit)
    if isinstance(lit, int):
        return Variant("i", lit) if -(2**31) <= lit < 2**31 else Variant("x", lit)
    if isinstance(lit, float):
        return Variant("d", lit)
    if isinstance(lit, str):
        return Variant("s", lit)
    if isinstance(lit, list) and all(isinstance(x, str) for x in lit):
        return Variant("as", lit)
    raise click.BadParameter(f"unsupported GVariant text {text!r}")


def _split_kv(value: str, option: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{option} expects KEY=VALUE, got {value!r}")
    return key, val


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
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


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


# --- init ------------------------------------------------------------------------------------


@cli.command("init")
@repo_option
@click.option(
    "--mode",
    type=click.Choice(["bare", "bare-user", "bare-user-only", "archive", "archive-z2"]),
    default="bare",
    show_default=True,
    help="How content objects are stored: archive (compressed, servable over HTTP), bare (needs "
    "root), bare-user (metadata in xattrs) or bare-user-only (canonical permissions).",
)
@click.pass_context
def init_cmd(ctx: click.Context, repo_path: Path | None, mode: str) -> None:
    """Initialize a new empty repository.

    \b
    Example:
      bootree --repo=repo init --mode=archive
    """
    Repo.init(repo_path_from(ctx, repo_path), mode=RepoMode.parse(mode))


# --- commit ----------------------------------------------------------------------------------


@cli.command("commit")
@repo_option
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("-b", "--branch", help="Branch (ref) to point at the new commit.")
@click.option("-s", "--subject", default="", help="One line subject.")
@click.option("-m", "--body", default="", help="Full description.")
@click.option("-F", "--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Commit message body from FILE.")
@click.option("--parent", help='Parent commit checksum, or "none".')
@click.option("--orphan", is_flag=True, help="Create a commit without writing a ref.")
@click.option("--no-bindings", is_flag=True, help="Do not write the ostree.ref-binding metadata.")
@click.option("--tree", "trees", multiple=True, metavar="dir=PATH|tar=TARFILE|ref=COMMIT", help="Overlay the given tree (repeatable; later ones win).")
@click.option("--add-metadata-string", "meta_strings", multiple=True, metavar="KEY=VALUE", help="Add a string to the commit metadata.")
@click.option("--add-metadata", "meta_values", multiple=True, metavar="KEY=VALUE", help="Add metadata whose VALUE is GVariant text (e.g. true, 42, 'text', uint64 5).")
@click.option("--timestamp", help="Override the commit timestamp (@SECONDS or an ISO 8601 date).")
@click.option("--owner-uid", type=int, help="Set file ownership user id.")
@click.option("--owner-gid", type=int, help="Set file ownership group id.")
@click.option("--no-xattrs", is_flag=True, help="Do not import extended attributes.")
@click.option("--canonical-permissions", is_flag=True, help="uid/gid 0 and mode & 0755, as bare-user-only repositories store files.")
@click.option("--bootable", is_flag=True, help="Flag this commit as bootable (ostree.bootable metadata).")
@click.option("--skip-if-unchanged", is_flag=True, help="If the tree is the same as the parent's, do nothing.")
@click.option("--fsync", type=click.Choice(["true", "false"]), default=None, help="Whether to sync data to disk (default: the repo's core.fsync).")
@click.option(
    "--generate-composefs-metadata",
    "composefs_metadata",
    is_flag=True,
    help="Store the composefs image digest (ostree.composefs.digest.v0) in the commit metadata.",
)
@click.option("--sign", "sign_keys", multiple=True, metavar="KEYFILE", help="Sign the commit with the ed25519 secret key(s) in KEYFILE ('-': stdin).")
@click.option("--sign-type", default="ed25519", show_default=True, help="Signature type of --sign.")
@click.option("--gpg-sign", "gpg_keys", multiple=True, metavar="KEY-ID", help="GPG key ID to sign the commit with.")
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), help="GnuPG home of the signing keys.")
@click.pass_context
def commit_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    path: Path | None,
    branch: str | None,
    subject: str,
    body: str,
    body_file: Path | None,
    parent: str | None,
    orphan: bool,
    no_bindings: bool,
    trees: tuple[str, ...],
    meta_strings: tuple[str, ...],
    meta_values: tuple[str, ...],
    timestamp: str | None,
    owner_uid: int | None,
    owner_gid: int | None,
    no_xattrs: bool,
    canonical_permissions: bool,
    bootable: bool,
    skip_if_unchanged: bool,
    fsync: str | None,
    composefs_metadata: bool,
    sign_keys: tuple[str, ...],
    sign_type: str,
    gpg_keys: tuple[str, ...],
    gpg_homedir: Path | None,
) -> None:
    """Commit a directory tree or tar archive as a new revision, printing its checksum.

    Sources are PATH (a directory) and/or --tree options, overlaid in order. File contents are
    hashed first and only new objects are compressed and written, on all cores.

    \b
    Examples:
      bootree --repo=repo commit -b os/main -s "v1" --tree=dir=rootfs
      bootree --repo=repo commit -b os/main --tree=tar=rootfs.tar.gz --add-metadata-string=version=2
    """
    repo = open_repo(ctx, repo_path, fsync=None if fsync is None else fsync == "true")
    secret: list[Any] = []
    if sign_keys:
        from bootree.cli.sign_cmds import read_secret_keys

        if sign_type != "ed25519":
            raise click.UsageError(f"unknown signature type {sign_type!r}")
        secret = read_secret_keys(sign_keys, None)  # before committing: a bad key changes nothing
    sources: list[TreeSource | Path] = []
    if path is not None:
        sources.append(TreeSource(SourceKind.DIR, str(path)))
    sources.extend(TreeSource.parse(t) for t in trees)
    if not sources:
        raise click.UsageError("nothing to commit: give a PATH or --tree=dir=PATH")
    if not branch and not orphan:
        raise click.UsageError("a branch is required (-b BRANCH), or pass --orphan")
    if body_file is not None:
        try:
            body = body_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:  # a commit's body is a GVariant string: UTF-8
            raise click.BadParameter(f"{body_file}: not valid UTF-8 (byte {e.start})", param_hint="-F") from None
    metadata: list[tuple[str, Variant]] = []
    for item in meta_strings:
        k, v = _split_kv(item, "--add-metadata-string")
        metadata.append((k, Variant("s", v)))
    for item in meta_values:
        k, v = _split_kv(item, "--add-metadata")
        metadata.append((k, parse_gvariant_text(v)))
    if bootable:
        metadata.append(("ostree.bootable", Variant("b", True)))
    parent_arg: Any
    if parent is None:
        parent_arg = None if orphan and not branch else _UNSET
    elif parent == "none":
        parent_arg = None
    else:
        parent_arg = _resolve(repo, parent)
    options = CommitOptions(
        owner_uid=owner_uid, owner_gid=owner_gid, no_xattrs=no_xattrs, canonical_permissions=canonical_permissions
    )
    kwargs: dict[str, Any] = {}
    if parent_arg is not _UNSET:
        kwargs["parent"] = parent_arg
    if composefs_metadata:
        from bootree import composefs

        def composefs_digest(tree: Checksum, dmeta: Checksum) -> list[tuple[str, Variant]]:
            image = composefs.tree_image(repo, tree, dmeta, verity=composefs.Verity.YES)
            return [composefs.digest_metadata(image.digest)]

        kwargs["tree_metadata"] = composefs_digest
    with progress_bar("Committing", total=None) as prog:

        def on_progress(files: int, nbytes: int) -> None:
            prog.update(completed=files, description=f"Committing ({nbytes / 1e6:.0f} MB)")

        csum = repo.commit(
            sources,
            branch=None if orphan else branch,
            subject=subject,
            body=body,
            timestamp=parse_timestamp(timestamp) if timestamp else None,
            metadata=metadata,
            bindings=not no_bindings,
            options=options,
            skip_if_unchanged=skip_if_unchanged,
            progress=on_progress,
            **kwargs,
        )
    if secret or gpg_keys:
        from bootree.pull.publish import sign_commit

        sign_commit(repo, csum, ed25519_keys=secret, gpg_key_ids=gpg_keys, gpg_homedir=gpg_homedir)
    click.echo(csum)


class _UnsetArg:
    pass


_UNSET = _UnsetArg()


# --- checkout --------------------------------------------------------------------------------


@cli.command("checkout")
@repo_option
@click.argument("rev")
@click.argument("destination", required=False, type=click.Path(path_type=Path))
@click.option("-U", "--user-mode", is_flag=True, help="Do not change file ownership or set xattrs; drop setuid bits.")
@click.option("-H", "--require-hardlinks", is_flag=True, help="Fail unless the repository mode allows hardlinks.")
@click.option("-C", "--force-copy", is_flag=True, help="Never hardlink; always copy file contents.")
@click.option("--union", is_flag=True, help="Keep existing directories and overwrite existing files.")
@click.option("--subpath", help="Check out only this path of the commit.")
@click.pass_context
def checkout_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    rev: str,
    destination: Path | None,
    user_mode: bool,
    require_hardlinks: bool,
    force_copy: bool,
    union: bool,
    subpath: str | None,
) -> None:
    """Check out a commit into a directory (default: a directory named after REV).

    From bare-family repositories files are hardlinked to the objects, so a checkout costs only
    its directories; from archive repositories they are inflated in parallel.
    """
    repo = open_repo(ctx, repo_path)
    csum = _resolve(repo, rev)
    dest = destination if destination is not None else Path(rev.replace("/", "_").replace(":", "_"))
    mode = CheckoutMode.COPY if force_copy else CheckoutMode.HARDLINK
    # A hardlink checkout of a whole OS takes well under a second, and runs on two processes
    # only while no other thread (such as a progress bar's refresher) is alive: no bar for it.
    copies = not links_files(repo.mode, CheckoutOptions(mode=mode, user_mode=user_mode))
    with progress_bar("Checking out") if copies else contextlib.nullcontext():
        repo.checkout(
            csum, dest, mode=mode, user_mode=user_mode, union=union, subpath=subpath,
            require_hardlinks=require_hardlinks,
        )


# --- reading ---------------------------------------------------------------------------------


@cli.command("refs")
@repo_option
@click.argument("prefix", required=False)
@click.option("--delete", is_flag=True, help="Delete the refs matching PREFIX.")
@click.option("--create", metavar="NEWREF", help="Create NEWREF pointing at the commit PREFIX resolves to.")
@click.option("--remote", help="List only this remote's refs.")
@json_option
@click.pass_context
def refs_cmd(
    ctx: click.Context, repo_path: Path | None, prefix: str | None, delete: bool, create: str | None, remote: str | None, as_json: bool
) -> None:
    """List refs (remote ones as REMOTE:REF), or create or delete them."""
    repo = open_repo(ctx, repo_path)
    if create:
        if not prefix:
            raise click.UsageError("--create=NEWREF needs an existing ref or commit as argument")
        repo.set_ref(create, _resolve(repo, prefix), expected=None)
        return
    if delete:
        if not prefix:
            raise click.UsageError("--delete needs a PREFIX")
        repo.delete_refs(prefix, remote=remote)
        return
    emit(repo.list_refs(prefix, remote=remote), as_json=as_json, text=list)


@cli.command("rev-parse")
@repo_option
@click.argument("rev")
@json_option
@click.pass_context
def rev_parse_cmd(ctx: click.Context, repo_path: Path | None, rev: str, as_json: bool) -> None:
    """Print the commit checksum a ref, remote:ref, abbreviated checksum or REV^ resolves to."""
    csum = _resolve(open_repo(ctx, repo_path), rev)
    emit({"rev": rev, "checksum": csum}, as_json=as_json, text=lambda v: [v["checksum"]])


@cli.command("log")
@repo_option
@click.argument("rev")
@json_option
@click.pass_context
def log_cmd(ctx: click.Context, repo_path: Path | None, rev: str, as_json: bool) -> None:
    """Show the history of a ref or commit, newest first, as far as parents are present."""
    repo = open_repo(ctx, repo_path)
    csum: Checksum | None = _resolve(repo, rev)
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
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), help="Check GPG signatures with the keyrings in DIR.")
@click.option("--gpg-verify-remote", metavar="REMOTE", help="Check GPG signatures with REMOTE's trusted keys.")
@json_option
@click.pass_context
def show_cmd(
    ctx: click.Context, repo_path: Path | None, rev: str, key: str | None,
    gpg_homedir: Path | None, gpg_verify_remote: str | None, as_json: bool,
) -> None:
    """Show one commit: checksum, parent, content checksum, date, version, subject and body.

    A commit with GPG signatures is followed by their report, as ostree show prints it.
    """
    repo = open_repo(ctx, repo_path)
    csum = _resolve(repo, rev)
    c = repo.read_commit(csum)
    if key is None and not as_json:
        emit(_CommitView(csum, c), as_json=False, text=_commit_lines)
        _print_signatures(repo, csum, gpg_homedir, gpg_verify_remote)
        return
    if key is not None:
        for k, v in c.metadata:
            if k == key:
                emit(_variant_json(v), as_json=as_json, text=lambda x: [f"'{x}'" if isinstance(x, str) else str(x)])
                return
        raise RepoError(f"no such metadata key {key!r} in commit {csum}")
    emit(_CommitView(csum, c), as_json=as_json, text=_commit_lines)


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
    csum = _resolve(repo, rev)
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
                with repo.open_file(obj) as content:
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
    csum = _resolve(repo, rev)
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
@click.argument("rev_b")
@json_option
@click.pass_context
def diff_cmd(ctx: click.Context, repo_path: Path | None, rev_a: str, rev_b: str, as_json: bool) -> None:
    """List files modified (M), deleted (D) and added (A) from REV_A to REV_B."""
    repo = open_repo(ctx, repo_path)
    entries = repo.diff(_resolve(repo, rev_a), _resolve(repo, rev_b))
    emit(entries, as_json=as_json, text=lambda es: [f"{e.kind}    {e.path}" for e in es])


# --- maintenance -----------------------------------------------------------------------------


@cli.command("fsck")
@repo_option
@click.option(
    "--composefs",
    "check_composefs",
    is_flag=True,
    help="Also regenerate the composefs image of each commit that records a digest and compare, "
    "and check the objects every deployment's .ostree.cfs redirects to.",
)
@json_option
@click.pass_context
def fsck_cmd(ctx: click.Context, repo_path: Path | None, check_composefs: bool, as_json: bool) -> None:
    """Verify every commit and every object it reaches; exit 1 listing each bad object."""
    repo = open_repo(ctx, repo_path)
    with progress_bar("Verifying objects") as prog:

        def on_progress(done: int, total: int) -> None:
            prog.update(completed=done, total=total)

        result = repo.fsck(progress=on_progress)
        if check_composefs:
            _fsck_composefs(repo, result)
    if not as_json:  # diagnostics on stderr, as ostree
        for c in result.partial:
            click.echo(f"Commit {c} is partial (its tree is incomplete)", err=True)
        for p in result.problems:
            click.echo(f"error: {p.message}", err=True)
    emit(result, as_json=as_json, text=lambda r: [
        f"object fsck of {r.commits} commits completed successfully - no errors found."] if r.ok else [])
    if not result.ok:
        if not as_json:
            click.echo(f"fsck found {len(result.problems)} bad object(s)", err=True)
        ctx.exit(1)


def _fsck_composefs(repo: Repo, result: Any) -> None:
    from bootree.composefs import COMPOSEFS_NAME
    from bootree.composefs.check import check_commit, check_image_objects
    from bootree.repo.traverse import FsckProblem

    seen = {p.checksum for p in result.problems}  # objects the plain fsck already reported
    for otype, csum in repo.store.iter_objects():
        if otype is ObjectType.COMMIT:
            for problem in check_commit(repo, csum):
                if problem.what not in seen:
                    seen.add(problem.what)
                    result.problems.append(FsckProblem("composefs", problem.what, problem.message))
    # A sysroot's repository (SYSROOT/ostree/repo) backs the images of its deployments: each
    # image's view of an object (size, fs-verity digest) is reported, also for known-bad objects.
    if repo.path.parent.name == "ostree":
        for image in sorted((repo.path.parent / "deploy").glob(f"*/deploy/*/{COMPOSEFS_NAME}")):
            for problem in check_image_objects(repo, image):
                result.problems.append(FsckProblem("composefs", problem.what, problem.message))


@cli.command("prune")
@repo_option
@click.option("--refs-only", is_flag=True, help="Only refs are roots; commits they do not reach are deleted.")
@click.option("--depth", type=int, default=-1, show_default=True, help="Parents to keep per root (-1 = all).")
@click.option("--keep-younger-than", help="Also keep commits newer than this date (ISO 8601 or @SECONDS).")
@click.option("--no-prune", is_flag=True, help="Only report what would be deleted.")
@click.option("--delete-commit", metavar="COMMIT", help="Delete this commit (it must not be a ref) before pruning.")
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
    as_json: bool,
) -> None:
    """Delete objects that no ref (or, without --refs-only, no commit) reaches."""
    repo = open_repo(ctx, repo_path)
    if delete_commit:
        csum = _resolve(repo, delete_commit)
        for name, c in repo.list_refs().items():
            if c == csum:
                raise RepoError(f"commit {csum} is referenced by ref {name}; delete the ref first")
        with repo.lock(exclusive=True):
            os.unlink(repo.object_path(ObjectType.COMMIT, csum))
    result = repo.prune(
        refs_only=refs_only,
        depth=depth,
        keep_younger_than=parse_timestamp(keep_younger_than) if keep_younger_than else None,
        dry_run=no_prune,
    )
    report = {"total": result.total, "deleted": result.deleted, "bytes_freed": result.bytes_freed, "dry_run": no_prune}
    emit(report, as_json=as_json, text=_prune_lines)


def _prune_lines(r: dict[str, Any]) -> list[str]:
    if not r["deleted"]:
        return [f"Total objects: {r['total']}", "No unreachable objects"]
    verb = "Would delete" if r["dry_run"] else "Deleted"
    return [f"Total objects: {r['total']}", f"{verb} {r['deleted']} objects, {r['bytes_freed']} bytes freed"]


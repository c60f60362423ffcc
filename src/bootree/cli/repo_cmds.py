"""Repository commands, named and optioned as ostree's: init, commit, checkout, refs, log, show,
ls, cat, rev-parse, diff, fsck, prune.

Layer: cli. Each command parses its options, calls :mod:`bootree.repo`, and renders the result
(human text as ostree prints it, or ``--json``).
"""

from __future__ import annotations

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
from bootree.errors import GVariantError, ObjectMissing, RepoError
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
    if when.timestamp() < 0:
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
@click.option("--bind-ref", "bind_refs", multiple=True, metavar="REF", help="Also bind the commit to REF (ostree.ref-binding).")
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
@click.option("--base", metavar="REV", help="Start from the tree of REV (the owner/xattr options do not apply to it).")
@click.option("--consume", is_flag=True, help="Delete the committed directories once the commit is written.")
@click.option(
    "--link-checkout-speedup",
    is_flag=True,
    help="Accepted for ostree: bootree hashes each distinct inode once, hardlinked checkouts included.",
)
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
    bind_refs: tuple[str, ...],
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
    base: str | None,
    consume: bool,
    link_checkout_speedup: bool,
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
    if base is not None:
        sources.append(TreeSource(SourceKind.BASE, base))
    if path is not None:
        sources.append(TreeSource(SourceKind.DIR, str(path)))
    sources.extend(TreeSource.parse(t) for t in trees)
    if not any(isinstance(src, TreeSource) and src.kind != "base" for src in sources):
        sources.append(TreeSource(SourceKind.DIR, "."))  # as ostree: no PATH and no --tree commits the current directory
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
        metadata.extend(_bootable_metadata(sources))
    if bind_refs and not no_bindings:
        # As ostree: the branch and every --bind-ref, sorted.
        metadata.append(("ostree.ref-binding", Variant("as", sorted({*bind_refs, *([branch] if branch else [])}))))
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
            timestamp=parse_timestamp(timestamp) if timestamp else _source_date_epoch(),
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
    refs_changed(repo, committed=True)
    if consume:
        import shutil

        for src in sources:
            if isinstance(src, TreeSource) and src.kind == "dir":
                shutil.rmtree(src.value)
    click.echo(csum)


def refs_changed(repo: Repo, *, committed: bool = False) -> None:
    """Regenerate the summary after a ref change when the repository asks for it, as ostree:
    ``core.commit-update-summary`` after a commit, ``core.auto-update-summary`` after any ref
    change (when a summary exists)."""
    auto = repo.config.get_bool("core", "auto-update-summary", False) and (repo.path / "summary").exists()
    if auto or (committed and repo.config.get_bool("core", "commit-update-summary", False)):
        from bootree.repo.summary import update_summary

        update_summary(repo)


def _bootable_metadata(sources: list[TreeSource | Path]) -> list[tuple[str, Variant]]:
    """``--bootable``: ``ostree.bootable`` and, as ostree, ``ostree.linux`` (the kernel version) of
    the tree's kernel; a directory without a kernel is refused.

    Raises:
        KernelNotFound: when the (last) directory source has no kernel.
    """
    meta = [("ostree.bootable", Variant("b", True))]
    dirs = [s for s in sources if isinstance(s, TreeSource) and s.kind == "dir"]
    if dirs:
        from bootree.sysroot.bootloader import find_kernel

        kernel_src, kernel_name = find_kernel(Path(dirs[-1].value)).kernel
        parts = kernel_src.split("/")
        modules = parts[:3] == ["usr", "lib", "modules"] and len(parts) > 3
        meta.append(("ostree.linux", Variant("s", parts[3] if modules else kernel_name.removeprefix("vmlinuz-"))))
    return meta


def _source_date_epoch() -> int | None:
    """The commit time from ``$SOURCE_DATE_EPOCH`` (reproducible builds), as ostree reads it.

    Raises:
        RepoError: for a value that is not a number of seconds or does not fit 64 bits.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise RepoError(f"Failed to convert SOURCE_DATE_EPOCH = '{value}' to a number of seconds")
    seconds = int(value)
    if seconds >= 2**63:
        raise RepoError("Parsing SOURCE_DATE_EPOCH: Numerical result out of range")
    return seconds


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
@click.argument("prefixes", nargs=-1)
@click.option("--delete", is_flag=True, help="Delete the refs matching each PREFIX.")
@click.option("--list", "full_names", is_flag=True, help="Print full ref names (do not strip PREFIX).")
@click.option("-A", "--alias", is_flag=True, help="With --create, make NEWREF an alias of the ref PREFIX; else list aliases.")
@click.option("--create", metavar="NEWREF", help="Create NEWREF pointing at the commit PREFIX resolves to.")
@click.option("--force", is_flag=True, help="With --create, replace an existing NEWREF.")
@click.option("--remote", help="List only this remote's refs.")
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
    as_json: bool,
) -> None:
    """List refs (remote ones as REMOTE:REF), or create, alias or delete them.

    As ostree, ``refs PREFIX`` prints the refs under PREFIX relative to it (``--list``: full
    names); an alias is a ref that follows another one (a symbolic link in refs/heads).
    """
    repo = open_repo(ctx, repo_path)
    if create:
        if len(prefixes) != 1:
            raise click.UsageError("--create=NEWREF needs one existing ref or commit as argument")
        _create_ref(repo, prefixes[0], create, alias=alias, force=force)
        refs_changed(repo)
        return
    if delete:
        if not prefixes:
            raise click.UsageError("--delete needs a PREFIX")
        aliased = {target for _a, target in repo.refs.aliases().items()}
        for prefix in prefixes:
            # Ref files are not read (a ref holding garbage can still be deleted, as ostree).
            names = repo.refs.names(prefix, remote=remote) if remote is not None else _refs_under(repo, prefix, read=False)
            for name in names:
                if name in aliased:
                    raise RepoError(f"Ref '{name}' has an active alias; delete the alias first")
                repo.set_ref(name, None)
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
    repo.set_ref(new, _resolve(repo, source), expected=existing if force else None)


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
        csum = _resolve(repo, rev)
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
        found = next((v for k, v in c.metadata if k == key), None)
        if found is None:
            raise RepoError(f"no such metadata key {key!r} in commit {csum}")
        from bootree.format.gvtext import print_text

        # GVariant text, as ostree prints it; JSON through the one renderer.
        emit(_variant_json(found), as_json=as_json, text=lambda _x: [print_text(found.type, found.value)])
        return
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
@json_option
@click.pass_context
def fsck_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    quiet: bool,
    all_errors: bool,
    delete: bool,
    check_composefs: bool,
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
    say("Enumerating commits...")
    fsck_partial = [c for c in repo.partial_commits() if repo.is_partial_by_fsck(c)]
    with progress_bar("Verifying objects") as prog:

        def on_progress(done: int, total: int) -> None:
            prog.update(completed=done, total=total)

        result = repo.fsck(progress=on_progress)
        if check_composefs:
            _fsck_composefs(repo, result)
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
    if result.partial:
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
    """Prune's summary in ostree's words (sizes as GLib's ``g_format_size``)."""
    if not r["deleted"]:
        return [f"Total objects: {r['total']}", "No unreachable objects"]
    if r["dry_run"]:
        return [f"Total objects: {r['total']}", f"Would delete: {r['deleted']} objects, freeing {format_size(r['bytes_freed'])}"]
    return [f"Total objects: {r['total']}", f"Deleted {r['deleted']} objects, {format_size(r['bytes_freed'])} freed"]


def format_size(n: int) -> str:
    """A byte count as GLib's ``g_format_size`` writes it (ostree's messages): 260 bytes, 1.2 kB."""
    if n < 1000:
        return "1 byte" if n == 1 else f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000 or unit == "PB":
            break
    return f"{value:.1f} {unit}"


"""Repository writing commands, named and optioned as ostree's: init, commit, checkout.

Layer: cli. Each command parses its options, calls :mod:`bootree.repo`, and renders the result
(human text as ostree prints it, or ``--json``). Reading commands are in :mod:`bootree.cli.refs_cmds`
and :mod:`bootree.cli.show_cmds`, maintenance in :mod:`bootree.cli.maint_cmds`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import click

from bootree.cli import cli
from bootree.cli._common import (
    open_repo,
    parse_gvariant_text,
    parse_timestamp,
    progress_bar,
    repo_option,
    repo_path_from,
    split_kv,
)
from bootree.errors import RepoError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.repo import CheckoutMode, CheckoutOptions, CommitOptions, Repo, RepoMode, SourceKind, TreeSource
from bootree.repo.checkout import links_files

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
@click.option("--collection-id", metavar="COLLECTION-ID", help="Globally unique ID of this repository's collection of refs (reverse DNS, e.g. org.example.Os).")
@click.pass_context
def init_cmd(ctx: click.Context, repo_path: Path | None, mode: str, collection_id: str | None) -> None:
    """Initialize a new empty repository.

    \b
    Example:
      bootree --repo=repo init --mode=archive
    """
    Repo.init(repo_path_from(ctx, repo_path), mode=RepoMode.parse(mode), collection_id=collection_id)


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
@click.option("--statoverride", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of 'MODE /PATH' lines: decimal mode bits to add to those paths of a directory source.")
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
@click.option("--generate-sizes", is_flag=True, help="Record each object's sizes in the commit (ostree.sizes), for show --print-sizes.")
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
    statoverride: Path | None,
    canonical_permissions: bool,
    bootable: bool,
    skip_if_unchanged: bool,
    base: str | None,
    consume: bool,
    link_checkout_speedup: bool,
    fsync: str | None,
    composefs_metadata: bool,
    generate_sizes: bool,
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
    dummy_keys: tuple[str, ...] = ()
    if sign_keys:
        from bootree.cli.sign_cmds import signing_keys

        secret, dummy_keys = signing_keys(sign_keys, sign_type)  # before committing: a bad key changes nothing
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
        k, v = split_kv(item, "--add-metadata-string")
        metadata.append((k, Variant("s", v)))
    for item in meta_values:
        k, v = split_kv(item, "--add-metadata")
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
        parent_arg = repo.resolve_rev(parent)
    from bootree.repo.commit import parse_statoverride

    options = CommitOptions(
        owner_uid=owner_uid, owner_gid=owner_gid, no_xattrs=no_xattrs, canonical_permissions=canonical_permissions,
        mode_adds=parse_statoverride(statoverride.read_text()) if statoverride is not None else (),
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
    if generate_sizes:
        from bootree.repo.sizes import sizes_metadata

        first = kwargs.get("tree_metadata")

        def with_sizes(tree: Checksum, dmeta: Checksum) -> list[tuple[str, Variant]]:
            return [*(first(tree, dmeta) if first else []), *sizes_metadata(repo.reader, tree, dmeta)]

        kwargs["tree_metadata"] = with_sizes
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
    if secret or gpg_keys or dummy_keys:
        from bootree.pull.publish import sign_commit

        sign_commit(repo, csum, ed25519_keys=secret, gpg_key_ids=gpg_keys, gpg_homedir=gpg_homedir,
                    dummy_keys=dummy_keys)
    from bootree.repo.summary import refs_changed

    refs_changed(repo, committed=True)
    if consume:
        import shutil

        for src in sources:
            if isinstance(src, TreeSource) and src.kind == "dir":
                shutil.rmtree(src.value)
    click.echo(csum)


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
    csum = repo.resolve_rev(rev)
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



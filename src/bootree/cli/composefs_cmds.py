"""``bootree composefs``: create, dump and inspect composefs images (mkcomposefs, composefs-info).

Layer: cli. ``create`` builds an image from a ``composefs-dump(5)`` file (as ``mkcomposefs
--from-file``) or from a commit (as ostree builds ``.ostree.cfs``); ``dump`` prints an image
back as a dump file; ``info`` shows its header, superblock and composefs digest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bootree import _fs
from bootree.cli import cli
from bootree.cli._common import json_option, open_repo, print_json, repo_option
from bootree.composefs import Verity, build_image
from bootree.composefs.image import external_files
from bootree.errors import ComposefsFormatError
from bootree.format.composefs_dump import format_dump, iter_nodes, parse_dump
from bootree.format.erofs import WriteOptions, write_image
from bootree.format.erofs_read import read_image
from bootree.format.fsverity import fsverity_digest


@cli.group("composefs")
def composefs_group() -> None:
    """composefs images: EROFS metadata over the object store (mkcomposefs, composefs-info)."""


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ComposefsFormatError(f"cannot read {path}: {e.strerror}") from None


@composefs_group.command("create")
@repo_option
@click.argument("image")
@click.option("--from-file", "from_file", metavar="DUMP", help="Build from a composefs-dump(5) file ('-' = stdin).")
@click.option("--rev", help="Build from this commit of the repository (as ostree's .ostree.cfs).")
@click.option("--print-digest", is_flag=True, help="Print the composefs digest (fs-verity of the image).")
@click.option("--print-digest-only", is_flag=True, help="Print the digest and write no image (IMAGE is ignored).")
@click.option("--min-version", type=click.IntRange(0, 1), default=None, help="Format version to start from (default 0).")
@click.option("--max-version", type=click.IntRange(0, 1), default=None, help="Highest format version to use (default 1).")
@click.option(
    "--verity",
    type=click.Choice([v.value for v in Verity]),
    default=Verity.YES.value,
    show_default=True,
    help="With --rev: record object fs-verity digests (yes: measure or compute; maybe: only measured ones).",
)
@click.pass_context
def create_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    image: str,
    from_file: str | None,
    rev: str | None,
    print_digest: bool,
    print_digest_only: bool,
    min_version: int | None,
    max_version: int | None,
    verity: str,
) -> None:
    """Write the composefs image of a dump file or a commit to IMAGE ('-' = stdout).

    \b
    Examples:
      bootree composefs create --from-file tree.dump tree.cfs --print-digest
      bootree composefs create --repo=repo --rev=os/main image.cfs
    """
    if (from_file is None) == (rev is None):
        raise click.UsageError("give exactly one of --from-file DUMP or --rev REV")
    if from_file is not None:
        lo = 0 if min_version is None else min_version
        hi = max(lo, 1 if max_version is None else max_version)
        data = write_image(parse_dump(_read_input(from_file)), WriteOptions(lo, hi))
    else:
        if min_version not in (None, 0) or max_version not in (None, 1):
            raise click.UsageError("--min-version/--max-version apply to --from-file only (ostree uses 0..1)")
        repo = open_repo(ctx, repo_path)
        csum = repo.resolve_rev(rev or "")
        assert csum is not None
        data = build_image(repo, csum, verity=Verity(verity)).data
    if not print_digest_only:
        if image == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            _fs.write_atomic(image, data, mode=0o644)
    if print_digest or print_digest_only:
        click.echo(fsverity_digest(data).hex(), err=image == "-" and not print_digest_only)


@composefs_group.command("dump")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def dump_cmd(image: Path) -> None:
    """Print an image as a composefs-dump(5) file (as composefs-info dump)."""
    sys.stdout.buffer.write(format_dump(read_image(image.read_bytes()).root))
    sys.stdout.buffer.flush()


@composefs_group.command("info")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--objects", is_flag=True, help="List the backing objects the image redirects to.")
@json_option
def info_cmd(image: Path, objects: bool, as_json: bool) -> None:
    """Show an image's composefs digest, format version and EROFS superblock."""
    data = image.read_bytes()
    img = read_image(data)
    info = img.info
    nodes = sum(1 for _ in iter_nodes(img.root))
    backing = sorted({n.payload for _, n in external_files(img.root) if n.payload})
    record = {
        "digest": fsverity_digest(data).hex(),
        "size": len(data),
        "composefs_version": info.composefs_version,
        "has_acl": bool(info.flags & 1),
        "inodes": info.inodes,
        "entries": nodes,
        "blocks": info.blocks,
        "block_size": info.block_size,
        "root_nid": info.root_nid,
        "build_time": info.build_time,
        "feature_compat": info.feature_compat,
        "objects": len(backing),
    }
    if as_json:
        if objects:
            record["object_paths"] = [p.decode("utf-8", "replace") for p in backing]
        print_json(record)
        return
    if objects:
        for p in backing:
            click.echo(p.decode("utf-8", "replace"))
        return
    for key, value in record.items():
        click.echo(f"{key.replace('_', ' ')}: {value}")

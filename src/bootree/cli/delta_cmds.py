"""``static-delta`` commands, named and optioned as ostree's: list, show, delete, generate,
apply-offline, verify, indexes, reindex.

Layer: cli. Parses options, calls :mod:`bootree.delta`, prints what ``ostree static-delta``
prints (the same field names in ``show``, so scripts reading one read the other).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import json_option, open_repo, print_json, repo_option
from bootree.delta import (
    DeltaOptions,
    apply_offline,
    delete_delta,
    generate_delta,
    list_deltas,
    list_indexes,
    read_superblock,
    read_superblock_file,
    reindex,
)
from bootree.delta.apply import check_part
from bootree.delta.bootree_mode import ROOT as BOOTREE_ROOT
from bootree.delta.compile import MB
from bootree.delta.store import delta_path
from bootree.errors import BootreeError, DeltaError, RefNotFound
from bootree.format.checksum import Checksum
from bootree.format.delta import BIG_ENDIAN, LITTLE_ENDIAN, DeltaName, Superblock
from bootree.format.deltaops import decode_operations
from bootree.repo import Repo


@cli.group("static-delta")
def static_delta_group() -> None:
    """Manage static delta files (ostree-compatible)."""


def _resolve(repo: Repo, rev: str) -> Checksum:
    csum = repo.resolve_rev(rev)
    if csum is None:
        raise RefNotFound(rev)
    return csum


def _name(repo: Repo, text: str) -> DeltaName:
    """A delta name ``FROM-TO`` or ``TO``; each half may be a ref or an abbreviated checksum."""
    frm, sep, to = text.partition("-")
    if sep and frm and to:
        return DeltaName(_resolve(repo, frm), _resolve(repo, to))
    return DeltaName(None, _resolve(repo, text))


@static_delta_group.command("list")
@repo_option
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, repo_path: Path | None, as_json: bool) -> None:
    """List static delta files."""
    repo = open_repo(ctx, repo_path)
    deltas = [(d, "ostree") for d in list_deltas(repo)] + [(d, "bootree") for d in list_deltas(repo, root=BOOTREE_ROOT)]
    if as_json:
        print_json([{"name": str(d.name), "format": f, "superblock-sha256": d.digest.hex()} for d, f in deltas])
        return
    if not deltas:
        click.echo("(No static deltas)")
    for d, f in deltas:
        click.echo(str(d.name) + (" (bootree format)" if f == "bootree" else ""))


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n} ({n / scale:.1f} {unit})"
    return f"{n} ({n} bytes)"


def _show(superblock: Superblock, load_part: object | None) -> None:
    sb = superblock
    click.echo(f"Delta: {sb.name}")
    click.echo("Signed: no")
    click.echo(f"From: {sb.from_commit}" if sb.from_commit else "From <scratch>")
    click.echo(f"To: {sb.to_commit}")
    click.echo(f"Endianness: {'big' if sb.endianness == BIG_ENDIAN else 'little'}")
    click.echo(f"Timestamp: {sb.timestamp}")
    click.echo("Number of parents: 0")
    click.echo(f"Number of fallback entries: {len(sb.fallbacks)}")
    fb_size = sum(f.compressed_size for f in sb.fallbacks)
    fb_usize = sum(f.uncompressed_size for f in sb.fallbacks)
    click.echo(f"Total Fallback Size: {_size(fb_size)}")
    click.echo(f"Total Fallback Uncompressed Size: {_size(fb_usize)}")
    click.echo(f"Number of parts: {len(sb.parts)}")
    for i, p in enumerate(sb.parts):
        click.echo(f"PartMeta{i}: nobjects={len(p.objects)} size={p.size} usize={p.uncompressed_size}")
        if callable(load_part):
            part = check_part(i, p, load_part(i, p))
            ops = decode_operations(
                part.operations, p.objects, payload_size=len(part.payload), n_modes=len(part.modes),
                n_xattrs=len(part.xattrs), extensions=p.version == 1,
            )
            counts = dict.fromkeys(
                ("Splice", "Open", "Write", "SetReadSource", "UnsetReadSource", "Close", "Bspatch", "ZstdPatch"), 0
            )
            for op in ops:
                counts[type(op).__name__] += 1
            click.echo(
                f"PartPayload{i}: nmodes={len(part.modes)} nxattrs={len(part.xattrs)} "
                f"blobsize={len(part.payload)} opsize={len(part.operations)}"
            )
            click.echo(
                f"PartPayloadOps{i}: openspliceclose={counts['Splice']} open={counts['Open']} write={counts['Write']} "
                f"setread={counts['SetReadSource']} unsetread={counts['UnsetReadSource']} close={counts['Close']} "
                f"bspatch={counts['Bspatch']}"
            )
    psize = sum(p.size for p in sb.parts)
    pusize = sum(p.uncompressed_size for p in sb.parts)
    click.echo(f"Total Part Size: {_size(psize)}")
    click.echo(f"Total Part Uncompressed Size: {_size(pusize)}")
    click.echo(f"Total Size: {_size(psize + fb_size)}")
    click.echo(f"Total Uncompressed Size: {_size(pusize + fb_usize)}")


def _dir_loader(sb: Superblock, base: Path) -> object:
    def load(index: int, entry: object) -> bytes:
        inline = sb.inline_part(index)
        if inline is not None:
            return inline
        return (base / str(index)).read_bytes()

    return load


@static_delta_group.command("show")
@repo_option
@json_option
@click.argument("delta")
@click.option(
    "--format", "delta_format", type=click.Choice(["ostree", "bootree"]), default="ostree", show_default=True,
    help="Which delta directory: deltas/ (ostree) or bootree-deltas/ (bootree's own format).",
)
@click.pass_context
def show_cmd(ctx: click.Context, repo_path: Path | None, delta: str, as_json: bool, delta_format: str) -> None:
    """Dump information on a delta (FROM-TO or TO, as 'static-delta list' prints them)."""
    repo = open_repo(ctx, repo_path)
    name = _name(repo, delta)
    root = _root(delta_format)
    _data, sb = read_superblock(repo, name, root=root)
    if as_json:
        print_json(
            {
                "name": str(sb.name),
                "from": sb.from_commit,
                "to": sb.to_commit,
                "timestamp": sb.timestamp,
                "endianness": "big" if sb.endianness == BIG_ENDIAN else "little",
                "parts": [
                    {"size": p.size, "usize": p.uncompressed_size, "objects": len(p.objects), "sha256": p.checksum.hex()}
                    for p in sb.parts
                ],
                "format": "bootree" if sb.get("bootree.delta-format") is not None else "ostree",
                "fallbacks": [
                    {"type": f.otype.value, "checksum": f.checksum, "size": f.compressed_size, "usize": f.uncompressed_size}
                    for f in sb.fallbacks
                ],
                "total-size": sb.total_size,
            }
        )
        return
    _show(sb, _dir_loader(sb, delta_path(repo, name, root)))


@static_delta_group.command("delete")
@repo_option
@click.argument("delta")
@click.option(
    "--format", "delta_format", type=click.Choice(["ostree", "bootree"]), default="ostree", show_default=True,
    help="Which delta directory: deltas/ (ostree) or bootree-deltas/ (bootree's own format).",
)
@click.pass_context
def delete_cmd(ctx: click.Context, repo_path: Path | None, delta: str, delta_format: str) -> None:
    """Remove a delta."""
    repo = open_repo(ctx, repo_path)
    delete_delta(repo, _name(repo, delta), root=_root(delta_format))


def _root(delta_format: str) -> str:
    return BOOTREE_ROOT if delta_format == "bootree" else "deltas"


def _megabytes(value: int | None, default: int) -> int:
    return default if value is None else value * MB


@static_delta_group.command("generate")
@repo_option
@click.argument("rev", required=False)
@click.option("--from", "from_rev", metavar="REV", help="Create delta from revision REV.")
@click.option("--empty", is_flag=True, help="Create delta from scratch.")
@click.option("--inline", is_flag=True, help="Inline delta parts into main delta.")
@click.option("--to", "to_rev", metavar="REV", help="Create delta to revision REV.")
@click.option("--disable-bsdiff", is_flag=True, help="Disable use of bsdiff.")
@click.option("-n", "--if-not-exists", is_flag=True, help="Only generate if a delta does not already exist.")
@click.option("--set-endianness", type=click.Choice(["l", "B"]), help="Choose metadata endianness ('l' or 'B').")
@click.option("--swap-endianness", is_flag=True, help="Swap metadata endianness from host order.")
@click.option("--min-fallback-size", type=int, help="Minimum uncompressed size in megabytes for individual HTTP request.")
@click.option("--max-bsdiff-size", type=int, help="Maximum size in megabytes to consider bsdiff compression for input files.")
@click.option("--max-chunk-size", type=int, help="Maximum size of delta chunks in megabytes.")
@click.option("--filename", type=click.Path(dir_okay=False, path_type=Path), help="Write the delta content to PATH.")
@click.option(
    "--format",
    "delta_format",
    type=click.Choice(["ostree", "bootree"]),
    default="ostree",
    show_default=True,
    help="ostree: libostree-compatible (deltas/); bootree: bootree's own, smaller (bootree-deltas/, bootree clients only).",
)
@click.pass_context
def generate_cmd(
    ctx: click.Context,
    repo_path: Path | None,
    rev: str | None,
    from_rev: str | None,
    empty: bool,
    inline: bool,
    to_rev: str | None,
    disable_bsdiff: bool,
    if_not_exists: bool,
    set_endianness: str | None,
    swap_endianness: bool,
    min_fallback_size: int | None,
    max_bsdiff_size: int | None,
    max_chunk_size: int | None,
    filename: Path | None,
    delta_format: str,
) -> None:
    """Generate static delta files (REV alone: from its parent to REV)."""
    repo = open_repo(ctx, repo_path)
    to_text = to_rev or rev
    if to_text is None:
        raise click.UsageError("TO revision must be specified")
    if empty and from_rev:
        raise click.UsageError("--from and --empty are exclusive")
    to = _resolve(repo, to_text)
    if empty:
        frm = None
    elif from_rev:
        frm = _resolve(repo, from_rev)
    else:
        parent = repo.read_commit(to).parent
        if parent is None:
            raise DeltaError(f"commit {to} has no parent", hint="use --empty for a delta from scratch")
        frm = parent
    name = DeltaName(frm, to)
    if if_not_exists and filename is None and (repo.path / name.superblock_relpath).exists():
        click.echo(f"Delta {name} already exists.")
        return
    endianness = LITTLE_ENDIAN
    if set_endianness == "B" or (swap_endianness and set_endianness is None):
        endianness = BIG_ENDIAN
    defaults = DeltaOptions()
    options = DeltaOptions(
        min_fallback_size=_megabytes(min_fallback_size, defaults.min_fallback_size),
        max_bsdiff_size=_megabytes(max_bsdiff_size, defaults.max_bsdiff_size),
        max_chunk_size=_megabytes(max_chunk_size, defaults.max_chunk_size),
        bsdiff=not disable_bsdiff,
        inline=inline,
        endianness=endianness,
        format=delta_format,
    )
    click.echo("Generating static delta:")
    click.echo(f"  From: {frm or 'empty'}")
    click.echo(f"  To:   {to}")
    start = time.monotonic()
    res = generate_delta(repo, to, from_commit=frm, options=options, filename=filename)
    sb = res.superblock
    click.echo(f"modified: {res.modified}")
    click.echo(
        f"new reachable: metadata={res.new_metadata} content regular={res.new_regular} symlink={res.new_symlinks}"
    )
    click.echo(f"rollsum={res.rollsum_objects} objects, {res.rollsum_bytes} bytes")
    click.echo(f"bsdiff={res.bsdiff_objects} objects")
    if delta_format == "bootree":
        click.echo(f"zstd-patch={res.zstd_objects} objects, recompressed={res.recompressed_objects} objects")
    click.echo(
        f"parts={len(sb.parts)} size={sum(p.size for p in sb.parts)} fallbacks={len(sb.fallbacks)} "
        f"size={sum(f.compressed_size for f in sb.fallbacks)} in {time.monotonic() - start:.1f}s"
    )


@static_delta_group.command("apply-offline")
@repo_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def apply_offline_cmd(ctx: click.Context, repo_path: Path | None, path: Path) -> None:
    """Apply static delta file (a superblock file, its parts beside it or inline)."""
    repo = open_repo(ctx, repo_path)
    res = apply_offline(repo, path)
    click.echo(f"Applied delta to {res.commit}: {res.objects_written} objects from {res.parts_applied} parts")


@static_delta_group.command("verify")
@repo_option
@click.argument("delta")
@click.pass_context
def verify_cmd(ctx: click.Context, repo_path: Path | None, delta: str) -> None:
    """Verify a delta's integrity: superblock, part sizes, digests and operations.

    Signatures are not checked: bootree does not sign deltas yet.
    """
    repo = open_repo(ctx, repo_path)
    p = Path(delta)
    if p.exists():
        _data, sb = read_superblock_file(p)
        base = p if p.is_dir() else p.parent
    else:
        name = _name(repo, delta)
        _data, sb = read_superblock(repo, name)
        base = repo.path / name.relpath
    loader = _dir_loader(sb, base)
    assert callable(loader)
    try:
        for i, entry in enumerate(sb.parts):
            part = check_part(i, entry, loader(i, entry))
            decode_operations(
                part.operations, entry.objects, payload_size=len(part.payload), n_modes=len(part.modes),
                n_xattrs=len(part.xattrs), extensions=entry.version == 1,
            )
    except FileNotFoundError as exc:
        raise DeltaError(f"delta part missing: {exc.filename}") from exc
    except BootreeError as exc:
        exc.add_note(f"while verifying delta {sb.name}")
        raise
    click.echo(f"Delta {sb.name}: {len(sb.parts)} parts verified (no signatures checked)")


@static_delta_group.command("indexes")
@repo_option
@click.pass_context
def indexes_cmd(ctx: click.Context, repo_path: Path | None) -> None:
    """List static delta indexes (the TO commits that have one)."""
    indexes = list_indexes(open_repo(ctx, repo_path))
    if not indexes:
        click.echo("(No static deltas indexes)")
    for csum in indexes:
        click.echo(csum)


@static_delta_group.command("reindex")
@repo_option
@click.option("--to", "to_rev", metavar="REV", help="Only update the index of deltas to REV.")
@click.pass_context
def reindex_cmd(ctx: click.Context, repo_path: Path | None, to_rev: str | None) -> None:
    """Regenerate static delta indexes."""
    repo = open_repo(ctx, repo_path)
    reindex(repo, _resolve(repo, to_rev) if to_rev else None)

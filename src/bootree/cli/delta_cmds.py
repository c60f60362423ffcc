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
from bootree.cli._delta_keys import delta_checker, delta_signer, keys_options, sign_type_option
from bootree.delta import (
    apply_offline,
    delete_delta,
    list_deltas,
    list_indexes,
    read_superblock,
    read_superblock_file,
    reindex,
)
from bootree.delta.apply import check_part
from bootree.delta.store import delta_path
from bootree.errors import BootreeError, DeltaError, InvalidRefName, RefNotFound, SignatureError
from bootree.format.checksum import Checksum
from bootree.format.delta import (
    BIG_ENDIAN,
    BOOTREE_DELTAS_ROOT,
    LITTLE_ENDIAN,
    DeltaName,
    SignedSuperblock,
    Superblock,
)
from bootree.format.deltaops import decode_operations
from bootree.repo import Repo

#: libostree's "megabytes" for the size options (as :data:`bootree.delta.parts.MB`, which is
#: not imported here: the generator's modules load only for ``generate``).
MB = 1000 * 1000


@cli.group("static-delta")
def static_delta_group() -> None:
    """Manage static delta files (ostree-compatible)."""


def _resolve(repo: Repo, rev: str) -> Checksum:
    csum = repo.resolve_rev(rev)
    if csum is None:
        raise RefNotFound(rev)
    return csum


def _name(repo: Repo, text: str) -> DeltaName:
    """A delta name ``FROM-TO`` or ``TO``; each half may be a ref or an abbreviated checksum.

    Raises:
        DeltaError: ``Invalid rev TEXT`` (ostree's words) when a half resolves to nothing.
    """
    frm, sep, to = text.partition("-")
    try:
        if sep and frm and to:
            return DeltaName(_resolve(repo, frm), _resolve(repo, to))
        return DeltaName(None, _resolve(repo, text))
    except (RefNotFound, InvalidRefName) as exc:
        raise DeltaError(f"Invalid rev {text}", hint="name a delta as 'static-delta list' prints it") from exc


@static_delta_group.command("list")
@repo_option
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, repo_path: Path | None, as_json: bool) -> None:
    """List static delta files."""
    repo = open_repo(ctx, repo_path)
    deltas = [(d, "ostree") for d in list_deltas(repo)] + [(d, "bootree") for d in list_deltas(repo, root=BOOTREE_DELTAS_ROOT)]
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


def _endianness_text(sb: Superblock) -> str:
    """As libostree describes it: a legacy delta's guess is marked, a failed guess is "invalid"."""
    if sb.endianness_source == "invalid":
        return "invalid"
    word = "big" if sb.endianness == BIG_ENDIAN else "little"
    return f"{word} (heuristic)" if sb.endianness_source == "heuristic" else word


def _show(superblock: Superblock, load_part: object | None, *, signed: bool = False) -> None:
    sb = superblock
    click.echo(f"Delta: {sb.name}")
    click.echo(f"Signed: {'yes' if signed else 'no'}")
    click.echo(f"From: {sb.from_commit}" if sb.from_commit else "From <scratch>")
    click.echo(f"To: {sb.to_commit}")
    click.echo(f"Endianness: {_endianness_text(sb)}")
    click.echo(f"Timestamp: {sb.timestamp}")
    click.echo("Number of parents: 0")
    click.echo(f"Number of fallback entries: {len(sb.fallbacks)}")
    for f in sb.fallbacks:
        click.echo(f"  {f.checksum}")
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
    data, sb = read_superblock(repo, name, root=root)
    signed = SignedSuperblock.from_bytes(data)
    is_signed = signed is not None and bool(signed.engines)
    if as_json:
        print_json(
            {
                "name": str(sb.name),
                "from": sb.from_commit,
                "to": sb.to_commit,
                "timestamp": sb.timestamp,
                "endianness": "big" if sb.endianness == BIG_ENDIAN else "little",
                "endianness-source": sb.endianness_source,
                "signed": is_signed,
                "signature-types": list(signed.engines) if signed is not None else [],
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
    _show(sb, _dir_loader(sb, delta_path(repo, name, root)), signed=is_signed)


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
    return BOOTREE_DELTAS_ROOT if delta_format == "bootree" else "deltas"


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
@click.option("--sign", "sign_keys", multiple=True, metavar="KEYFILE",
              help="Sign the superblock with the secret key(s) in KEYFILE ('-': stdin); dummy: the key text.")
@sign_type_option
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Sign with every secret key of FILE (one base64 key per line).")
@click.option("--self-contained", is_flag=True,
              help="An offline update file: --inline with no fallback objects (one file, no network needed).")
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
    sign_keys: tuple[str, ...],
    sign_type: str,
    keys_file: Path | None,
    self_contained: bool,
) -> None:
    """Generate static delta files (REV alone: from its parent to REV).

    \b
    An offline update file (for a USB stick; applied by 'static-delta apply-offline FILE' or
    'upgrade --from-file FILE'):
      bootree static-delta generate --from=OLD --to=NEW --self-contained \\
          --sign=secret.ed25519 --filename=update.delta
    """
    repo = open_repo(ctx, repo_path)
    signer = delta_signer(sign_type, sign_keys, keys_file)
    if self_contained:
        min_fallback_size = 0  # and --inline, below
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
    # The generator (numpy, the pairing) loads only here: apply-offline and the rest start
    # without it (~0.4 s of CPU per run).
    from bootree.delta.compile import DeltaOptions, generate_delta

    defaults = DeltaOptions()
    options = DeltaOptions(
        min_fallback_size=_megabytes(min_fallback_size, defaults.min_fallback_size),
        max_bsdiff_size=_megabytes(max_bsdiff_size, defaults.max_bsdiff_size),
        max_chunk_size=_megabytes(max_chunk_size, defaults.max_chunk_size),
        bsdiff=not disable_bsdiff,
        inline=inline or self_contained,
        endianness=endianness,
        format=delta_format,
    )
    click.echo("Generating static delta:")
    click.echo(f"  From: {frm or 'empty'}")
    click.echo(f"  To:   {to}")
    start = time.monotonic()
    res = generate_delta(repo, to, from_commit=frm, options=options, filename=filename, sign=signer)
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
@click.argument("keys", nargs=-1)
@sign_type_option
@keys_options
@click.pass_context
def apply_offline_cmd(
    ctx: click.Context, repo_path: Path | None, path: Path, keys: tuple[str, ...], sign_type: str,
    keys_file: Path | None, keys_dir: Path | None,
) -> None:
    """Apply static delta file (a superblock file, its parts beside it or inline).

    A signed delta is checked with the public KEYs (base64, or files of them), --keys-file or
    --keys-dir, else the system's trusted.ed25519 keys; with none of them it is applied
    unchecked unless the repository sets core.sign-verify-deltas (as ostree).
    """
    repo = open_repo(ctx, repo_path)
    check = delta_checker(f"static delta {path}", sign_type, keys, keys_file, keys_dir, system_optional=True)
    res = apply_offline(repo, path, check_signature=check)
    click.echo(f"Applied delta to {res.commit}: {res.objects_written} objects from {res.parts_applied} parts")


@static_delta_group.command("verify")
@repo_option
@click.argument("delta")
@click.argument("keys", nargs=-1)
@sign_type_option
@keys_options
@click.pass_context
def verify_cmd(
    ctx: click.Context, repo_path: Path | None, delta: str, keys: tuple[str, ...], sign_type: str,
    keys_file: Path | None, keys_dir: Path | None,
) -> None:
    """Verify a delta's signatures (as ostree), then its parts: sizes, digests and operations.

    DELTA is FROM-TO or TO, or a path (a superblock file or a delta directory). KEYs are
    base64 public keys or files of them; else --keys-file, --keys-dir, the system keys.
    """
    repo = open_repo(ctx, repo_path)
    p = Path(delta)
    if "/" in delta or p.exists():
        data, sb = read_superblock_file(p)
        base = p if p.is_dir() else p.parent
    else:
        name = _name(repo, delta)
        data, sb = read_superblock(repo, name)
        base = delta_path(repo, name)
    check = delta_checker(f"static delta {sb.name}", sign_type, keys, keys_file, keys_dir, system_optional=False)
    assert check is not None
    loader = _dir_loader(sb, base)
    assert callable(loader)
    try:
        check(data)
        for i, entry in enumerate(sb.parts):
            part = check_part(i, entry, loader(i, entry))
            decode_operations(
                part.operations, entry.objects, payload_size=len(part.payload), n_modes=len(part.modes),
                n_xattrs=len(part.xattrs), extensions=entry.version == 1,
            )
    except (BootreeError, FileNotFoundError) as exc:
        click.echo("Verification fails")
        if isinstance(exc, FileNotFoundError):
            raise DeltaError(f"delta part missing: {exc.filename}") from exc
        if not isinstance(exc, SignatureError):
            exc.add_note(f"while verifying delta {sb.name}")
        raise
    click.echo("Verification OK")


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

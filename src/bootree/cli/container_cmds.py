"""``bootree container encapsulate``: publish a commit as a bootable OCI image (ostree-ext's verb).

Layer: cli. Parse, call :func:`bootree.oci.export.encapsulate`, print the manifest digest
(``Pushed digest: …`` for a registry, ``Exported digest: …`` for ``oci:``) or, with
``--json``, the digest, labels, layers and what the push did.
"""

from __future__ import annotations

from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import open_repo, print_json, repo_option
from bootree.cli._delta_keys import delta_signer, sign_type_option
from bootree.errors import ImageError


@cli.group("container")
def container_group() -> None:
    """Container images from commits (ostree-ext's ``container`` verbs)."""


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise ImageError(f"invalid label {v!r}: expected KEY=VALUE")
        out[key] = value
    return out


@container_group.command("encapsulate")
@repo_option
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Add an image label (repeatable).")
@click.option("--max-layers", type=click.IntRange(min=1), default=None,
              help="Split the content into at most N layers by package and stability (default: one layer).")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "zstd:chunked", "none"]), default="gzip", show_default=True,
              help="Layer compression (zstd:chunked: each file its own zstd frame, with the TOC that lets "
                   "`upgrade` fetch only changed files).")
@click.option("--compression-level", "level", type=click.IntRange(min=0, max=22), default=None,
              help="Compression level (podman's option): gzip 0-9 (default 6), zstd 1-22 (default 3), "
                   "zstd:chunked 1-22 for its file frames (default 19: the smallest partial updates, at about "
                   "13x the publishing CPU of level 3).")
@click.option("--package-db", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="dpkg admin directory (info/*.list) that owns the files, when the tree has none.")
@click.option("--arch", "architecture", default=None, help="Image architecture (default: the host's, e.g. amd64).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Layers produced in parallel.")
@click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="containers auth.json with registry credentials (default: $REGISTRY_AUTH_FILE, ...).")
@click.option("--mount-from", multiple=True, metavar="REPO",
              help="Try a cross-repository mount of each blob from this repository of the registry (repeatable).")
@click.option("--upload-chunk-size", type=click.IntRange(min=1), default=64 << 20, show_default=True,
              help="Blobs larger than this are uploaded in chunks of this many bytes.")
@click.option("--delta-from", "delta_from", metavar="IMAGE", default=None,
              help="Also publish a static delta from the previous image IMAGE (docker://…, oci:DIR:TAG) to this "
                   "one, as an OCI 1.1 artifact referring to it; IMAGE's ostree commit must be in the repository. "
                   "bootree's upgrade fetches it instead of the changed layers when it runs IMAGE.")
@click.option("--delta-format", type=click.Choice(["bootree", "ostree"]), default="bootree", show_default=True,
              help="Format of that delta: bootree's own (smaller) or libostree's.")
@click.option("--sign", "sign_keys", multiple=True, metavar="KEYFILE",
              help="Sign the delta's superblock with the secret key(s) in KEYFILE ('-': stdin); dummy: the key text.")
@sign_type_option
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Sign the delta with every secret key of FILE (one base64 key per line).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("rev")
@click.argument("image")
@click.pass_context
def encapsulate_cmd(ctx: click.Context, repo_path: Path | None, labels: tuple[str, ...], max_layers: int | None,
                    compression: str, level: int | None, package_db: Path | None, architecture: str | None, jobs: int,
                    authfile: Path | None, mount_from: tuple[str, ...], upload_chunk_size: int,
                    delta_from: str | None, delta_format: str, sign_keys: tuple[str, ...], sign_type: str,
                    keys_file: Path | None, as_json: bool, rev: str, image: str) -> None:
    """Export commit REV as a bootable OCI image to IMAGE (oci:DIR[:TAG] or docker://HOST/REPO:TAG).

    \b
    With --delta-from=PREVIOUS a delta PREVIOUS → IMAGE is pushed beside it:
      bootree container encapsulate --repo=repo --delta-from=docker://HOST/os:v1 os docker://HOST/os:v2
    """
    from bootree.oci.deltaartifact import publish_delta, resolve_previous
    from bootree.oci.export import EncapsulateOptions, encapsulate, remove_scratch, scratch_dir
    from bootree.oci.push import PushOptions
    from bootree.oci.reference import ImageReference
    from bootree.oci.registry import RegistryOptions

    dest = ImageReference.parse(image)
    repo = open_repo(ctx, repo_path)
    registry = RegistryOptions(authfile=authfile)
    if (sign_keys or keys_file) and delta_from is None:
        raise ImageError("--sign and --keys-file sign the delta: they need --delta-from")
    signer = delta_signer(sign_type, sign_keys, keys_file)
    previous = resolve_previous(repo, delta_from, registry) if delta_from is not None else None
    push = PushOptions(chunk_size=upload_chunk_size, mount_from=mount_from)
    if level is not None and compression == "gzip" and level > 9:
        raise ImageError(f"--compression-level={level}: gzip levels are 0 to 9")
    if level is not None and compression == "none":
        raise ImageError("--compression-level needs a compression (--compression=gzip, zstd or zstd:chunked)")
    if level == 0 and compression != "gzip":
        raise ImageError("--compression-level=0: zstd levels are 1 to 22")
    options = EncapsulateOptions(labels=_labels(labels), max_layers=max_layers, compression=compression, level=level,
                                 package_db=package_db, architecture=architecture, jobs=jobs)
    result = encapsulate(repo, rev, dest, options, registry=registry, push=push)
    img = result.image
    delta = None
    if previous is not None:
        scratch = scratch_dir()
        try:
            delta = publish_delta(repo, img, dest, previous, scratch=scratch, fmt=delta_format, sign=signer,
                                  registry=registry, push=push)
        finally:
            remove_scratch(scratch)
    if as_json:
        doc: dict[str, object] = {
            "digest": img.manifest_digest,
            "image": str(dest),
            "labels": img.labels,
            "layers": [{"digest": x.digest, "size": x.size, "diffId": x.diff_id} for x in img.layers],
        }
        if result.push is not None:
            st = result.push.stats
            doc["push"] = {"skipped": st.skipped, "mounted": st.mounted, "uploaded": st.uploaded,
                           "chunked": st.chunked, "bytesSent": st.bytes_sent}
        if delta is not None:
            doc["delta"] = {"digest": delta.digest, "fromDigest": delta.from_digest, "size": delta.delta_size,
                            "layerMapSize": delta.layer_map_size, "referrers": delta.found_by}
        print_json(doc)
        return
    click.echo(f"{'Pushed' if result.push is not None else 'Exported'} digest: {img.manifest_digest}")
    if delta is not None:
        how = {"api": "referrers API", "tag": "referrers tag", "present": "referrers tag",
               "layout": "layout index"}[delta.found_by]
        click.echo(f"Delta digest: {delta.digest} (from {delta.from_digest}: {delta.delta_size} bytes; {how})")

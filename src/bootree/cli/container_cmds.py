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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("rev")
@click.argument("image")
@click.pass_context
def encapsulate_cmd(ctx: click.Context, repo_path: Path | None, labels: tuple[str, ...], max_layers: int | None,
                    compression: str, package_db: Path | None, architecture: str | None, jobs: int,
                    authfile: Path | None, mount_from: tuple[str, ...], upload_chunk_size: int, as_json: bool,
                    rev: str, image: str) -> None:
    """Export commit REV as a bootable OCI image to IMAGE (oci:DIR[:TAG] or docker://HOST/REPO:TAG)."""
    from bootree.oci.export import EncapsulateOptions, encapsulate
    from bootree.oci.push import PushOptions
    from bootree.oci.reference import ImageReference
    from bootree.oci.registry import RegistryOptions

    dest = ImageReference.parse(image)
    repo = open_repo(ctx, repo_path)
    options = EncapsulateOptions(labels=_labels(labels), max_layers=max_layers, compression=compression,
                                 package_db=package_db, architecture=architecture, jobs=jobs)
    result = encapsulate(repo, rev, dest, options, registry=RegistryOptions(authfile=authfile),
                         push=PushOptions(chunk_size=upload_chunk_size, mount_from=mount_from))
    img = result.image
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
        print_json(doc)
    elif result.push is not None:
        click.echo(f"Pushed digest: {img.manifest_digest}")
    else:
        click.echo(f"Exported digest: {img.manifest_digest}")

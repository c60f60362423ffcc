"""``bootree install`` (to-disk, initramfs, sync-esp) and ``bootree health`` (list, run).

Layer: cli. Thin wrappers over :mod:`bootree.install` and :mod:`bootree.health`; they parse
options, call the library and print.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bootree.cli import cli
from bootree.cli._common import json_option, open_repo, print_json
from bootree.errors import InstallError
from bootree.health import assess_boot, discover
from bootree.install import InitramfsOptions, InstallOptions, build_initramfs, install_from, install_to_disk
from bootree.install.initramfs import DEFAULT_MODULES
from bootree.install.todisk import DEFAULT_SYSTEMD_BOOT, parse_size
from bootree.oci.reference import ImageReference, OstreeImageReference, SignatureKind
from bootree.sysroot import Sysroot, esp

#: ``health run`` exits with this when the boot is unhealthy and the loader is counting:
#: the caller (the image's boot sequence) should reboot so the next attempt is counted.
EXIT_REBOOT = 3
#: ... and with this when the boot is unhealthy but nothing would change on a reboot.
EXIT_UNHEALTHY = 4


def _sysroot_path(p: Path | None) -> Path:
    return p if p is not None else Path(os.environ.get("OSTREE_SYSROOT") or "/")


_sysroot_opt = click.option("--sysroot", "sysroot_path", type=click.Path(file_okay=False, path_type=Path),
                            default=None, help="Path to the sysroot (default: $OSTREE_SYSROOT, then /).")


@cli.group("install")
def install() -> None:
    """Install to a disk image, build an initramfs, update the ESP."""


#: Prefixes that make the SOURCE of ``install to-disk`` a container image rather than a ref of --repo.
IMAGE_PREFIXES = ("docker://", "oci:", "oci-archive:", "ostree-unverified-registry:", "ostree-unverified-image:",
                  "ostree-image-signed:", "ostree-remote-image:", "ostree-remote-registry:")


def image_source(text: str, transport: str | None) -> OstreeImageReference | None:
    """The image ``text`` names, or ``None`` when it is a ref (or commit) of the repository.

    With ``--transport`` it is always an image; otherwise it is one when it starts with a
    container transport (``docker://``, ``oci:``...) or an origin form (``ostree-unverified-registry:``...).
    """
    if transport is not None:
        return OstreeImageReference(SignatureKind.INSECURE, ImageReference.parse(text, transport))
    if text.startswith(IMAGE_PREFIXES):
        return OstreeImageReference.parse(text)
    return None


@install.command("to-disk")
@click.argument("source")
@click.option("--disk", "disk", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The disk image file to create (replaced if it exists).")
@click.option("--size", "size", default=None, help="Disk size, e.g. 2G (default: what the sysroot needs).")
@click.option("--stateroot", default="default", show_default=True, help="Stateroot (--os) to deploy into.")
@click.option("--karg", multiple=True, metavar="ARG", help="Extra kernel argument (repeatable).")
@click.option("--boot-counting-tries", "tries", type=int, default=esp.DEFAULT_TRIES, show_default=True,
              help="Boot attempts a new deployment gets before the loader falls back (0: no counting).")
@click.option("--esp-size", default="128M", show_default=True, help="Size of the EFI System Partition.")
@click.option("--systemd-boot", "sdboot", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_SYSTEMD_BOOT, show_default=True, help="systemd-boot EFI binary.")
@click.option("--extra-ref", multiple=True, metavar="REF", help="Also copy REF into the sysroot's repository.")
@click.option("--transport", default=None, type=click.Choice(["registry", "oci", "oci-archive"]),
              help="SOURCE is a container image read with this transport.")
@click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="containers auth.json with registry credentials (default: $REGISTRY_AUTH_FILE, ...).")
@click.option("--fs-verity", "fs_verity", is_flag=True,
              help="Root file system with fs-verity (ext4 -O verity) and [ex-fsverity] required=true in its repository.")
@click.pass_context
def to_disk_cmd(ctx: click.Context, source: str, disk: Path, size: str | None, stateroot: str,
                karg: tuple[str, ...], tries: int, esp_size: str, sdboot: Path, extra_ref: tuple[str, ...],
                transport: str | None, authfile: Path | None, fs_verity: bool) -> None:
    """Build a bootable GPT disk image of SOURCE: ESP + root.

    SOURCE is a ref or commit of --repo, or a container image (bootc's install to-disk):
    docker://HOST/REPO:TAG, oci:DIR[:TAG], or any name with --transport. An image is pulled
    into the new disk's repository and recorded as the origin, so that status, upgrade and
    switch on the installed machine follow it.

    No root privileges or loop devices: mkfs.vfat and mtools for the ESP, mkfs.ext4 -d for the
    root, sgdisk for the table. Boots with UEFI firmware through systemd-boot.
    """
    if tries < 0:
        raise InstallError("--boot-counting-tries must be 0 or more")
    opts = InstallOptions(stateroot=stateroot, size_mib=parse_size(size) if size else None,
                          esp_size_mib=parse_size(esp_size), kargs=karg, tries=tries, systemd_boot=sdboot,
                          extra_refs=extra_ref, fs_verity=fs_verity)
    image = image_source(source, transport)
    if image is None:
        result = install_to_disk(open_repo(ctx, None), source, disk, options=opts)
        click.echo(f"Installed {result.deployment.stateroot} {result.deployment.name} to {result.disk}")
    else:
        if extra_ref:
            raise InstallError("--extra-ref copies refs of --repo; it cannot be combined with an image")
        from bootree.cli._image_progress import image_progress
        from bootree.host.provision import ImageInstallSource
        from bootree.oci.registry import RegistryOptions  # httpx: only for images (health run stays light)

        with image_progress(quiet=False) as progress:
            content = ImageInstallSource(image, RegistryOptions(authfile=authfile), progress=progress)
            result = install_from(content, disk, options=opts)
        click.echo(f"Installed {result.deployment.stateroot} {result.deployment.name} to {result.disk}")
        click.echo(f"Image: {image}")
        if content.pulled is not None:
            click.echo(f"Digest: {content.pulled.state.manifest_digest}")
    click.echo(f"ESP entries: {' '.join(result.esp_entries)}")


@install.command("initramfs")
@click.option("--tree", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="The OS tree (before commit) with usr/lib/modules/<kver>/vmlinuz.")
@click.option("--kver", default=None, help="Kernel version (default: the only one in the tree).")
@click.option("--busybox", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A static busybox (default: busybox on PATH).")
@click.option("--module", "modules", multiple=True, help="Kernel modules to include (default: virtio, vfat, efivarfs...).")
def initramfs_cmd(tree: Path, kver: str | None, busybox: Path | None, modules: tuple[str, ...]) -> None:
    """Write usr/lib/modules/<kver>/initramfs.img into TREE (prepare-root + switch_root)."""
    out = build_initramfs(tree, kver=kver, options=InitramfsOptions(busybox=busybox,
                                                                     modules=modules or DEFAULT_MODULES))
    click.echo(f"Wrote {out}")


@install.command("sync-esp")
@_sysroot_opt
def sync_esp_cmd(sysroot_path: Path | None) -> None:
    """Mirror the deployment list onto the configured ESP again (after an interrupted update)."""
    sysroot = Sysroot.open(_sysroot_path(sysroot_path))
    with sysroot.lock():
        done = esp.sync_sysroot(sysroot)
    if done is None:
        raise InstallError("this sysroot has no ESP configured ([bootree] esp= in the repo config)")
    click.echo(f"ESP in sync ({len(done)} operations)")


@cli.group("health")
def health() -> None:
    """Health checks after boot and boot assessment (mark good / fall back)."""


@health.command("list")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), show_default=True)
def health_list_cmd(root: Path) -> None:
    """List the health checks that 'health run' would run."""
    for c in discover(root):
        click.echo(f"{c.kind.value:8} {c.name}  ({c.path})")


@health.command("run")
@_sysroot_opt
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per check.")
@json_option
def health_run_cmd(sysroot_path: Path | None, timeout: float, as_json: bool) -> None:
    """Assess this boot: record a fallback, run the checks, mark the boot entry good.

    Exit status: 0 healthy (entry blessed); 3 unhealthy while the boot loader is counting
    (reboot, so it tries again or falls back); 4 unhealthy without a counter.
    """
    path = _sysroot_path(sysroot_path)
    sysroot = Sysroot.open(path)
    with sysroot.lock():
        # On a directory sysroot (tests, the boot simulator) the checks are those of the booted tree.
        root = path if sysroot.is_root or sysroot.booted is None else sysroot.deployment_dir(sysroot.booted)
        r = assess_boot(sysroot, root=root, timeout=timeout)
    if as_json:
        print_json({
            "booted": r.booted.name, "entrySelected": r.entry_selected, "bootCountPath": r.count_path,
            "healthy": r.healthy, "blessed": r.blessed, "reboot": r.reboot,
            "fellBackFrom": [a.deployment for a in r.fell_back_from], "rollbackMadeDefault": r.rollback_made_default,
            "checks": [{"name": c.check.name, "kind": c.check.kind.value, "ok": c.ok, "returncode": c.returncode,
                        "output": c.output} for c in r.results],
        })
    else:
        for a in r.fell_back_from:
            click.echo(f"Fallback: {a.deployment} failed ({a.reason})")
        for c in r.results:
            click.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.check.kind.value:8} {c.check.name}")
        click.echo(f"Boot of {r.booted.name}: {'healthy' if r.healthy else 'UNHEALTHY'}"
                      + (f"; marked good ({r.blessed})" if r.blessed else ""))
    if not r.healthy:
        sys.exit(EXIT_REBOOT if r.reboot else EXIT_UNHEALTHY)

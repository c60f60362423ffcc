"""bootc's verbs at the top level: ``switch``, ``upgrade``/``update``, ``rollback``, ``status``.

Layer: cli. Parse, lock the sysroot, call :mod:`bootree.host.bootc`, print bootc's lines
(``Queued for next boot: …``, ``No update available.``, ``Image specification is unchanged.``)
or the ``BootcHost`` document (:mod:`bootree.host.model`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bootree.cli import cli
from bootree.cli._common import print_json
from bootree.cli._key_options import from_file_options
from bootree.oci.reference import ImageReference, OstreeImageReference, SignatureKind
from bootree.oci.registry import RegistryOptions
from bootree.sysroot import Sysroot

if TYPE_CHECKING:
    from bootree.host.progress import ProgressJsonl
    from bootree.oci.progress import PullProgress
    from bootree.oci.sigverify import PolicyOptions

_F = Any


def _common(func: _F) -> _F:
    func = click.option("--sysroot", "sysroot_path", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Path to the sysroot (default: $OSTREE_SYSROOT, then /).")(func)
    func = click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="containers auth.json with registry credentials (default: $REGISTRY_AUTH_FILE, ...).")(func)
    return click.option("--quiet", is_flag=True, help="Print nothing but errors.")(func)


def _no_deltas(func: _F) -> _F:
    return click.option("--disable-static-deltas", "no_deltas", is_flag=True,
                        help="Fetch the changed layers even when a delta from the running image is published.")(func)


def _delta_check(keys_file: Path | None, keys_dir: Path | None) -> Callable[[bytes], None] | None:
    """The check of a signed image delta: the given keys, else the system's (none there: unchecked, as ostree)."""
    from bootree.cli._delta_keys import delta_checker  # signing and trust: loaded only when used

    return delta_checker("image delta", "ed25519", (), keys_file, keys_dir, system_optional=True)


def _progress_fd(func: _F) -> _F:
    return click.option("--progress-fd", type=int, default=None, metavar="FD",
                        help="Write bootc's JSON-lines progress events to this open file descriptor (3 or more).")(func)


@contextmanager
def _progress(quiet: bool, fd: int | None) -> Iterator[tuple[PullProgress | None, ProgressJsonl | None]]:
    """The pull's receivers: the terminal display and/or the ``--progress-fd`` writer."""
    from bootree.cli._image_progress import image_progress

    events = None
    if fd is not None:
        from bootree.host.progress import open_progress_fd

        events = open_progress_fd(fd)
    with image_progress(quiet) as display:
        sinks: list[PullProgress] = [x for x in (display, events) if x is not None]
        if len(sinks) > 1:
            from bootree.oci.progress import ProgressTee

            yield ProgressTee(*sinks), events
        else:
            yield (sinks[0] if sinks else None), events


def _policy(func: _F) -> _F:
    func = click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="containers-policy.json for ostree-image-signed images (default: $CONTAINERS_POLICY_JSON, "
                             "~/.config/containers/policy.json, /etc/containers/policy.json).")(func)
    return click.option("--registries.d", "registries_d", type=click.Path(file_okay=False, path_type=Path),
                        default=None, help="registries.d directory with lookaside signature locations "
                                           "(default: ~/.config/containers/registries.d, /etc/containers/registries.d)."
                        )(func)


def _policy_options(policy_path: Path | None, registries_d: Path | None) -> PolicyOptions:
    from bootree.oci.sigverify import PolicyOptions

    return PolicyOptions(policy=policy_path, registries_d=registries_d)


def _open(sysroot_path: Path | None) -> Sysroot:
    return Sysroot.open(sysroot_path or Path(os.environ.get("OSTREE_SYSROOT") or "/"))


def _say(lines: tuple[str, ...], quiet: bool) -> None:
    if not quiet:
        for line in lines:
            click.echo(line)


@cli.command("switch")
@_common
@click.option("--transport", default=None,
              type=click.Choice(["registry", "oci", "oci-archive", "containers-storage", "dir", "docker-archive"]),
              help="How to read TARGET (default: registry, or the prefix of TARGET).")
@click.option("--apply", "apply_", is_flag=True, help="Reboot into the new image when it is queued.")
@click.option("--retain", is_flag=True, help="Keep the ostree ref the previous origin followed.")
@click.option("--stateroot", default=None, help="Stateroot of the first deployment on an empty sysroot.")
@click.option("--enforce-container-sigpolicy", is_flag=True,
              help="Verify the image against containers-policy.json now and at every upgrade (ostree-image-signed:).")
@_policy
@_progress_fd
@_no_deltas
@click.argument("target")
def switch_cmd(sysroot_path: Path | None, authfile: Path | None, quiet: bool, transport: str | None, apply_: bool,
               retain: bool, stateroot: str | None, enforce_container_sigpolicy: bool, policy_path: Path | None,
               registries_d: Path | None, progress_fd: int | None, no_deltas: bool, target: str) -> None:
    """Track and queue another container image (bootc switch).

    TARGET is an image reference, or an origin string as bootc writes it: with
    ostree-remote-image:REMOTE:IMAGE the image's ostree commit must carry a valid signature by
    the keys of the ostree remote REMOTE (gpg-verify, sign-verify).
    """
    from bootree.host import bootc

    if target.startswith("ostree-") and transport is None:
        # An origin string as bootc writes it (ostree-remote-image:REMOTE:IMAGE, ostree-image-signed:...).
        ref = OstreeImageReference.parse(target)
        if enforce_container_sigpolicy and ref.sigverify is not SignatureKind.CONTAINER_POLICY:
            raise click.UsageError(f"--enforce-container-sigpolicy contradicts {target.split(':', 1)[0]}:")
    else:
        kind = SignatureKind.CONTAINER_POLICY if enforce_container_sigpolicy else SignatureKind.INSECURE
        ref = OstreeImageReference(kind, ImageReference.parse(target, transport))
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        with _progress(quiet, progress_fd) as (progress, events):
            out = bootc.switch(sysroot, ref, stateroot=stateroot, retain=retain,
                               options=RegistryOptions(authfile=authfile),
                               policy=_policy_options(policy_path, registries_d), progress=progress, events=events,
                               deltas=not no_deltas, check_delta=_delta_check(None, None))
        _say(out.lines, quiet)
        if apply_ and (out.changed or sysroot.staged is not None):
            _say((bootc.apply(sysroot),), quiet)


@cli.command("upgrade")
@_common
@click.option("--check", "check_", is_flag=True, help="Only fetch the manifest and config; say what would change.")
@click.option("--json", "as_json", is_flag=True, help="With --check: print the result as JSON.")
@click.option("--apply", "apply_", is_flag=True, help="Reboot into the update when one is queued.")
@click.option("--download-only", is_flag=True, help="Stage, but do not apply at the next reboot.")
@click.option("--from-downloaded", is_flag=True, help="Let a --download-only staged update apply at the next reboot.")
@click.option("--allow-failed", is_flag=True, help="Stage an image that failed its health checks here.")
@_policy
@_progress_fd
@_no_deltas
@from_file_options
def upgrade_cmd(sysroot_path: Path | None, authfile: Path | None, quiet: bool, check_: bool, as_json: bool,
                apply_: bool, download_only: bool, from_downloaded: bool, allow_failed: bool,
                policy_path: Path | None, registries_d: Path | None, progress_fd: int | None, no_deltas: bool,
                from_file: Path | None, keys_file: Path | None, keys_dir: Path | None) -> None:
    """Fetch the tracked image again and queue it if it changed (bootc upgrade).

    When the publisher pushed a delta from the running image (container encapsulate
    --delta-from), it is fetched instead of the changed layers; --check says so, with its size.

    With --from-file the update comes from an offline update file for an ostree-ref deployment
    (a USB stick, a depot): checked, applied and staged for the next boot, without a network.
    """
    from bootree.host import bootc

    sysroot = _open(sysroot_path)
    if from_file is not None:
        if check_ or from_downloaded or download_only:
            raise click.UsageError("--from-file cannot be combined with --check, --download-only or --from-downloaded")
        from bootree.cli._delta_keys import run_upgrade_from_file

        queued = run_upgrade_from_file(sysroot, from_file, keys_file, keys_dir, stateroot=None, stage_it=True,
                                       allow_failed=allow_failed, allow_downgrade=False)
        if apply_ and queued:
            with sysroot.lock():
                _say((bootc.apply(sysroot),), quiet)
        return
    options = RegistryOptions(authfile=authfile)
    policy = _policy_options(policy_path, registries_d)
    if check_:
        result = bootc.check(sysroot, options=options, policy=policy)
        if as_json:
            print_json(result.to_json())
        else:
            _say(result.lines, quiet)
        return
    with sysroot.lock():
        if from_downloaded:
            if sysroot.staged is None:
                raise click.ClickException("no staged deployment")
            if sysroot.staged_locked_path.exists():
                sysroot.staged_locked_path.unlink()
                _say(("Staged deployment will now be applied on reboot",), quiet)
            else:
                _say(("Staged deployment is already set to apply on reboot",), quiet)
            changed = True
        else:
            with _progress(quiet, progress_fd) as (progress, events):
                out = bootc.upgrade(sysroot, download_only=download_only, allow_failed=allow_failed, options=options,
                                    policy=policy, progress=progress, events=events, deltas=not no_deltas,
                                    check_delta=_delta_check(keys_file, keys_dir))
            _say(out.lines, quiet)
            changed = out.changed
        if apply_ and changed and not download_only:
            _say((bootc.apply(sysroot),), quiet)


cli.add_command(upgrade_cmd, "update")


@cli.command("rollback")
@click.option("--sysroot", "sysroot_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Path to the sysroot (default: $OSTREE_SYSROOT, then /).")
@click.option("--apply", "apply_", is_flag=True, help="Reboot into the rollback deployment.")
def rollback_cmd(sysroot_path: Path | None, apply_: bool) -> None:
    """Make the rollback deployment the default for the next boot (bootc rollback)."""
    from bootree.host import bootc
    from bootree.sysroot import ops

    sysroot = _open(sysroot_path)
    with sysroot.lock():
        result = ops.rollback(sysroot)
        click.echo(result.message)
        if apply_:
            click.echo(bootc.apply(sysroot))


@cli.command("status")
@click.option("--sysroot", "sysroot_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Path to the sysroot (default: $OSTREE_SYSROOT, then /).")
@click.option("--format", "fmt", type=click.Choice(["humanreadable", "yaml", "json"]), default=None,
              help="Output format (default: humanreadable on a terminal, YAML otherwise).")
@click.option("--format-version", type=click.Choice(["0", "1"]), default="1", help="Schema version (1).")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as --format=json.")
@click.option("--booted", is_flag=True, help="Only the booted deployment.")
def status_cmd(sysroot_path: Path | None, fmt: str | None, format_version: str, as_json: bool, booted: bool) -> None:
    """The host's image state as bootc's BootcHost document."""
    from dataclasses import replace

    from bootree.host.model import build_host

    host = build_host(_open(sysroot_path))
    if booted:
        host = replace(host, staged=None, rollback=None, others=())
    fmt = "json" if as_json else fmt or ("humanreadable" if sys.stdout.isatty() else "yaml")
    if fmt == "json":
        print_json(host.to_json())
    elif fmt == "yaml":
        click.echo(host.to_yaml())
    else:
        click.echo(host.to_text())

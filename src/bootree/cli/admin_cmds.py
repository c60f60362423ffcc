"""``bootree admin``: deployment commands named and optioned as ``ostree admin``'s, plus
bootc's ``rollback`` and a boot simulator for directory sysroots.

Layer: cli. Each command opens the sysroot (``--sysroot``, else ``$OSTREE_SYSROOT``, else
``/``), takes its lock for anything that writes, calls :mod:`bootree.sysroot`, and prints what
ostree prints (the /etc merge summary, the bootloader line, status), or JSON with ``--json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from bootree.cli import cli
from bootree.cli._common import json_option, print_json
from bootree.errors import RefNotFound, SysrootError
from bootree.format.checksum import Checksum
from bootree.sysroot import (
    Deployment,
    DeployOptions,
    Origin,
    Sysroot,
    assessment,
    deploy,
    finalize_staged,
    ops,
    stage,
)
from bootree.sysroot.swap import SwapResult

_F = Any


def _sysroot_option(func: _F) -> _F:
    return click.option(
        "--sysroot",
        "sysroot_path",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Path to the sysroot (default: $OSTREE_SYSROOT, then /).",
    )(func)


def _path(sysroot_path: Path | None) -> Path:
    if sysroot_path is not None:
        return sysroot_path
    ctx = click.get_current_context(silent=True)
    while ctx is not None:  # ``admin --sysroot=PATH COMMAND``, as ostree accepts it
        if ctx.command.name == "admin" and ctx.params.get("sysroot_path") is not None:
            return Path(ctx.params["sysroot_path"])
        ctx = ctx.parent
    return Path(os.environ.get("OSTREE_SYSROOT") or "/")


def _open(sysroot_path: Path | None) -> Sysroot:
    return Sysroot.open(_path(sysroot_path))


def _say_swap(swap: SwapResult | None) -> None:
    if swap is not None:
        click.echo(swap.message)


@cli.group("admin")
@_sysroot_option
def admin(sysroot_path: Path | None) -> None:
    """Deployments of an OSTree sysroot (as 'ostree admin'), plus rollback and boot."""


@admin.command("init-fs")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
def init_fs_cmd(path: Path) -> None:
    """Create an empty sysroot (top-level dirs and a bare repo) in PATH."""
    ops.init_fs(path)


@admin.command("os-init")
@_sysroot_option
@click.argument("stateroot")
def os_init_cmd(sysroot_path: Path | None, stateroot: str) -> None:
    """Create STATEROOT and its shared /var."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        ops.os_init(sysroot, stateroot)
    click.echo(f"ostree/deploy/{stateroot} initialized as OSTree root")


@admin.command("deploy")
@_sysroot_option
@click.option("--os", "stateroot", default=None, help="Stateroot to deploy into (default: the booted or first one).")
@click.option("--karg", multiple=True, metavar="NAME=VALUE", help="Set a kernel argument (replacing its value).")
@click.option("--karg-append", multiple=True, metavar="NAME=VALUE", help="Append a kernel argument.")
@click.option("--karg-delete", multiple=True, metavar="NAME[=VALUE]", help="Delete a kernel argument.")
@click.option("--retain", is_flag=True, help="Keep all existing deployments.")
@click.option("--retain-pending", is_flag=True, help="Keep pending deployments.")
@click.option("--retain-rollback", is_flag=True, help="Keep rollback deployments.")
@click.option("--not-as-default", is_flag=True, help="Add the deployment after the current one, not as default.")
@click.option("--no-merge", is_flag=True, help="Do not carry over /etc changes or kernel arguments.")
@click.option("--stage", is_flag=True, help="Prepare now; merge /etc and switch at shutdown (finalize-staged).")
@click.argument("refspec")
def deploy_cmd(
    sysroot_path: Path | None,
    stateroot: str | None,
    karg: tuple[str, ...],
    karg_append: tuple[str, ...],
    karg_delete: tuple[str, ...],
    retain: bool,
    retain_pending: bool,
    retain_rollback: bool,
    not_as_default: bool,
    no_merge: bool,
    stage: bool,
    refspec: str,
) -> None:
    """Deploy REFSPEC (a ref or commit of the sysroot's repo) as the new default."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        csum = sysroot.repo.resolve_rev(refspec)
        if csum is None:
            raise RefNotFound(refspec)
        if stateroot is None:
            if sysroot.booted is not None:
                stateroot = sysroot.booted.stateroot
            else:
                roots = sysroot.stateroots()
                if len(roots) != 1:
                    raise click.UsageError("no --os given and the sysroot is not booted into one stateroot")
                stateroot = roots[0]
        opts = DeployOptions(
            kargs=karg, kargs_append=karg_append, kargs_delete=karg_delete, no_merge=no_merge,
            not_as_default=not_as_default, retain=retain, retain_pending=retain_pending,
            retain_rollback=retain_rollback,
        )
        origin = Origin.for_refspec(refspec)
        if stage:
            result = _stage(sysroot, Checksum(csum), stateroot, origin, opts)
        else:
            result = deploy(sysroot, Checksum(csum), stateroot=stateroot, origin=origin, opts=opts)
    if result.relabeled_var:
        click.echo("Relabeling /var (no stamp file 'var/.ostree-selabeled' found)")
    if result.etc is not None:
        click.echo(result.etc.message)
    _say_swap(result.swap)


def _stage(sysroot: Sysroot, csum: Checksum, stateroot: str, origin: Origin, opts: DeployOptions) -> Any:
    return stage(sysroot, csum, stateroot=stateroot, origin=origin, opts=opts)


def _marker(sysroot: Sysroot, d: Deployment) -> str:
    if d.staged:
        return "staged"
    if sysroot.booted is None:
        return ""
    pending, rollback = sysroot.pending_and_rollback()
    if d.same(pending):
        return "pending"
    if d.same(rollback):
        return "rollback"
    return ""


def _status_json(sysroot: Sysroot) -> dict[str, Any]:
    record = assessment.load(sysroot)
    out = []
    for i, d in enumerate(sysroot.all_deployments()):
        out.append({
            "index": i,
            "stateroot": d.stateroot,
            "checksum": d.csum,
            "serial": d.deployserial,
            "bootcsum": d.bootcsum,
            "bootserial": d.bootserial,
            "booted": d.same(sysroot.booted),
            "staged": d.staged,
            "pending": _marker(sysroot, d) == "pending",
            "rollback": _marker(sysroot, d) == "rollback",
            "pinned": d.pinned,
            "version": d.version,
            "refspec": d.refspec,
            "origin": d.origin.text if d.origin else None,
            "kargs": str(d.kargs.without("ostree")),
            **assessment.status_fields(sysroot, d, record),  # boot counting and health (issue 5)
        })
    return {"bootversion": sysroot.bootversion, "subbootversion": sysroot.subbootversion, "deployments": out,
            "lastFallback": record.last_fallback}


@admin.command("status")
@_sysroot_option
@json_option
def status_cmd(sysroot_path: Path | None, as_json: bool) -> None:
    """List deployments (booted '*', then staged/pending/rollback markers), as ostree."""
    sysroot = _open(sysroot_path)
    if as_json:
        print_json(_status_json(sysroot))
        return
    deps = sysroot.all_deployments()
    if not deps:
        click.echo("No deployments.")
        return
    record = assessment.load(sysroot)
    lines = []
    if record.last_fallback is not None:
        fb = record.last_fallback
        lines.append(f"Automatic rollback: {', '.join(fb.get('from', []))} failed its health checks; "
                     f"the boot loader fell back to {fb.get('to')}")
    for d in deps:
        star = "*" if d.same(sysroot.booted) else " "
        mark = _marker(sysroot, d)
        lines.append(f"{star} {d.stateroot} {d.name}{f' ({mark})' if mark else ''}")
        if d.version:
            lines.append(f"    Version: {d.version}")
        if d.pinned:
            lines.append("    Pinned: yes")
        lines.extend(f"    {line}" for line in assessment.status_lines(sysroot, d, record))
        if d.origin is None:
            lines.append("    origin: none")
        elif d.refspec:
            lines.append(f"    origin refspec: {d.refspec}")
        else:
            lines.append("    origin: <unknown origin type>")
    sys.stdout.write("\n".join(lines) + "\n")


@admin.command("undeploy")
@_sysroot_option
@click.argument("index", type=int)
def undeploy_cmd(sysroot_path: Path | None, index: int) -> None:
    """Remove the deployment at INDEX (as listed by status) and clean up."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        target, swap, cleaned = ops.undeploy(sysroot, index)
    _say_swap(swap)
    if cleaned.bytes_freed:
        click.echo(f"Freed objects: {cleaned.bytes_freed} bytes")
    click.echo(f"Deleted deployment {target.name}")


@admin.command("pin")
@_sysroot_option
@click.option("--unpin", "-u", is_flag=True, help="Remove the pin instead.")
@click.argument("indexes", type=int, nargs=-1, required=True)
def pin_cmd(sysroot_path: Path | None, unpin: bool, indexes: tuple[int, ...]) -> None:
    """Keep deployment INDEX from being garbage-collected (or, with --unpin, stop keeping it)."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        for index in indexes:
            ops.set_pinned(sysroot, index, not unpin)
            click.echo(f"Deployment {index} is now {'unpinned' if unpin else 'pinned'}")


@admin.command("set-default")
@_sysroot_option
@click.argument("index", type=int)
def set_default_cmd(sysroot_path: Path | None, index: int) -> None:
    """Make the deployment at INDEX the default boot entry."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        swap = ops.set_default(sysroot, index)
    if swap is None:
        click.echo(f"Deployment {index} is already the default")
    _say_swap(swap)


@admin.command("cleanup")
@_sysroot_option
def cleanup_cmd(sysroot_path: Path | None) -> None:
    """Delete unreferenced deployments, boot directories and repo objects."""
    from bootree.sysroot.cleanup import cleanup

    sysroot = _open(sysroot_path)
    with sysroot.lock():
        result = cleanup(sysroot)
    for name in result.deployments_removed:
        click.echo(f"Deleted deployment {name}")
    if result.bytes_freed:
        click.echo(f"Freed objects: {result.bytes_freed} bytes")


@admin.command("finalize-staged", hidden=True)
@_sysroot_option
def finalize_staged_cmd(sysroot_path: Path | None) -> None:
    """Merge /etc into the staged deployment and make it the default (the shutdown path)."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        result = finalize_staged(sysroot)
    if result is None:
        click.echo("No staged deployment to finalize")
        return
    if result.etc is not None:
        click.echo(result.etc.message)
    _say_swap(result.swap)


@admin.command("rollback")
@_sysroot_option
def rollback_cmd(sysroot_path: Path | None) -> None:
    """Make the rollback deployment the default (bootc's rollback; no /etc merge)."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        result = ops.rollback(sysroot)
    _say_swap(result.swap)
    click.echo(result.message)


@admin.group("kargs")
def kargs_group() -> None:
    """Kernel arguments of the deployments."""


@kargs_group.command("edit-in-place")
@_sysroot_option
@click.option("--append-if-missing", multiple=True, metavar="NAME=VALUE", help="Append unless present.")
@click.option("--delete-if-present", multiple=True, metavar="NAME=VALUE", help="Delete if present.")
@click.argument("refspecs", nargs=-1, metavar="[REFSPEC]...")
def kargs_edit_cmd(
    sysroot_path: Path | None, append_if_missing: tuple[str, ...], delete_if_present: tuple[str, ...],
    refspecs: tuple[str, ...],
) -> None:
    """Edit the kernel arguments of every deployment in place (no new deployment).

    REFSPEC arguments are accepted as ostree 2022.7 accepts them; as there, the edit applies
    to all deployments.
    """
    sysroot = _open(sysroot_path)
    if not sysroot.all_deployments():
        raise SysrootError("Unable to find a deployment in sysroot")
    with sysroot.lock():
        n = ops.kargs_edit_in_place(sysroot, append_if_missing=append_if_missing, delete_if_present=delete_if_present)
    click.echo(f"{n} boot entries updated", err=True)


@admin.command("config-diff")
@_sysroot_option
@click.option("--os", "stateroot", default=None, help="Stateroot (default: the booted one).")
@json_option
def config_diff_cmd(sysroot_path: Path | None, stateroot: str | None, as_json: bool) -> None:
    """Local changes of /etc against the deployment's defaults (M/D/A)."""
    diff = ops.config_diff(_open(sysroot_path), stateroot)
    if as_json:
        print_json({"modified": list(diff.modified), "removed": list(diff.removed), "added": list(diff.added)})
        return
    lines = [f"M    {p}" for p in diff.modified] + [f"D    {p}" for p in diff.removed] + [f"A    {p}" for p in diff.added]
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")


@admin.command("boot", context_settings={"ignore_unknown_options": True})
@_sysroot_option
@click.option("--no-finalize", is_flag=True, help="Do not finalize a staged deployment first (a crash, not a shutdown).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def boot_cmd(sysroot_path: Path | None, no_finalize: bool, command: tuple[str, ...]) -> None:
    """Boot a directory sysroot's default entry and run COMMAND inside it (root only).

    Plays the bootloader (default BLS entry, its ostree= argument), then ostree-prepare-root in
    a private mount namespace: /usr read-only, the stateroot's /var, the sysroot on /sysroot;
    records the booted deployment for status/--stage/rollback, and runs COMMAND chrooted
    (default: nothing, just boot). Use '--' before a COMMAND that has options.
    """
    from bootree.sysroot.bootsim import boot

    sysroot = _open(sysroot_path)
    with sysroot.lock():
        result = boot(sysroot, (), finalize=not no_finalize)
    if result.finalized is not None:
        if result.finalized.etc is not None:
            click.echo(result.finalized.etc.message, err=True)
        if result.finalized.swap is not None:
            click.echo(result.finalized.swap.message, err=True)
    d = result.choice.deployment
    click.echo(f"Booted {d.stateroot} {d.name} ({result.choice.entry.title})", err=True)
    if command:
        from bootree.sysroot.bootsim import run_in_deployment

        code = run_in_deployment(sysroot, d, command)
        if code:
            # click's non-standalone mode swallows Exit codes; the command's status must come back.
            sys.exit(code)


@admin.command("upgrade")
@_sysroot_option
@click.option("--allow-failed", is_flag=True, help="Deploy the commit even if it failed its health checks here.")
@click.option("--stage", "stage_it", is_flag=True, help="Stage the update (applied at shutdown).")
def upgrade_cmd(sysroot_path: Path | None, allow_failed: bool, stage_it: bool) -> None:
    """Deploy what the booted deployment's origin ref points at now (local repository)."""
    sysroot = _open(sysroot_path)
    from bootree.sysroot.upgrade import upgrade

    with sysroot.lock():
        result = upgrade(sysroot, allow_failed=allow_failed, stage_it=stage_it)
    click.echo(result.message)
    if result.deployed is not None and result.deployed.swap is not None:
        click.echo(result.deployed.swap.message)

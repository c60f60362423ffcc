"""``bootree admin``: deployment commands named and optioned as ``ostree admin``'s, plus
bootc's ``rollback`` and a boot simulator for directory sysroots.

Layer: cli. Each command opens the sysroot (``--sysroot``, else ``$OSTREE_SYSROOT``, else
``/``), takes its lock for anything that writes, calls :mod:`bootree.sysroot`, and prints what
ostree prints (the /etc merge summary, the bootloader line, status), or JSON with ``--json``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bootree.cli import cli
from bootree.cli._common import json_option
from bootree.cli._key_options import from_file_options
from bootree.cli.render import emit
from bootree.errors import RefNotFound, SysrootError
from bootree.format.checksum import Checksum
from bootree.sysroot import (
    DeployOptions,
    Origin,
    Sysroot,
    deploy,
    finalize_staged,
    ops,
)
from bootree.sysroot import stage as stage_deployment
from bootree.sysroot.deploy import check_downgrade
from bootree.sysroot.etcmerge import EtcDiff
from bootree.sysroot.swap import SwapResult

if TYPE_CHECKING:
    from bootree.sysroot.status import DeploymentStatus, SysrootStatus

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


@cli.group("admin", invoke_without_command=True)
@_sysroot_option
@click.option("--print-current-dir", is_flag=True, help="Print the directory of the booted (else first) deployment.")
@click.pass_context
def admin(ctx: click.Context, sysroot_path: Path | None, print_current_dir: bool) -> None:
    """Deployments of an OSTree sysroot (as 'ostree admin'), plus rollback and boot."""
    if print_current_dir:
        sysroot = _open(sysroot_path)
        d = sysroot.booted or (sysroot.deployments[0] if sysroot.deployments else None)
        if d is None:
            raise SysrootError("Not currently booted into an OSTree system and no deployments")
        click.echo(os.path.abspath(sysroot.deployment_dir(d)))
        ctx.exit()
    if ctx.invoked_subcommand is None:
        raise click.UsageError("No command specified", ctx)


@admin.command("init-fs")
@click.option("--modern", is_flag=True, help="Create only boot/ and ostree/ (the deployments provide the rest).")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
def init_fs_cmd(modern: bool, path: Path) -> None:
    """Create an empty sysroot (top-level dirs and a bare repo) in PATH."""
    ops.init_fs(path, modern=modern)


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
@click.option("--karg-proc-cmdline", is_flag=True, help="Start from the running kernel's /proc/cmdline.")
@click.option("--karg-none", is_flag=True, help="Start from no kernel arguments (not the merge deployment's).")
@click.option("--retain", is_flag=True, help="Keep all existing deployments.")
@click.option("--retain-pending", is_flag=True, help="Keep pending deployments.")
@click.option("--retain-rollback", is_flag=True, help="Keep rollback deployments.")
@click.option("--not-as-default", is_flag=True, help="Add the deployment after the current one, not as default.")
@click.option("--no-merge", is_flag=True, help="Do not carry over /etc changes or kernel arguments.")
@click.option("--stage", is_flag=True, help="Prepare now; merge /etc and switch at shutdown (finalize-staged).")
@click.option("--allow-downgrade", is_flag=True, help="Allow a commit older than the booted (or default) deployment's.")
@click.argument("refspec")
def deploy_cmd(
    sysroot_path: Path | None,
    stateroot: str | None,
    karg: tuple[str, ...],
    karg_append: tuple[str, ...],
    karg_delete: tuple[str, ...],
    karg_proc_cmdline: bool,
    karg_none: bool,
    retain: bool,
    retain_pending: bool,
    retain_rollback: bool,
    not_as_default: bool,
    no_merge: bool,
    stage: bool,
    allow_downgrade: bool,
    refspec: str,
) -> None:
    """Deploy REFSPEC (a ref or commit of the sysroot's repo) as the new default."""
    sysroot = _open(sysroot_path)
    with sysroot.lock():
        csum = sysroot.repo.resolve_rev(refspec)
        stateroot = stateroot or sysroot.default_stateroot()
        opts = DeployOptions(
            kargs=karg, kargs_append=karg_append, kargs_delete=karg_delete, no_merge=no_merge,
            not_as_default=not_as_default, retain=retain, retain_pending=retain_pending,
            retain_rollback=retain_rollback, base_kargs=_base_kargs(karg_proc_cmdline, karg_none),
        )
        origin = Origin.for_refspec(refspec)
        if not allow_downgrade:
            check_downgrade(sysroot, Checksum(csum), stateroot)
        do = stage_deployment if stage else deploy
        result = do(sysroot, Checksum(csum), stateroot=stateroot, origin=origin, opts=opts)
    if result.relabeled_var:
        click.echo("Relabeling /var (no stamp file 'var/.ostree-selabeled' found)")
    if result.etc is not None:
        click.echo(result.etc.message)
    _say_swap(result.swap)


def _base_kargs(proc_cmdline: bool, none: bool) -> str | None:
    """The command line ``--karg-proc-cmdline`` / ``--karg-none`` start from (``None``: the merge's).

    From /proc/cmdline, as ostree, the boot loader's own ``BOOT_IMAGE=`` and ``initrd=`` are dropped.
    """
    if proc_cmdline and none:
        raise click.UsageError("--karg-proc-cmdline and --karg-none cannot be combined")
    if none:
        return ""
    if not proc_cmdline:
        return None
    words = Path("/proc/cmdline").read_text().split()
    return " ".join(w for w in words if not w.startswith(("BOOT_IMAGE=", "initrd=")))


def _status_text(status: SysrootStatus, gpg: Callable[[DeploymentStatus], list[str]] | None = None) -> list[str]:
    """``ostree admin status``'s lines (plus bootree's boot-counting and health lines).

    ``gpg`` gives the ``GPG:`` lines of a deployment's commit signatures, as ostree prints them
    after the origin.
    """
    if not status.deployments:
        return ["No deployments."]
    lines = []
    if status.last_fallback is not None:
        fb = status.last_fallback
        lines.append(f"Automatic rollback: {', '.join(fb.get('from', []))} failed its health checks; "
                     f"the boot loader fell back to {fb.get('to')}")
    for d in status.deployments:
        star = "*" if d.booted else " "
        lines.append(f"{star} {d.ostree.stateroot} {d.name}{f' ({d.marker})' if d.marker else ''}")
        if d.version:
            lines.append(f"    Version: {d.version}")
        if d.pinned:
            lines.append("    Pinned: yes")
        c = d.boot_counting
        if c is not None and c.state != "good":
            lines.append(f"    Boot counting: {c.state} ({c.tries_left} tries left, {c.tries_done} done)")
        if d.health is not None:
            lines.append(f"    Health checks: FAILED ({d.health.reason})" if d.health.state == "failed"
                         else "    Health checks: passed")
        if d.composefs is not None:
            lines.append(f"    composefs: {d.composefs.digest}")
        if d.origin is None:
            lines.append("    origin: none")
        else:
            lines.append(f"    origin refspec: {d.refspec}" if d.refspec else "    origin: <unknown origin type>")
            if d.source_title:
                lines.append(f"    `- {d.source_title}")
        if gpg is not None:
            lines.extend(gpg(d))
    return lines


@admin.command("status")
@_sysroot_option
@click.option("--verify", is_flag=True, help="Also fail unless each deployment's commit has a trusted GPG signature.")
@json_option
def status_cmd(sysroot_path: Path | None, verify: bool, as_json: bool) -> None:
    """List deployments (booted '*', then staged/pending/rollback markers), as ostree.

    A deployment whose origin remote verifies GPG signatures shows them ("GPG: ..." lines).
    With --json: the bootree.sysroot.status/v1 document (docs/status-schema.md).
    """
    # On first use: its record types cost ~10 ms to build, which a deploy need not pay (issue 9).
    from bootree.sysroot.status import sysroot_status

    sysroot = _open(sysroot_path)
    status = sysroot_status(sysroot)
    for note in status.damage:  # stdout stays ostree's; what was damaged goes to stderr
        click.echo(f"warning: {note}", err=True)
    emit(status, as_json=as_json, text=lambda st: _status_text(st, lambda d: _gpg_lines(sysroot, d, verify)))


def _gpg_lines(sysroot: Sysroot, d: DeploymentStatus, verify: bool) -> list[str]:
    """The ``    GPG: `` lines of a deployment's commit, checked with its origin remote's keys."""
    from bootree.cli.sign_cmds import gpg_block, show_gpg_verifier
    from bootree.errors import RemoteNotFound, SignatureError
    from bootree.format.objects import ObjectType
    from bootree.pull import get_remote
    from bootree.sign import detached

    remote, sep, _ = (d.refspec or "").rpartition(":")
    if not sep or not remote:
        return []
    try:
        if not get_remote(sysroot.repo.config, remote).get_bool("gpg-verify", True):
            return []
    except RemoteNotFound:
        return []
    csum = Checksum(d.ostree.checksum)
    sigs = detached.signatures(detached.decode(sysroot.repo.read_commitmeta(csum)), detached.GPG_KEY)
    if not sigs:
        if verify:
            raise SignatureError(f"commit {csum}", "unsigned", "no GPG signature")
        return []
    data = sysroot.repo.load_metadata(ObjectType.COMMIT, csum)
    with show_gpg_verifier(sysroot.repo, None, remote) as verifier:
        checks = verifier.verify(data, sigs)
    if verify and not any(c.valid for c in checks):
        raise SignatureError(f"commit {csum}", "untrusted", "no trusted GPG signature")
    return [f"    GPG: {line.strip()}" for line in gpg_block(checks)[1:] if line.strip()]


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


@admin.command("post-copy")
@_sysroot_option
def post_copy_cmd(sysroot_path: Path | None) -> None:
    """Restore what a file-level copy of the sysroot loses: fs-verity on objects and images."""
    from bootree.sysroot.composefs import post_copy

    sysroot = _open(sysroot_path)
    with sysroot.lock():
        result = post_copy(sysroot)
    if not result.supported:
        click.echo("fs-verity is not supported on this file system: nothing changed after the first refusal")
    click.echo(f"fs-verity enabled on {result.files} files")


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
    emit(ops.config_diff(_open(sysroot_path), stateroot), as_json=as_json, text=_config_diff_text)


def _config_diff_text(diff: EtcDiff) -> list[str]:
    return [f"M    {p}" for p in diff.modified] + [f"D    {p}" for p in diff.removed] + [f"A    {p}" for p in diff.added]


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
@click.option("--os", "stateroot", default=None, help="Upgrade this stateroot's deployment (default: the booted one).")
@click.option("--allow-failed", is_flag=True, help="Deploy the commit even if it failed its health checks here.")
@click.option("--allow-downgrade", is_flag=True, help="Permit deploying a commit older than the current one.")
@click.option("--override-commit", metavar="CHECKSUM", help="Deploy CHECKSUM instead of the ref's latest commit.")
@click.option("--pull-only", is_flag=True, help="Only fetch the update into the repository; do not deploy.")
@click.option("--deploy-only", is_flag=True, help="Do not fetch; deploy what the repository already has.")
@click.option("--stage", "stage_it", is_flag=True, help="Stage the update (applied at shutdown).")
@from_file_options
def upgrade_cmd(
    sysroot_path: Path | None, stateroot: str | None, allow_failed: bool, allow_downgrade: bool,
    override_commit: str | None, pull_only: bool, deploy_only: bool, stage_it: bool,
    from_file: Path | None, keys_file: Path | None, keys_dir: Path | None,
) -> None:
    """Fetch the update of the booted (or --os) deployment's origin and deploy it, as ostree.

    A refspec ``REMOTE:REF`` is pulled from REMOTE first (with --deploy-only, not); a local
    ref is taken as it is. With --from-file the update comes from an offline update file
    instead: its signature is checked with --keys-file/--keys-dir, else the origin remote's
    keys, else the system's; then it is deployed as any upgrade, and the origin ref moves.
    """
    if pull_only and deploy_only:
        raise click.UsageError("--pull-only and --deploy-only cannot be combined")
    sysroot = _open(sysroot_path)
    if from_file is not None:
        if pull_only or deploy_only or override_commit:
            raise click.UsageError("--from-file cannot be combined with --pull-only, --deploy-only or --override-commit")
        from bootree.cli._delta_keys import run_upgrade_from_file

        run_upgrade_from_file(sysroot, from_file, keys_file, keys_dir, stateroot=stateroot, stage_it=stage_it,
                              allow_failed=allow_failed, allow_downgrade=allow_downgrade)
        return
    from bootree.sysroot.upgrade import upgrade, upgrade_base

    commit = Checksum(override_commit) if override_commit else None
    if not deploy_only:
        base = upgrade_base(sysroot, stateroot)
        remote, sep, ref = (base.refspec or "").rpartition(":")
        if sep and remote:
            from bootree.pull import get_remote, pull
            from bootree.sysroot.upgrade import endoflife_rebase

            config = get_remote(sysroot.repo.config, remote)
            pull(sysroot.repo, config, [f"{ref}@{commit}" if commit else ref], allow_downgrade=allow_downgrade)
            rebased = None if commit else endoflife_rebase(sysroot, base.refspec or "")
            if rebased is not None:  # the branch ended: fetch the one it names as well
                pull(sysroot.repo, config, [rebased.rpartition(":")[2]], allow_downgrade=allow_downgrade)
    if pull_only:
        return
    with sysroot.lock():
        result = upgrade(sysroot, allow_failed=allow_failed, stage_it=stage_it, stateroot=stateroot,
                         commit=commit, allow_downgrade=allow_downgrade)
    click.echo(result.message)
    if result.deployed is not None and result.deployed.swap is not None:
        click.echo(result.deployed.swap.message)


@admin.command("switch")
@_sysroot_option
@click.option("--os", "stateroot", default=None, help="Switch this stateroot's deployment (default: the booted one).")
@click.argument("refspec")
def switch_cmd(sysroot_path: Path | None, stateroot: str | None, refspec: str) -> None:
    """Make the deployment follow REFSPEC ([REMOTE:]REF) from now on, and deploy its commit.

    As ostree: a REF without REMOTE keeps the current origin's remote; a remote refspec is
    pulled first.
    """
    sysroot = _open(sysroot_path)
    from bootree.sysroot.upgrade import upgrade_base

    base = upgrade_base(sysroot, stateroot, configured=False)
    remote, sep, ref = refspec.rpartition(":")
    if not sep:
        old_remote, old_sep, _ = (base.refspec or "").rpartition(":")
        remote = old_remote if old_sep else ""
    if not ref:  # "REMOTE:" switches the remote and keeps the ref
        ref = (base.refspec or "").rpartition(":")[2]
    new_refspec = f"{remote}:{ref}" if remote else ref
    if new_refspec == base.refspec:
        raise SysrootError(f"Old and new refs are equal: {new_refspec}")
    if remote:
        from bootree.pull import get_remote, pull

        pull(sysroot.repo, get_remote(sysroot.repo.config, remote), [ref])
    with sysroot.lock():
        csum = sysroot.repo.resolve_rev(new_refspec)
        if csum is None:
            raise RefNotFound(new_refspec)
        result = deploy(sysroot, Checksum(csum), stateroot=base.stateroot, origin=Origin.for_refspec(new_refspec),
                        opts=DeployOptions())
    if result.etc is not None:
        click.echo(result.etc.message)
    _say_swap(result.swap)


@admin.command("set-origin")
@_sysroot_option
@click.option("--index", type=int, default=None, help="The deployment INDEX (default: the booted one).")
@click.option("--set", "-s", "set_options", multiple=True, metavar="KEY=VALUE", help="Set an option of the remote.")
@click.argument("remote")
@click.argument("url")
@click.argument("branch", required=False)
def set_origin_cmd(sysroot_path: Path | None, index: int | None, set_options: tuple[str, ...], remote: str, url: str,
                   branch: str | None) -> None:
    """Make a deployment follow REMOTE (added at URL unless it exists) and BRANCH (default: its ref)."""
    from bootree.cli._common import kv_option
    from bootree.pull.remote import add_remote

    sysroot = _open(sysroot_path)
    with sysroot.lock():
        repo = sysroot.repo
        if add_remote(repo.config, remote, url, options=[kv_option(o, "--set") for o in set_options],
                      if_not_exists=True):
            repo.save_config()
        ops.set_origin_remote(sysroot, index, remote, branch)


@admin.group("instutil")
def instutil_group() -> None:
    """Installer utilities (as 'ostree admin instutil'; ostree calls them not stable)."""


@instutil_group.command("set-kargs")
@_sysroot_option
@click.option("--merge", is_flag=True, help="Start from the deployment's current kernel arguments.")
@click.option("--import-proc-cmdline", is_flag=True, help="Start from the running kernel's /proc/cmdline.")
@click.option("--replace", multiple=True, metavar="NAME=VALUE", help="Replace a kernel argument's value(s).")
@click.option("--append", multiple=True, metavar="NAME=VALUE", help="Append a kernel argument.")
@click.argument("kargs", nargs=-1)
def instutil_set_kargs_cmd(
    sysroot_path: Path | None, merge: bool, import_proc_cmdline: bool, replace: tuple[str, ...],
    append: tuple[str, ...], kargs: tuple[str, ...],
) -> None:
    """Set the kernel arguments of the booted (else default) deployment in place.

    As ostree: the arguments start empty (--merge: the current ones; --import-proc-cmdline:
    the running kernel's), then --replace, --append and KARGS are applied in that order.
    """
    from bootree.format.kargs import Kargs

    sysroot = _open(sysroot_path)
    if not sysroot.deployments:
        raise SysrootError("Unable to find a deployment in sysroot")
    index = next((i for i, d in enumerate(sysroot.deployments) if d.same(sysroot.booted)), 0)
    current = sysroot.deployments[index]
    if import_proc_cmdline:
        base = Kargs.parse(_base_kargs(True, False) or "")
    elif merge:
        base = current.kargs
    else:
        base = Kargs()
    new = base.replace_all(replace).append_all(append).append_all(kargs)
    with sysroot.lock():
        ops.set_kargs_in_place(sysroot, index, new)

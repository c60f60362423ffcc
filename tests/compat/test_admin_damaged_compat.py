"""A damaged boot configuration: bootree reads it as ostree 2022.7 does, and never loses a deployment.

Issue 10, defect 2: with ``boot/loader`` missing, ``admin status`` said "No deployments." (ostree
falls back to ``loader.0``) and the next ``admin deploy`` deleted the old deployment and its local
``/etc``. The rule: reading either recovers as ostree does or refuses with one error line; a
write never deletes a deployment the configuration could not account for.

Each case damages a sysroot ostree built (two deployments, a local ``/etc`` change in the
newest), compares ``admin status`` of both tools (the same listing, or both refuse), runs
``bootree admin deploy`` and ``admin cleanup`` on it, and ends with both old deployments and
the local ``/etc`` file intact and ostree reading the same state as bootree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(shutil.which("ostree") is None, reason="the ostree binary is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ostree admin on a fake sysroot needs root"),
]

ENV = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")
DEPLOY = "ostree/deploy/os/deploy"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=ENV, capture_output=True, text=True, check=False)


def ostree(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("ostree", *args)


def bootree(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "bootree", *args)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sysroot made by ostree: v1 then v2 deployed, ``etc/local.conf`` added in v2's /etc."""
    base = tmp_path_factory.mktemp("damaged")
    sr = base / "sysroot"
    sr.mkdir()
    _ok(ostree("admin", "init-fs", str(sr)))
    _ok(ostree("admin", "os-init", f"--sysroot={sr}", "os"))
    for v in (1, 2):
        tree = make_tree(base / f"t{v}", v, with_shell=False)
        _ok(ostree(f"--repo={sr}/ostree/repo", "commit", "-b", "os/stable", f"--tree=dir={tree}",
                   f"--timestamp=@{1700000000 + v}", "--owner-uid=0", "--owner-gid=0", "--no-xattrs",
                   f"--add-metadata-string=version={v}"))
        _ok(ostree("admin", "deploy", f"--sysroot={sr}", "--os=os", "os/stable"))
    newest = _deployments(sr)[0]
    (sr / DEPLOY / newest / "etc/local.conf").write_text("mine\n")
    return sr


def _deployments(sr: Path) -> list[str]:
    """Deployment names, newest (by ostree's status order) first."""
    lines = _ok(ostree("admin", "status", f"--sysroot={sr}")).splitlines()
    return [line.split()[-1] for line in lines if line.startswith("  os ")]


def _loader_missing(sr: Path) -> None:
    (sr / "boot/loader").unlink()


def _loader_dangling(sr: Path) -> None:
    target = os.readlink(sr / "boot/loader")
    (sr / "boot/loader").unlink()
    os.symlink("loader.1" if target == "loader.0" else "loader.0", sr / "boot/loader")


def _loader_directory(sr: Path) -> None:
    target = os.readlink(sr / "boot/loader")
    (sr / "boot/loader").unlink()
    shutil.copytree(sr / "boot" / target, sr / "boot/loader")


def _entries_missing(sr: Path) -> None:
    shutil.rmtree(sr / "boot/loader/entries")


def _entry_names_missing_deployment(sr: Path) -> None:
    entry = sorted((sr / "boot/loader/entries").glob("ostree-*.conf"))[0]
    entry.write_text(re.sub(r"(ostree=/ostree/boot\.[01]/os/[0-9a-f]{64})/[0-9]+", r"\1/7", entry.read_text()))


def _bootversion_link_missing(sr: Path) -> None:
    for name in os.listdir(sr / "ostree"):
        if name.count(".") == 1 and name.startswith("boot."):
            (sr / "ostree" / name).unlink()


def _origin_not_utf8(sr: Path) -> None:
    origin = sorted((sr / DEPLOY).glob("*.origin"))[0]
    origin.write_bytes(origin.read_bytes().replace(b"os/stable", b"os/st\xffable"))


def _entry_not_utf8(sr: Path) -> None:
    entry = sorted((sr / "boot/loader/entries").glob("ostree-*.conf"))[0]
    entry.write_bytes(entry.read_bytes() + b"title \xff\n")


#: (damage, does ostree still list the deployments?, does ostree refuse to load?)
CASES: dict[str, tuple[Callable[[Path], None], bool, bool]] = {
    "loader-missing": (_loader_missing, True, False),
    "loader-dangling": (_loader_dangling, False, False),
    "loader-directory": (_loader_directory, False, True),
    "entries-missing": (_entries_missing, False, False),
    "entry-names-missing-deployment": (_entry_names_missing_deployment, False, True),
    "ostree-boot-link-missing": (_bootversion_link_missing, False, True),
    "origin-not-utf8": (_origin_not_utf8, False, True),  # issue 10 #7: one line, not a traceback
    "entry-not-utf8": (_entry_not_utf8, False, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_boot_config_never_loses_a_deployment(pristine: Path, tmp_path: Path, case: str) -> None:
    damage, listed, refused = CASES[case]
    sr = tmp_path / "sysroot"
    shutil.copytree(pristine, sr, symlinks=True)
    before = _deployments(sr)
    assert len(before) == 2
    damage(sr)

    # Reading: the same listing as ostree, or both refuse with one line.
    o, b = ostree("admin", "status", f"--sysroot={sr}"), bootree("admin", "status", f"--sysroot={sr}")
    assert (o.returncode != 0) == refused == (b.returncode != 0), (o.stderr, b.stderr)
    if refused:
        assert b.stderr.startswith("error: ") and "Traceback" not in b.stderr
        assert len(b.stderr.strip().splitlines()) <= 2  # the error and its hint
    else:
        assert b.stdout == o.stdout
        assert ("No deployments." in b.stdout) != listed
        if not listed:
            assert "warning:" in b.stderr  # the damage is named on stderr, status stays ostree's

    # Writing: either it accounts for every deployment (the ostree fallback) or it refuses.
    deploy = bootree("admin", "deploy", f"--sysroot={sr}", "--os=os", "--retain", "os/stable")
    cleanup = bootree("admin", "cleanup", f"--sysroot={sr}")
    if listed:
        assert deploy.returncode == 0, deploy.stderr
        assert cleanup.returncode == 0, cleanup.stderr
        after = _deployments(sr)  # ostree reads what bootree wrote: the new one, then the old ones
        assert after[1:] == before
        new = sr / DEPLOY / after[0]
        assert (new / "etc/local.conf").read_text() == "mine\n"  # /etc was merged from the old one
        assert _ok(bootree("admin", "status", f"--sysroot={sr}")) == _ok(ostree("admin", "status", f"--sysroot={sr}"))
    else:
        for proc in (deploy, cleanup):
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        if not refused:
            assert "refusing to change the sysroot" in deploy.stderr
    for name in before:  # the old deployments and the local /etc are intact
        assert (sr / DEPLOY / name / "usr/lib/os-release").is_file()
        assert (sr / DEPLOY / f"{name}.origin").is_file()
    assert (sr / DEPLOY / before[0] / "etc/local.conf").read_text() == "mine\n"
    # ostree reads the same state as bootree (listing or refusal).
    o2, b2 = ostree("admin", "status", f"--sysroot={sr}"), bootree("admin", "status", f"--sysroot={sr}")
    assert (o2.returncode == 0) == (b2.returncode == 0)
    if o2.returncode == 0:
        assert o2.stdout == b2.stdout

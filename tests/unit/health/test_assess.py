"""Boot assessment on a directory sysroot with an ESP mirror: bless, failure, fallback, upgrade, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

from bootree.format.checksum import Checksum
from bootree.format.keyfile import KeyFile
from bootree.health import assess_boot
from bootree.health.efivars import LOADER_GUID, read_loader_var
from bootree.repo import CommitOptions
from bootree.sysroot import DeployOptions, Origin, Sysroot, assessment, deploy, esp, ops
from bootree.sysroot.upgrade import upgrade


class Machine:
    """A sysroot directory, its ESP directory and an efivarfs directory: a booted machine on disk."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = base / "sysroot"
        self.esp = base / "esp"
        self.efivars = base / "efivars"
        self.esp.mkdir()
        self.efivars.mkdir()
        ops.init_fs(self.path)
        s = Sysroot.open(self.path)
        s.repo.config.set("bootree", "esp", "boot/efi")
        s.repo.config.set("sysroot", "boot-counting-tries", "2")
        s.repo.save_config()
        os.symlink(self.esp, self.path / "boot/efi")
        with s.lock():
            ops.os_init(s, "os")
        self.csum: dict[int, Checksum] = {}

    def open(self) -> Sysroot:
        return Sysroot.open(self.path)

    def commit(self, v: int, *, healthy: bool) -> Checksum:
        tree = make_tree(self.base / f"t{v}", v, with_shell=False)
        chk = tree / "usr/lib/bootree/health.d/required.d/10-check"
        chk.parent.mkdir(parents=True)
        chk.write_text("#!/bin/sh\nexit 0\n" if healthy else "#!/bin/sh\necho down\nexit 1\n")
        chk.chmod(0o755)
        s = self.open()
        self.csum[v] = s.repo.commit([tree], branch=f"os/v{v}", subject=f"v{v}",
                                     options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True))
        return self.csum[v]

    def deploy(self, v: int, refspec: str = "os/stable") -> None:
        s = self.open()
        with s.lock():
            deploy(s, self.csum[v], stateroot="os", origin=Origin.for_refspec(refspec), opts=DeployOptions())

    def boot(self) -> str:
        """Play systemd-boot: pick the default ESP entry, bump its counter, record the boot and vars."""
        names = esp.list_entries(self.esp)
        chosen = esp.loader_default(names)
        assert chosen is not None
        n = esp.EntryName.parse(chosen)
        assert n is not None
        for f in self.efivars.iterdir():
            f.unlink()
        if n.left is not None:
            bumped = esp.EntryName(n.seq, n.stateroot, n.deployment, max(n.left - 1, 0), n.done + 1)
            os.rename(self.esp / "loader/entries" / chosen, self.esp / "loader/entries" / bumped.filename)
            self._var("LoaderBootCountPath", f"\\loader\\entries\\{bumped.filename}")
        self._var("LoaderEntrySelected", chosen[:-5])
        kf = KeyFile()
        kf.set("booted", "stateroot", n.stateroot)
        kf.set("booted", "deployment", n.deployment)
        rec = self.path / "run/bootree/booted"
        rec.parent.mkdir(parents=True, exist_ok=True)
        rec.write_text(kf.to_text())
        return n.deployment

    def _var(self, name: str, value: str) -> None:
        (self.efivars / f"{name}-{LOADER_GUID}").write_bytes(b"\x07\0\0\0" + (value + "\0").encode("utf-16-le"))

    def assess(self) -> object:
        s = self.open()
        with s.lock():
            assert s.booted is not None
            return assess_boot(s, root=s.deployment_dir(s.booted), efivars_dir=self.efivars, timeout=10)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    if os.geteuid() != 0:
        pytest.skip("a bare repo and deployments need root (real ownership)")
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    yield Machine(tmp_path)


def test_efivar_decoding(tmp_path: Path) -> None:
    (tmp_path / f"LoaderBootCountPath-{LOADER_GUID}").write_bytes(b"\x06\0\0\0" + "\\a\\b+1-1.conf\0".encode("utf-16-le"))
    assert read_loader_var("LoaderBootCountPath", efivars=tmp_path) == "\\a\\b+1-1.conf"
    assert read_loader_var("LoaderEntrySelected", efivars=tmp_path) is None


def test_good_boot_is_blessed(machine: Machine) -> None:
    machine.commit(1, healthy=True)
    machine.deploy(1)
    assert machine.boot() == f"{machine.csum[1]}.0"
    r = machine.assess()
    assert r.healthy and not r.reboot and r.blessed == f"bootree-1-os-{machine.csum[1]}.0.conf"  # type: ignore[attr-defined]
    assert esp.list_entries(machine.esp) == [f"bootree-1-os-{machine.csum[1]}.0.conf"]
    s = machine.open()
    assert assessment.load(s).get(s.deployments[0]).state == "good"  # type: ignore[union-attr]


def test_failed_update_falls_back_and_is_not_upgraded_again(machine: Machine) -> None:
    v1, v2 = machine.commit(1, healthy=True), machine.commit(2, healthy=False)
    machine.deploy(1)
    machine.boot()
    machine.assess()
    machine.deploy(2)
    for _attempt in (1, 2):  # two tries, both unhealthy: the caller is told to reboot
        assert machine.boot() == f"{v2}.0"
        r = machine.assess()
        assert not r.healthy and r.reboot and r.blessed is None  # type: ignore[attr-defined]
        assert [c.check.name for c in r.results if c.blocking] == ["10-check"]  # type: ignore[attr-defined]
    assert f"bootree-2-os-{v2}.0+0-2.conf" in esp.list_entries(machine.esp)
    # out of tries: the loader boots v1; the health run records the fallback and makes it permanent
    assert machine.boot() == f"{v1}.0"
    r = machine.assess()
    assert r.healthy and [a.deployment for a in r.fell_back_from] == [f"{v2}.0"]  # type: ignore[attr-defined]
    assert r.rollback_made_default  # type: ignore[attr-defined]
    s = machine.open()
    assert [d.csum for d in s.deployments] == [v1, v2]
    assert esp.loader_default(esp.list_entries(machine.esp)) == f"bootree-3-os-{v1}.0.conf"
    assert assessment.failed_commits(s) == {v2}
    fields = assessment.status_fields(s, s.deployments[1])
    assert fields["health"]["state"] == "failed" and fields["bootCounting"]["state"] == "bad"
    assert "10-check" in fields["health"]["failedChecks"]
    # upgrade does not deploy the failed commit again, unless asked
    s.repo.set_ref("os/stable", v2)
    with s.lock():
        res = upgrade(s)
    assert res.skipped_failed and res.deployed is None and "failed its health checks" in res.message
    # CLI status, human and JSON, as the booted system shows them
    env = {**os.environ, "OSTREE_SYSROOT_DEBUG": "mutable-deployments"}
    out = subprocess.run([sys.executable, "-m", "bootree", "admin", "status", f"--sysroot={machine.path}", "--json"],
                         capture_output=True, text=True, check=True, env=env).stdout
    st = json.loads(out)
    assert st["lastFallback"]["from"] == [f"{v2}.0"] and st["deployments"][1]["health"]["state"] == "failed"
    human = subprocess.run([sys.executable, "-m", "bootree", "admin", "status", f"--sysroot={machine.path}"],
                           capture_output=True, text=True, check=True, env=env).stdout
    assert "Automatic rollback:" in human and "Health checks: FAILED" in human
    with s.lock():
        res = upgrade(s, allow_failed=True)
    assert res.deployed is not None and machine.open().deployments[0].csum == v2


def test_upgrade_deploys_a_new_commit(machine: Machine) -> None:
    v1, v3 = machine.commit(1, healthy=True), machine.commit(3, healthy=True)
    machine.deploy(1)
    machine.boot()
    s = machine.open()
    s.repo.set_ref("os/stable", v1)
    with s.lock():
        assert upgrade(s).up_to_date
    s.repo.set_ref("os/stable", v3)
    with s.lock():
        res = upgrade(s)
    assert res.deployed is not None and machine.open().deployments[0].csum == v3
    assert esp.loader_default(esp.list_entries(machine.esp)) == f"bootree-2-os-{v3}.0+2.conf"


def test_health_run_cli_exit_status(machine: Machine) -> None:
    """0 when healthy (JSON report); 4 when unhealthy and nothing counts (no EFI loader variables here)."""
    machine.commit(1, healthy=True)
    machine.commit(2, healthy=False)
    env = {**os.environ, "OSTREE_SYSROOT_DEBUG": "mutable-deployments", "BOOTREE_ESP": str(machine.esp)}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bootree", "health", "run", f"--sysroot={machine.path}", "--json"],
                              capture_output=True, text=True, env=env, check=False)

    machine.deploy(1)
    machine.boot()
    p = run()
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["healthy"] and [c["name"] for c in report["checks"]] == ["10-check"]
    machine.deploy(2)
    machine.boot()
    p = run()
    assert p.returncode in (3, 4) and not json.loads(p.stdout)["healthy"]  # 4 without EFI variables

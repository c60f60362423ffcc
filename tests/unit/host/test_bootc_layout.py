"""bootc verbs on a directory sysroot from ``oci:`` layouts (no registry, no external tools)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "oci"))
from ocigen import Entry, base_layers, write_layout  # type: ignore[import-not-found]

from bootree.cli import main
from bootree.host.bootc import origin_for
from bootree.oci.reference import OstreeImageReference
from bootree.sysroot import Sysroot, ops

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="deployments of a bare-user repo need root here")
SCHEMA = json.loads((Path(__file__).parents[2] / "integration/bootc-host.schema.json").read_text())


@pytest.fixture(autouse=True)
def _mutable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_switch_upgrade_rollback_from_oci_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    lay = tmp_path / "lay"
    layers = base_layers()
    d1 = write_layout(lay, layers, tag="stable")
    sr = tmp_path / "sysroot"
    ops.init_fs(sr)
    img = f"oci:{lay}:stable"
    rc, out, err = run(capsys, "status", f"--sysroot={sr}", "--format=json")
    assert json.loads(out)["status"] == {"staged": None, "booted": None, "rollback": None, "rollbackQueued": False,
                                         "type": None, "usrOverlay": None, "readOnly": False}
    rc, out, err = run(capsys, "switch", f"--sysroot={sr}", img)
    assert rc == 1 and "--stateroot" in err
    rc, out, err = run(capsys, "switch", f"--sysroot={sr}", "--stateroot=os", img)
    assert rc == 0, err
    assert out.splitlines()[-2:] == ["  Version: stable", f"  Digest: {d1}"]
    s = Sysroot.open(sr)
    assert (sr / "ostree/deploy/os/var/lib/demo/state").read_bytes() == b"s", "image /var seeds a new stateroot"
    (sr / "ostree/deploy/os/var/lib/demo/state").write_bytes(b"local")
    assert s.deployments[0].origin is not None
    assert s.deployments[0].origin.container_image_reference == f"ostree-unverified-image:{img}"
    run(capsys, "admin", "boot", f"--sysroot={sr}")
    assert run(capsys, "upgrade", f"--sysroot={sr}")[1].strip() == "No update available."
    d2 = write_layout(lay, [*layers, [Entry("usr/bin/new", data=b"2")]], tag="stable", labels={"version": "two"})
    rc, out, _ = run(capsys, "upgrade", f"--sysroot={sr}", "--check")
    assert out.splitlines()[0] == f"Update available for: ostree-unverified-image:{img}"
    assert "Total new layers: 1" in out
    rc, out, err = run(capsys, "upgrade", f"--sysroot={sr}", "--download-only")
    assert rc == 0 and f"Digest: {d2}" in out and "layers already present: 3; layers fetched: 1" in out
    host = json.loads(run(capsys, "status", f"--sysroot={sr}", "--json")[1])
    jsonschema.validate(host, SCHEMA)
    assert host["status"]["staged"]["downloadOnly"] is True
    assert run(capsys, "upgrade", f"--sysroot={sr}", "--from-downloaded")[1].strip() == \
        "Staged deployment will now be applied on reboot"
    rc, out, _ = run(capsys, "upgrade", f"--sysroot={sr}", "--apply")
    assert "Staged update present, not changed" in out
    run(capsys, "admin", "boot", f"--sysroot={sr}")
    host = json.loads(run(capsys, "status", f"--sysroot={sr}", "--json")[1])
    assert host["status"]["booted"]["image"]["imageDigest"] == d2
    assert (sr / "ostree/deploy/os/var/lib/demo/state").read_bytes() == b"local", "/var is never updated"
    assert host["status"]["rollback"]["image"]["imageDigest"] == d1
    rc, out, _ = run(capsys, "rollback", f"--sysroot={sr}", "--apply")
    assert out.splitlines()[0] == "Next boot: rollback deployment"
    host = json.loads(run(capsys, "status", f"--sysroot={sr}", "--json")[1])
    jsonschema.validate(host, SCHEMA)
    assert host["status"]["booted"]["image"]["imageDigest"] == d1
    rc, out, _ = run(capsys, "status", f"--sysroot={sr}", "--format=humanreadable")
    assert f"● Booted image: {img}" in out and f"Rollback image: {img}" in out
    rc, out, _ = run(capsys, "status", f"--sysroot={sr}", "--format=yaml")
    assert out.startswith('apiVersion: "org.containers.bootc/v1"\nkind: "BootcHost"\n')


def test_images_no_deployment_uses_are_pruned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bootree.oci.reference import ImageReference, image_ref

    sr = tmp_path / "sysroot"
    ops.init_fs(sr)
    base = base_layers()
    for name in "abcd":
        lay = tmp_path / name
        write_layout(lay, [*base, [Entry(f"usr/share/{name}.txt", data=name.encode())]])
        extra = ["--stateroot=os"] if name == "a" else []
        rc, out, err = run(capsys, "switch", f"--sysroot={sr}", *extra, f"oci:{lay}")
        assert rc == 0, err
        run(capsys, "admin", "boot", f"--sysroot={sr}")
    s = Sysroot.open(sr)
    refs = s.repo.list_refs("ostree/container/image")
    assert image_ref(ImageReference.parse(f"oci:{tmp_path / 'a'}")) not in refs
    assert image_ref(ImageReference.parse(f"oci:{tmp_path / 'd'}")) in refs
    assert "Pruned images: 1 (layers: 1," in out
    # GC runs at staging time (as bootc's): d was staged while b (rollback) and c (booted) were
    # deployed, so a went; b's deployment was dropped only by d's finalization afterwards.
    kept = {image_ref(ImageReference.parse(f"oci:{tmp_path / n}")) for n in "bcd"}
    assert set(refs) == kept
    layer_refs = s.repo.list_refs("ostree/container/blob")
    assert len(layer_refs) == 3 + 3  # the shared base layers + one unique layer per kept image


def test_missing_bootc_label_is_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lay = tmp_path / "lay"
    write_layout(lay, base_layers(), labels={"containers.bootc": "0"})
    sr = tmp_path / "sysroot"
    ops.init_fs(sr)
    rc, out, err = run(capsys, "switch", f"--sysroot={sr}", "--stateroot=os", f"oci:{lay}")
    assert rc == 0, err
    assert "notice: Image is missing label: containers.bootc" in out


def test_origin_keeps_other_groups_and_drops_refspec() -> None:
    from bootree.sysroot import Origin

    base = Origin("[origin]\nrefspec=os:main\n\n[libostree-transient]\npinned=true\n")
    o = origin_for(OstreeImageReference.parse("ostree-unverified-registry:quay.io/x/y:1"), base)
    assert o.refspec is None and o.pinned
    assert o.container_image_reference == "ostree-unverified-registry:quay.io/x/y:1"

"""``--progress-fd`` events of real pulls, and encapsulated ostree images, against a real registry.

The registry, the umoci-built plain images and the helpers are those of
``test_bootc_registry.py``. The events are parsed line by line and validated against a schema
written from bootc's ``progress_jsonl.rs`` (bootc-progress.schema.json: the field names serde
emits, camelCase). Encapsulated images are written by the tests' own ostree-ext writer
(``tests/unit/oci/ostreegen.py``), pushed by skopeo, and deployed: the deployment's commit
descends from the very commit that was encapsulated, and the real ``ostree fsck`` passes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_bootc_registry import (  # type: ignore[import-not-found]
    Registry,
    _deployment_root,
    _manifest,
    bootree,
    env,
    new_sysroot,
    push,
    pytestmark,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "oci"))
from ocigen import KERNEL, Entry  # type: ignore[import-not-found]
from ostreegen import commit_entries, write_encapsulated  # type: ignore[import-not-found]

from bootree.format.gvariant import Variant
from bootree.oci.reference import blob_ref
from bootree.repo import Repo
from bootree.sysroot import Sysroot

__all__ = ["env", "pytestmark"]

SCHEMA = json.loads((Path(__file__).parent / "bootc-progress.schema.json").read_text())


def _events(path: Path) -> list[dict[str, Any]]:
    import jsonschema

    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    for ev in events:
        jsonschema.validate(ev, SCHEMA)
    return events


def _switch_with_events(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str],
                        name: str) -> tuple[int, str, list[dict[str, Any]]]:
    path = tmp_path / f"{name}.jsonl"
    with open(path, "wb") as f:
        rc, out, err = bootree(capsys, *argv, f"--progress-fd={f.fileno()}")
    assert rc == 0, err
    return rc, out, _events(path)


def test_progress_fd_events_of_switch_and_upgrade(env: tuple[Registry, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    reg, images = env
    repo = "demo/os-progress:latest"
    d1 = push(reg, images, "v1", repo)
    image = f"{reg.host}/{repo}"
    sysroot = new_sysroot(tmp_path)
    _, _, events = _switch_with_events(capsys, tmp_path, ["switch", f"--sysroot={sysroot}", "--stateroot=demo",
                                                          image], "switch")
    layers = _manifest(reg.host, repo)["layers"]
    assert isinstance(layers, list)
    total = sum(x["size"] for x in layers)
    assert events[0] == {"type": "Start", "version": "0.1.0"}
    assert sum(e["type"] == "Start" for e in events) == 1
    pulling = [e for e in events if e["type"] == "ProgressBytes"]
    assert pulling and all(e["task"] == "pulling" and e["id"] == d1 for e in pulling)
    last = pulling[-1]
    assert (last["bytes"], last["bytesTotal"], last["bytesCached"]) == (total, total, 0)
    assert (last["steps"], last["stepsTotal"], last["stepsCached"]) == (len(layers), len(layers), 0)
    assert sorted(t["id"] for t in last["subtasks"]) == sorted(x["digest"][7:28] for x in layers)
    assert all(t["subtask"] == "layer" and t["bytes"] == t["bytesTotal"] for t in last["subtasks"])
    bytes_seen = [e["bytes"] for e in pulling]
    assert bytes_seen == sorted(bytes_seen), "progress never goes back"
    steps = [(e["task"], e["steps"], [(s["subtask"], s["completed"]) for s in e["subtasks"]])
             for e in events if e["type"] == "ProgressSteps"]
    assert steps[0] == ("importing", 0, [("importing", False)])
    assert steps[1] == ("importing", 1, [("importing", True)])
    assert [s[0] for s in steps[2:]] == ["staging"] * 5
    assert steps[-1] == ("staging", 3, [("merging", True), ("deploying", True), ("bound_images", True),
                                        ("cleanup", True)])
    assert events.index(pulling[-1]) < len(events) - len(steps), "pulling comes before importing and staging"

    bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
    d2 = push(reg, images, "v2", repo)
    new = _manifest(reg.host, repo)["layers"][-1]  # type: ignore[index]
    # upgrade --check: the layers an update would fetch, with their sizes (bootc issue #247).
    rc, out, _ = bootree(capsys, "upgrade", f"--sysroot={sysroot}", "--check", "--json")
    check = json.loads(out)
    assert rc == 0 and check["updateAvailable"] and check["imageDigest"] == d2
    assert check["newLayers"] == [{"digest": new["digest"], "size": new["size"], "mediaType": new["mediaType"]}]
    assert check["bytesToFetch"] == new["size"] and check["layersTotal"] == len(layers) + 1
    rc, out, _ = bootree(capsys, "upgrade", f"--sysroot={sysroot}", "--check")
    assert f"Total new layers: 1  Size: {new['size']}" in out
    _, out, events = _switch_with_events(capsys, tmp_path, ["upgrade", f"--sysroot={sysroot}"], "upgrade")
    assert f"Digest: {d2}" in out
    last = [e for e in events if e["type"] == "ProgressBytes"][-1]
    assert (last["bytes"], last["bytesTotal"], last["bytesCached"]) == (new["size"], new["size"], total)
    assert (last["steps"], last["stepsTotal"], last["stepsCached"]) == (1, 1, len(layers))


def test_progress_fd_must_not_be_a_standard_stream(env: tuple[Registry, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    sysroot = new_sysroot(tmp_path)
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", "--progress-fd=1",
                         f"{env[0].host}/demo/none:latest")
    assert rc == 1 and "error: Cannot use fd 1 for progress JSON" in err


def _os_tree(version: str) -> list[Entry]:
    return [
        Entry("usr", "d", mode=0o755), Entry("usr/bin", "d", mode=0o755),
        Entry("usr/bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755, xattrs={"user.demo": "1"}),
        Entry("usr/bin/hello-link", "h", link="usr/bin/hello"), Entry("usr/bin/sh", "l", link="hello"),
        Entry("usr/lib/modules/6.1.0-test", "d", mode=0o755), Entry(KERNEL, data=b"kernel\n"),
        Entry("usr/lib/modules/6.1.0-test/initramfs.img", data=b"initrd\n"),
        Entry("usr/share/os/release", data=f"{version}\n".encode() * 100),
        *[Entry(f"usr/share/data/f{i:02d}", data=bytes([i]) * (4096 + i)) for i in range(24)],
        Entry("usr/etc", "d", mode=0o755), Entry("usr/etc/os.conf", data=f"v={version}\n".encode()),
        Entry("sysroot", "d", mode=0o755), Entry("var", "d", mode=0o755),
    ]


def test_encapsulated_image_from_a_registry(env: tuple[Registry, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from test_bootc_registry import _run  # type: ignore[import-not-found]

    reg, _ = env
    src = Repo.init(tmp_path / "src")
    meta = [("ostree.bootable", Variant("b", True))]
    c1 = commit_entries(src, _os_tree("1"), tmp_path, subject="v1", timestamp=1700000000,
                        metadata=[("version", Variant("s", "1")), *meta])
    lay = tmp_path / "encap"
    write_encapsulated(lay, src, c1, tag="v1", chunks=3)
    repo = "demo/encap:latest"
    _run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{lay}:v1", f"docker://{reg.host}/{repo}")
    sysroot = new_sysroot(tmp_path)
    image = f"{reg.host}/{repo}"
    path = tmp_path / "encap.jsonl"
    with open(path, "wb") as f:
        rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", image,
                               f"--progress-fd={f.fileno()}")
    assert rc == 0, err
    subtasks = [e for e in _events(path) if e["type"] == "ProgressBytes"][-1]["subtasks"]
    assert {t["subtask"] for t in subtasks} == {"ostree chunk"} and len(subtasks) == 4
    s = Sysroot.open(sysroot)
    dep = s.deployments[0]
    layers = _manifest(reg.host, repo)["layers"]
    assert s.repo.resolve_rev(blob_ref(layers[0]["digest"])) == c1  # type: ignore[index]
    merged = s.repo.read_commit(dep.csum)
    assert merged.parent == c1
    assert (merged.root_tree, merged.root_meta) == (src.read_commit(c1).root_tree, src.read_commit(c1).root_meta)
    root = _deployment_root(sysroot)
    assert (root / "usr/etc/os.conf").read_bytes() == b"v=1\n" and (root / "etc/os.conf").read_bytes() == b"v=1\n"
    assert (root / "usr/bin/hello").stat().st_ino == (root / "usr/bin/hello-link").stat().st_ino
    if shutil.which("ostree"):
        subprocess.run(["ostree", f"--repo={sysroot}/ostree/repo", "fsck"], check=True, capture_output=True)
        out_rev = subprocess.run(["ostree", f"--repo={sysroot}/ostree/repo", "rev-parse",
                                  blob_ref(layers[0]["digest"])],  # type: ignore[index]
                                 check=True, capture_output=True, text=True).stdout.strip()
        assert out_rev == c1

    bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
    c2 = commit_entries(src, _os_tree("2"), tmp_path, subject="v2", timestamp=1700000100,
                        metadata=[("version", Variant("s", "2")), *meta])
    write_encapsulated(lay, src, c2, tag="v2", chunks=3)
    _run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{lay}:v2", f"docker://{reg.host}/{repo}")
    mark = reg.mark()
    rc, _, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0, err
    layers2 = _manifest(reg.host, repo)["layers"]
    fetched = set(reg.blob_bytes(since=mark))
    changed = {x["digest"] for x in layers2} - {x["digest"] for x in layers}  # type: ignore[union-attr]
    assert changed and fetched - {_manifest(reg.host, repo)["config"]["digest"]} == changed  # type: ignore[index]
    assert len(changed) < len(layers2), "unchanged chunk layers are not fetched again"
    staged = Sysroot.open(sysroot).staged
    assert staged is not None and Sysroot.open(sysroot).repo.read_commit(staged.csum).parent == c2

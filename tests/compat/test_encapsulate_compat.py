"""``container encapsulate`` read back by the real ostree: the layers, extracted in order, hold a
``bare-split-xattrs`` repository that ``ostree fsck`` verifies object by object (xattrs from the
``.file-xattrs`` objects), and whose commit checks out to the tree ostree itself committed.

That is the contract ostree-ext's format makes (``tar/export.rs``): an encapsulated image carries
the ostree commit intact, so bootc can import it as objects, not only as a filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import Dir, File, Link, make_tree, snapshot

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(shutil.which("ostree") is None or shutil.which("tar") is None, reason="needs ostree and tar"),
    pytest.mark.skipif(os.geteuid() != 0, reason="extracting owners of a bare-split-xattrs repository needs root"),
]
BOOTREE = str(Path(sys.executable).with_name("bootree"))


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("max_layers", ["1", "4"])
def test_ostree_fscks_and_checks_out_the_encapsulated_commit(tmp_path: Path, max_layers: str) -> None:
    tree = make_tree(tmp_path / "tree", {
        "usr/bin/tool": File(b"#!/bin/sh\n", 0o755, {"user.k": b"\x00v"}),
        "usr/bin/tool2": File(b"#!/bin/sh\n", 0o755, {"user.k": b"\x00v"}),
        "usr/bin/sh": Link("tool"),
        "usr/lib/modules/6.1.0-c/vmlinuz": File(b"kernel"),
        "usr/etc/conf": File(b"a=1\n", 0o600),
        "usr/share/empty": File(b""),
        "usr/share/d": Dir(0o700),
        "var/tmp": Dir(0o1777),
    })
    os.chown(tree / "usr/share/empty", 1000, 1000)
    repo = tmp_path / "repo"
    _run("ostree", f"--repo={repo}", "init", "--mode=archive")
    commit = _run("ostree", f"--repo={repo}", "commit", "-b", "os", "-s", "c", f"--tree=dir={tree}").strip()
    out = tmp_path / "oci"
    _run(BOOTREE, "container", "encapsulate", f"--repo={repo}", f"--max-layers={max_layers}", "os", f"oci:{out}")
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    ex = tmp_path / "extracted"
    ex.mkdir()
    for layer in manifest["layers"]:
        # GNU tar, as a container runtime unpacks: links to symlink objects stay links (Python's
        # tarfile follows them and chmods the target).
        _run("tar", "-x", "-z", "-f", str(out / "blobs/sha256" / layer["digest"][7:]), "-C", str(ex),
             "--same-owner", "--numeric-owner")
    inner = ex / "sysroot/ostree/repo"
    assert "mode=bare-split-xattrs" in (inner / "config").read_text()
    assert (inner / "objects" / commit[:2] / f"{commit[2:]}.commit").is_file()
    fsck = subprocess.run(["ostree", f"--repo={inner}", "fsck"], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "no errors found" in fsck.stdout
    _run("ostree", f"--repo={inner}", "checkout", commit, str(tmp_path / "co-inner"))
    _run("ostree", f"--repo={repo}", "checkout", commit, str(tmp_path / "co-source"))
    assert snapshot(tmp_path / "co-inner") == snapshot(tmp_path / "co-source")

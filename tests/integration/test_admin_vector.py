"""bootree replays ostree's recorded fake-sysroot session and prints the same bytes.

``shared/reference/ostree-vectors/admin-fake-sysroot.sh`` drives the real ostree 2022.7 through
init-fs, os-init, commit v1, deploy with kargs, local /etc edits, commit v2, deploy (3-way
merge), status, the layout, symlinks, deployment refs, BLS entries, origin files, the merged
/etc, pin/unpin and undeploy; ``admin-fake-sysroot.expected.txt`` is its output. The same
script with ``ostree`` replaced by ``bootree`` must print exactly that.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "ostree-vectors"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the recipe needs root (bare repo, chown)"),
    pytest.mark.skipif(not (VECTORS / "admin-fake-sysroot.sh").exists(), reason=f"{VECTORS} not found"),
]


def test_bootree_reproduces_ostree_admin_vector(tmp_path: Path) -> None:
    script = (VECTORS / "admin-fake-sysroot.sh").read_text()
    script = re.sub(r"(^|; )ostree (admin|--repo)", r"\1bootree \2", script, flags=re.MULTILINE)
    assert re.search(r"(^|; )ostree ", script, flags=re.MULTILINE) is None
    (tmp_path / "bt.sh").write_text(script)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "bootree").write_text(f"#!/bin/sh\nexec {sys.executable} -m bootree \"$@\"\n")
    (shim / "bootree").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(tmp_path / "bt.sh"), str(tmp_path / "w")], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = (VECTORS / "admin-fake-sysroot.expected.txt").read_text()
    assert proc.stdout == expected

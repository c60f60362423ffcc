"""Booting a directory sysroot end to end through the CLI (root and mount namespaces needed).

boot v1 → write /var and /etc → deploy v2 --stage → finalize → boot v2 (sees /var data and the
merged /etc) → rollback → boot v1 again. Also: /usr is read-only inside, and the Debian corpus
(``make-corpus.sh``) boots and runs bash, when it has been built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

from bootree.sysroot.bootsim import can_boot

_REASON = can_boot()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]


def bootree(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")
    proc = subprocess.run([sys.executable, "-m", "bootree", *args], env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"bootree {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _commit(sr: Path, tree: Path, version: int) -> None:
    bootree(f"--repo={sr}/ostree/repo", "commit", "-b", "sampleos/stable", f"--tree=dir={tree}",
            f"--subject=v{version}", f"--add-metadata-string=version={version}", "--owner-uid=0", "--owner-gid=0")


def _sh(sr: Path, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return bootree("admin", "boot", f"--sysroot={sr}", "--", "/usr/bin/sh", "-c", script, check=check)


def _status(sr: Path) -> str:
    return bootree("admin", "status", f"--sysroot={sr}").stdout


def test_boot_update_stage_finalize_rollback(tmp_path: Path) -> None:
    sr = tmp_path / "sysroot"
    bootree("admin", "init-fs", str(sr))
    bootree("admin", "os-init", f"--sysroot={sr}", "sampleos")
    _commit(sr, make_tree(tmp_path / "v1", 1), 1)
    bootree("admin", "deploy", f"--sysroot={sr}", "--os=sampleos", "--karg=root=LABEL=root", "sampleos/stable")

    out = _sh(sr, 'while read l; do echo "$l"; done < /etc/os-release; echo data > /var/mydata; '
                  'echo a=LOCAL > /etc/foo.conf; echo x > /usr/foo 2>/dev/null && echo usr-writable || echo usr-ro')
    assert 'PRETTY_NAME="SampleOS 1"' in out.stdout
    assert "usr-ro" in out.stdout
    assert "Booted sampleos" in out.stderr and "(SampleOS 1 (ostree:0))" in out.stderr
    assert _status(sr).startswith("* sampleos ")

    _commit(sr, make_tree(tmp_path / "v2", 2), 2)
    bootree("admin", "deploy", f"--sysroot={sr}", "--stage", "sampleos/stable")
    st = _status(sr)
    assert st.splitlines()[0].endswith("(staged)") and "* sampleos" in st
    fin = bootree("admin", "finalize-staged", f"--sysroot={sr}")
    assert "Copying /etc changes: 1 modified, 0 removed, 0 added" in fin.stdout
    assert _status(sr).splitlines()[0].endswith("(pending)")

    out = _sh(sr, 'read v < /usr/share/v; echo "v=$v"; read d < /var/mydata; echo "var=$d"; '
                  'read f < /etc/foo.conf; echo "foo=$f"; read h < /etc/hostname; echo "host=$h"')
    assert out.stdout.split() == ["v=2", "var=data", "foo=a=LOCAL", "host=sample"]
    st = _status(sr).splitlines()
    assert st[0].startswith("* sampleos") and st[3].endswith("(rollback)")

    rb = bootree("admin", "rollback", f"--sysroot={sr}")
    assert "Next boot: rollback deployment" in rb.stdout
    out = _sh(sr, 'read v < /usr/share/v; echo "v=$v"; read d < /var/mydata; echo "var=$d"; read f < /etc/foo.conf; echo "foo=$f"')
    assert out.stdout.split() == ["v=1", "var=data", "foo=a=LOCAL"]
    assert "Version: 1" in _status(sr).splitlines()[1]

    # The command's exit status comes back; a missing command is a clear error.
    assert _sh(sr, "exit 3", check=False).returncode == 3
    bad = bootree("admin", "boot", f"--sysroot={sr}", "--", "/nonexistent", check=False)
    assert bad.returncode == 1 and "could not boot" in bad.stderr


def _corpus() -> Path | None:
    for cand in (os.environ.get("BOOTREE_CORPUS"), "/work/bench-work/corpus", str(Path(__file__).resolve().parents[3] / "bench-work" / "corpus")):
        if cand and (Path(cand) / "v1/usr/bin/bash").exists():
            return Path(cand)
    return None


@pytest.mark.slow
@pytest.mark.skipif(_corpus() is None, reason="the Debian corpus is not built (bash ../shared/bench/make-corpus.sh CORPUS; BOOTREE_CORPUS=CORPUS)")
def test_corpus_boots_and_runs_bash(tmp_path: Path) -> None:
    corpus = _corpus()
    assert corpus is not None
    sr = tmp_path / "sysroot"
    bootree("admin", "init-fs", str(sr))
    bootree("admin", "os-init", f"--sysroot={sr}", "corpus")
    bootree(f"--repo={sr}/ostree/repo", "commit", "-b", "corpus", f"--tree=dir={corpus / 'v1'}", "--subject=v1",
            "--timestamp=@1700000000")
    bootree("admin", "deploy", f"--sysroot={sr}", "--os=corpus", "corpus")
    out = bootree("admin", "boot", f"--sysroot={sr}", "--", "/usr/bin/bash", "-c", "cat /etc/os-release")
    assert "Debian GNU/Linux 12" in out.stdout

"""Signing behaviour the libostree test suite found different (issue 15), each compared with the real ostree.

ostree's test-only ``dummy`` engine (signature = key string, enabled by
``OSTREE_DUMMY_SIGN_ENABLED=1``) through ``sign``, ``commit --sign``, ``show
--print-detached-metadata-key`` and a pull that requires it; and ``remote add --sign-verify``,
whose errors scripts match by their words.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(shutil.which("ostree") is None, reason="the ostree binary is not installed"),
]

TOOLS = {"ostree": ["ostree"], "bootree": [sys.executable, "-m", "bootree"]}


def run(tool: str, *args: str, dummy: bool = True) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTREE_")}
    env["LC_ALL"] = "C.UTF-8"
    if dummy:
        env["OSTREE_DUMMY_SIGN_ENABLED"] = "1"
    p = subprocess.run([*TOOLS[tool], *args], env=env, capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr


def _ok(tool: str, *args: str) -> str:
    rc, out, err = run(tool, *args)
    assert rc == 0, f"{tool} {' '.join(args)}: {err}"
    return out


def _repo(tmp: Path, tool: str) -> tuple[str, str]:
    repo = tmp / tool / "repo"
    tree = tmp / tool / "tree"
    tree.mkdir(parents=True)
    (tree / "file.txt").write_text("Unsigned commit\n")
    _ok(tool, f"--repo={repo}", "init", "--mode=archive")
    csum = _ok(tool, f"--repo={repo}", "commit", "-b", "main", "--timestamp=@1700000000", f"--tree=dir={tree}").strip()
    return f"--repo={repo}", csum


def test_dummy_sign_verify_and_detached_metadata(tmp_path: Path) -> None:
    got = {}
    for tool in TOOLS:
        repo, csum = _repo(tmp_path, tool)
        _ok(tool, repo, "sign", "--sign-type=dummy", csum, "dummysign")
        shown = _ok(tool, repo, "show", csum, "--print-detached-metadata-key=ostree.sign.dummy")
        verified = _ok(tool, repo, "sign", "--sign-type=dummy", "--verify", csum, "dummysign")
        wrong = run(tool, repo, "sign", "--sign-type=dummy", "--verify", csum, "other")
        disabled = run(tool, repo, "sign", "--sign-type=dummy", "--verify", csum, "dummysign", dummy=False)
        sign_disabled = run(tool, repo, "sign", "--sign-type=dummy", csum, "x", dummy=False)
        unknown = run(tool, repo, "sign", "--sign-type=nosuch", csum, "x")
        signed = _ok(tool, repo, "commit", "-b", "main", "--timestamp=@1700000001", "--tree=ref=main",
                     "--sign=k2", "--sign-type=dummy").strip()
        again = _ok(tool, repo, "sign", "--sign-type=dummy", "--verify", signed, "k2")
        got[tool] = (shown, verified, wrong[0], wrong[2].splitlines()[-1], disabled[0],
                     disabled[2].splitlines()[-1], sign_disabled[0], sign_disabled[2].splitlines()[0],
                     unknown[0], unknown[2].splitlines()[0], again)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"][0].startswith("[[byte 0x64, 0x75")


def test_remote_add_sign_verify(tmp_path: Path) -> None:
    got = {}
    for tool in TOOLS:
        repo, _ = _repo(tmp_path, tool)
        _ok(tool, repo, "remote", "add", "--no-gpg-verify", "good", "--sign-verify=dummy=inline:abc", "http://localhost")
        config = (Path(repo.removeprefix("--repo=")) / "config").read_text().split('[remote "good"]')[1]
        errors = []
        for spec in ("trustme=inline:ok", "dummy", "dummy=foo:bar"):
            rc, _, err = run(tool, repo, "remote", "add", "other", f"--sign-verify={spec}", "http://localhost")
            errors.append((rc != 0, err.splitlines()[-1].split(": ", 1)[-1] if err else ""))
        got[tool] = (config, errors)
    # bootree names the option in its one-line errors; ostree's words are the message's end.
    assert got["bootree"][0] == got["ostree"][0]
    for (b_fail, b_msg), (o_fail, o_msg) in zip(got["bootree"][1], got["ostree"][1], strict=True):
        assert b_fail and o_fail
        assert o_msg.split(" in ")[0].split(": ")[0] in b_msg

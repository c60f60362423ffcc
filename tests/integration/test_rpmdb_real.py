"""The rpm database reader against the real rpm: a tiny package built by ``rpmbuild`` and installed
by ``rpm --root`` (its sqlite database under ``usr/lib/sysimage/rpm``) is read back by bootree and
agrees with ``rpm -q`` on names, versions and file lists; ``--max-layers`` chunking groups by it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bootree.oci.chunking import plan_chunks, read_package_db
from bootree.oci.rpmdb import read_rpmdb
from bootree.repo import Repo, RepoMode

pytestmark = [pytest.mark.skipif(shutil.which("rpmbuild") is None or shutil.which("rpm") is None,
                                 reason="needs rpm and rpmbuild (Debian package rpm)")]
DBPATH = "/usr/lib/sysimage/rpm"

SPEC = """\
Name: bootree-{name}
Version: {version}
Release: 3
Epoch: 2
Summary: a test package
License: MIT
BuildArch: noarch

%description
A package that owns a tool and a config file.

%install
mkdir -p %{{buildroot}}/usr/bin %{{buildroot}}/etc %{{buildroot}}/usr/share/{name}
printf '#!/bin/sh\\necho {name}\\n' > %{{buildroot}}/usr/bin/{name}-tool
chmod 755 %{{buildroot}}/usr/bin/{name}-tool
echo 'a=1' > %{{buildroot}}/etc/{name}.conf
head -c 3000 /dev/zero > %{{buildroot}}/usr/share/{name}/data

%files
/usr/bin/{name}-tool
%config /etc/{name}.conf
/usr/share/{name}

%changelog
* Mon Jan 15 2024 Dev <dev@example.org> - 2:{version}-3
- second
* Mon Jan 16 2023 Dev <dev@example.org> - 2:1.0-1
- first
"""


def _rpm(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")}).stdout


def _build(tmp_path: Path, name: str, version: str) -> Path:
    top = tmp_path / "rpmbuild"
    spec = tmp_path / f"{name}.spec"
    spec.write_text(SPEC.format(name=name, version=version))
    _rpm("rpmbuild", "--define", f"_topdir {top}", "--define", "_binary_payload w9.gzdio", "-bb", str(spec))
    return next((top / "RPMS" / "noarch").glob(f"bootree-{name}-*.rpm"))


def test_real_rpmdb_is_read_back(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    pkgs = [_build(tmp_path, "alpha", "1.5"), _build(tmp_path, "beta", "0.9")]
    defs = ["--define", "_db_backend sqlite", "--define", f"_dbpath {DBPATH}"]
    _rpm("rpm", *defs, f"--root={root}", "--initdb")
    _rpm("rpm", *defs, f"--root={root}", "-i", "--nodeps", "--noscripts", *map(str, pkgs))
    db_file = root / DBPATH.lstrip("/") / "rpmdb.sqlite"
    assert db_file.is_file(), "rpm wrote an sqlite database"
    expected = {line.split()[0]: line.split()[1] for line in
                _rpm("rpm", *defs, f"--root={root}", "-qa", "--qf", "%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE}\n")
                .splitlines()}
    files = {n: sorted(_rpm("rpm", *defs, f"--root={root}", "-ql", n).split()) for n in expected}

    # An ostree-style tree: /etc under usr/etc, a kernel.
    shutil.move(str(root / "etc"), str(root / "usr/etc"))
    (root / "usr/lib/modules/6.1.0-rpm").mkdir(parents=True)
    (root / "usr/lib/modules/6.1.0-rpm/vmlinuz").write_bytes(b"kernel")
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    commit = repo.commit([root], branch="os")

    db = read_rpmdb(repo, commit)
    assert db is not None and db.source == f"{DBPATH}/rpmdb.sqlite"
    assert {p.name: p.evr for p in db.packages} == expected == {"bootree-alpha": "2:1.5-3", "bootree-beta": "2:0.9-3"}
    for p in db.packages:
        assert sorted(path for path, _ in p.files) == files[p.name]
        assert dict(p.files)[f"/usr/share/{p.name.removeprefix('bootree-')}/data"] == 3000
        assert len(p.changelog_times) == 2 and p.buildtime > 1700000000
    owners = read_package_db(repo, commit)
    assert owners is not None
    plan = plan_chunks(repo, commit, 8, package_db=owners)
    by_name = {c.name: c for c in plan.chunks}
    alpha = {p for _, ps in by_name["bootree-alpha"].objects.values() for p in ps}
    assert {"usr/bin/alpha-tool", "usr/etc/alpha.conf", "usr/share/alpha/data"} <= alpha

"""The sysroot test environment, in a module of its own: tests import it by name
(``from sysrootenv import SysrootEnv``) because ``from conftest import`` picks whichever
``conftest`` module pytest loaded first (tests/integration has one too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sampleos import make_tree  # type: ignore[import-not-found]

from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.repo import Repo
from bootree.sysroot import Sysroot, ops


def commit_tree(repo: Repo, tree: Path, version: int | str, branch: str = "sampleos/stable") -> Checksum:
    """Commit ``tree`` as ``ostree commit`` would (owner 0, fixed timestamp, version metadata)."""
    from bootree.repo import CommitOptions

    return repo.commit(
        [tree], branch=branch, subject=f"v{version}", timestamp=1700000000 + int(str(version).split('.')[0]) * 100,
        metadata=[("version", Variant("s", str(version)))], options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True),
    )


class SysrootEnv:
    """A sysroot under a temp dir, with helpers to build and commit sample OS versions."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = base / "sysroot"
        ops.init_fs(self.path)
        self.sysroot = Sysroot.open(self.path)
        with self.sysroot.lock():
            ops.os_init(self.sysroot, "sampleos")

    def commit(self, version: int, *, shell: bool = False, kernel: str = "5.10.0",
               edit: Callable[[Path], None] | None = None) -> Checksum:
        tree = self.base / f"tree-{version}-{os.urandom(3).hex()}"
        make_tree(tree, version, kernel=kernel, with_shell=shell)
        if edit is not None:
            edit(tree)
        return commit_tree(self.sysroot.repo, tree, version, branch=f"sampleos/v{version}")

    def reopen(self) -> Sysroot:
        self.sysroot = Sysroot.open(self.path)
        return self.sysroot

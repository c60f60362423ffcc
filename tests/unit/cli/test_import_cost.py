"""What each command imports: a pull or a deploy must not load the delta generator's numpy or
cryptography's ed25519 unless it uses them.

These imports cost 0.1-0.5 s and ~20 MB of resident memory on every run (the seams issue's
benchmarks found a pull 0.6 s slower and 20 MB larger for it); this keeps them out.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Libraries that only some runs need (deltas, signatures, registries, progress bars).
HEAVY = ("numpy", "cryptography", "zstandard", "httpx", "rich")


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("bootree.cli.pull_cmds", set()),
        ("bootree.cli.repo_cmds", set()),
        ("bootree.cli.admin_cmds", set()),
        ("bootree.cli.install_cmds", set()),  # also `health run`, at every boot
        ("bootree.pull", set()),
        ("bootree.delta.apply", {"zstandard"}),  # loaded only when a delta is applied; zstd frames need it
        # bootc's verbs run on the booted host and must start fast there:
        # cryptography loads only for signed images (sigstoreSigned policies, ed25519 commits).
        ("bootree.host.bootc", {"zstandard", "httpx", "rich"}),
    ],
)
def test_command_modules_do_not_import_heavy_libraries(module: str, allowed: set[str]) -> None:
    code = (
        f"import sys, {module}\n"
        f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert set(out) <= allowed, f"{module} imports {sorted(set(out) - allowed)} at import time"


def test_admin_commands_do_not_import_the_network_or_signing_stacks() -> None:
    """``admin`` is what libostree's suite calls most (thousands of times per CI run): declaring
    ``upgrade --from-file``'s options must not load signing, trust policies, remotes or HTTP
    (about 0.2 s per start); they load when a command uses them."""
    code = (
        "import sys, bootree.cli.admin_cmds\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('bootree.pull', 'bootree.sign', "
        "'bootree.transport', 'bootree.cli.sign_cmds', 'http.client', 'urllib.request')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"bootree.cli.admin_cmds imports {out} at import time"


#: What a deploy or a status loads only on the paths that use it (issue 9: 0.1-0.2 s of start-up):
#: the composefs image builder (a deployment that enables composefs), the tar importer with its
#: compressors (``commit --tree=tar``), diff and prune, the status records, and programs/sockets.
DEPLOY_LAZY = (
    "bootree.composefs.image",
    "bootree.format.erofs",
    "bootree.repo.archive",
    "bootree.repo.commit",
    "bootree.repo.commitrules",
    "bootree.repo.diff",
    "bootree.repo.mtree",
    "bootree.repo.prune",
    "bootree.sysroot.status",
    "bootree.sysroot.upgrade",
    "bz2",
    "lzma",
    "shutil",
    "subprocess",
    "socket",
    "select",
    "concurrent.futures",
)


@pytest.mark.parametrize("module", ["bootree.cli.admin_cmds", "bootree.sysroot.deploy", "bootree.repo"])
def test_deploy_path_loads_rarely_used_parts_on_first_use(module: str) -> None:
    code = f"import sys, {module}\nprint(' '.join(sorted(m for m in {DEPLOY_LAZY!r} if m in sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"{module} imports {out} at import time"


def test_lazy_names_still_import() -> None:
    """The public names behind the module ``__getattr__`` hooks resolve to the real objects."""
    import bootree.composefs as cfs
    import bootree.repo as repo_pkg
    from bootree.composefs import image
    from bootree.repo import diff, repo

    assert repo_pkg.DiffEntry is diff.DiffEntry and repo_pkg.DiffKind is diff.DiffKind
    assert repo.DiffEntry is diff.DiffEntry
    from bootree.repo import commit, transaction

    assert repo_pkg.TreeSource is commit.TreeSource is repo.TreeSource
    assert repo_pkg.CommitOptions is commit.CommitOptions and repo_pkg.SourceKind is commit.SourceKind
    assert repo_pkg.Transaction is transaction.Transaction
    assert cfs.build_image is image.build_image and cfs.COMPOSEFS_NAME == image.COMPOSEFS_NAME == ".ostree.cfs"
    with pytest.raises(AttributeError):
        _ = repo_pkg.NoSuchName  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = cfs.NoSuchName  # type: ignore[attr-defined]

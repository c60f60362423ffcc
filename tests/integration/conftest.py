"""Fixtures shared by the boot-chain tests: the test OS base tree, built once per pytest run.

The boot-chain tests are spread over both xdist workers (each boot takes minutes under TCG), so
the tree is built once for the run (:func:`xdist_share.build_once`), not once per worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def os_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The version-independent test OS tree (:func:`osimage.build_base`): kernel, userland, bootree.

    Shared by the ostree-commit boot tests and the container-image ones, so that one run
    downloads, unpacks and byte-compiles it once, whichever worker asks first. Read-only for its
    users (they copy it). Skips (fails under CI) without the tools.
    """
    import osimage

    from xdist_share import build_once

    missing = osimage.missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the boot chain tools: {' '.join(missing)}")
        pytest.skip(f"boot chain tools missing: {' '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("the test OS tree must be root-owned (chroot, setuid): run as root")
    return build_once(tmp_path_factory, "osbase", osimage.build_base)

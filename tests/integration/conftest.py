"""Fixtures shared by the boot-chain tests: the test OS base tree, built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def os_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The version-independent test OS tree (:func:`osimage.build_base`): kernel, userland, bootree.

    Shared by the ostree-commit boot tests and the container-image ones, so that one session
    downloads, unpacks and byte-compiles it once. Skips (fails under CI) without the tools.
    """
    import osimage

    missing = osimage.missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the boot chain tools: {' '.join(missing)}")
        pytest.skip(f"boot chain tools missing: {' '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("the test OS tree must be root-owned (chroot, setuid): run as root")
    return osimage.build_base(tmp_path_factory.mktemp("osbase") / "base")

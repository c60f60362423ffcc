"""No source module grows past the size a reader can hold in mind (issue 9: "no module over ~600 lines").

A module that outgrows it is split along a seam (for example ``repo/checkout_split.py`` out of
``repo/checkout.py``), not trimmed by joining lines: the limit counts lines as written.
"""

from __future__ import annotations

from pathlib import Path

PKG_DIR = Path(__file__).resolve().parent.parent / "src" / "bootree"
MAX_LINES = 600


def test_no_module_over_the_limit() -> None:
    sizes = {p.relative_to(PKG_DIR).as_posix(): len(p.read_bytes().splitlines()) for p in PKG_DIR.rglob("*.py")}
    assert len(sizes) > 100  # the package was found
    over = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"

"""The terminal's pull display: layers and bytes tasks, shown only on a terminal."""

from __future__ import annotations

import io

import pytest

from bootree.cli import _image_progress
from bootree.cli._image_progress import _Display, image_progress
from bootree.oci.progress import LayerTask, PullPlan


def test_display_counts_layers_and_bytes() -> None:
    from rich.console import Console
    from rich.progress import Progress

    out = io.StringIO()
    a, b = LayerTask("sha256:" + "1" * 64, 1000, "layer"), LayerTask("sha256:" + "2" * 64, 500, "layer")
    with Progress(console=Console(file=out, force_terminal=True, width=100)) as prog:
        d = _Display(prog)
        d.plan(PullPlan("sha256:" + "f" * 64, 3, 1700, (a, b)))
        d.layer_started(a)
        d.layer_started(b)
        d.layer_bytes(a, 400)
        d.layer_bytes(b, 100)
        assert prog.tasks[1].completed == 500
        d.layer_done(a)
        d.layer_done(b)
        layers, nbytes = prog.tasks[0], prog.tasks[1]
        assert (layers.completed, layers.total) == (2, 2)
        assert (nbytes.completed, nbytes.total) == (1500, 1500)
        d.importing(False)
    assert d.fetched == 1500


def test_no_display_off_a_terminal_or_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    with image_progress(quiet=False) as p:  # pytest's stdout is not a terminal
        assert p is None
    monkeypatch.setattr(_image_progress.sys.stdout, "isatty", lambda: True, raising=False)
    with image_progress(quiet=True) as p:
        assert p is None

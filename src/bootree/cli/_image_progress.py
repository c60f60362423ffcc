"""The terminal's view of an image pull: a rich bar of layers and one of bytes with the rate.

Layer: cli. Shown only when both stdout and stderr are terminals and ``--quiet`` is not given
(drawn on stderr, so a pipe never sees it). Afterwards one line, as bootc prints it:
``Fetched layers: 12.3 MB in 4 seconds (3.1 MB/s)``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bootree.cli import _common
from bootree.oci.progress import LayerTask, PullPlan, PullProgress

__all__ = ["image_progress"]


class _Display:
    """A :class:`PullProgress` drawing two rich tasks: layers (M/N) and bytes (size, rate)."""

    def __init__(self, prog: Any) -> None:
        self.prog = prog
        self.layers = prog.add_task("Fetching layers", total=None, visible=False)
        self.bytes = prog.add_task("Fetching", total=None, visible=False, bytes_mode=True)
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._done = 0
        self.fetched = 0
        self.started = time.monotonic()

    def plan(self, plan: PullPlan) -> None:
        self.started = time.monotonic()
        self.prog.update(self.layers, total=len(plan.to_fetch), visible=bool(plan.to_fetch))
        self.prog.update(self.bytes, total=plan.bytes_to_fetch, visible=bool(plan.to_fetch))

    def layer_started(self, layer: LayerTask) -> None:
        with self._lock:
            self._running[layer.digest] = 0

    def layer_bytes(self, layer: LayerTask, fetched: int) -> None:
        with self._lock:
            self._running[layer.digest] = fetched
            total = self.fetched + sum(self._running.values())
            short = ", ".join(f"{d.partition(':')[2][:12]}" for d in self._running)
        self.prog.update(self.bytes, completed=total, description=f"Fetching {short}")

    def layer_done(self, layer: LayerTask) -> None:
        with self._lock:
            self._running.pop(layer.digest, None)
            self.fetched += layer.size
            self._done += 1
            total = self.fetched + sum(self._running.values())
        self.prog.update(self.layers, completed=self._done)
        self.prog.update(self.bytes, completed=total)

    def importing(self, done: bool) -> None:
        if not done:
            self.prog.update(self.bytes, visible=False)
            self.prog.update(self.layers, description="Importing image")


@contextmanager
def image_progress(quiet: bool) -> Iterator[PullProgress | None]:
    """A progress display for one pull, or ``None`` off a terminal or with ``--quiet``."""
    if quiet or not sys.stdout.isatty() or not _common.progress_enabled():
        yield None
        return
    # Imported here: rich.progress is slow to import, and most runs are not on a terminal.
    from rich.filesize import decimal
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
    from rich.text import Text

    class BytesOrLayers(DownloadColumn):
        """Layers as ``M/N``, bytes as a download size."""

        def render(self, task: Any) -> Any:
            if task.fields.get("bytes_mode"):
                return super().render(task)
            total = "?" if task.total is None else f"{int(task.total)}"
            return Text(f"{int(task.completed)}/{total}", style="progress.download")

    class Rate(TransferSpeedColumn):
        """The rate, for the bytes task only."""

        def render(self, task: Any) -> Any:
            return super().render(task) if task.fields.get("bytes_mode") else Text("")

    console = _common.err_console
    with _common.live_progress(TextColumn("[bold]{task.description}"), BarColumn(), BytesOrLayers(), Rate(), console=console,
                  transient=True) as prog:
        display = _Display(prog)
        yield display
    if display.fetched:
        secs = max(time.monotonic() - display.started, 1e-3)
        console.print(f"Fetched layers: {decimal(display.fetched)} in {int(secs)} seconds "
                      f"({decimal(int(display.fetched / secs))}/s)")

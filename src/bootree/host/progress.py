"""bootc's ``--progress-fd``: JSON Lines progress events (bootc ``progress_jsonl.rs``, ``progress-v0``).

Layer: host. One JSON object a line, never a newline inside one. The first line is
``{"type": "Start", "version": "0.1.0"}``; then, as bootc's ``switch``/``upgrade`` send them:

* ``ProgressBytes`` with ``task: "pulling"`` while layers download: ``bytes``/``bytesTotal``
  over the layers to fetch, ``bytesCached`` for the bytes already in the repository,
  ``steps``/``stepsTotal``/``stepsCached`` in layers, and ``subtasks`` (``SubTaskBytes``: one
  per layer started, ``subtask`` ``"ostree chunk"`` or ``"layer"``, ``id`` the first 21 hex
  digits of its digest, ``bytes``/``bytesTotal``/``bytesCached``);
* ``ProgressSteps`` with ``task: "importing"`` (one step) and ``task: "staging"`` (three steps;
  ``SubTaskStep`` ``merging``, ``deploying``, ``bound_images``, ``cleanup``, each with
  ``completed``).

Field names are bootc's (serde ``rename_all_fields = "camelCase"``). Byte updates in between
layer boundaries are dropped when the last line is less than 200 ms old (bootc's 5 Hz); layer
completions and steps are always written. A write that fails stops the events, not the
command (bootc prints one warning and carries on).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from bootree.errors import BootreeError
from bootree.oci.progress import LayerTask, PullPlan

__all__ = ["API_VERSION", "STAGING_STEPS", "ProgressJsonl", "open_progress_fd"]

API_VERSION = "0.1.0"
_REFRESH = 1 / 5
#: bootc's staging subtasks: (subtask, description, id), in order.
STAGING_STEPS: tuple[tuple[str, str, str], ...] = (
    ("merging", "Merging Image", "fetching"),
    ("deploying", "Deploying Image", "deploying"),
    ("bound_images", "Pulling Bound Images", "bound_images"),
    ("cleanup", "Removing old images", "cleanup"),
)
_STAGING_POSITION = (0, 1, 1, 2, 3)


def open_progress_fd(fd: int) -> ProgressJsonl:
    """The writer for ``--progress-fd N`` (bootc refuses 0, 1 and 2).

    Raises:
        BootreeError: for a standard stream or a descriptor that is not open for writing.
    """
    if fd in (0, 1, 2):
        raise BootreeError(f"Cannot use fd {fd} for progress JSON")
    try:
        os.fstat(fd)
    except OSError as e:
        raise BootreeError(f"--progress-fd {fd}: {e.strerror}") from None
    return ProgressJsonl(fd)


class ProgressJsonl:
    """Writes bootc's progress events to a file descriptor (a pull's :class:`PullProgress`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._started = False
        self._last = 0.0
        self._dead = False
        self._plan: PullPlan | None = None
        self._done_bytes = 0
        self._done_steps = 0
        self._subtasks: dict[str, dict[str, Any]] = {}
        self._digest = ""

    # --- writing -------------------------------------------------------------------------

    def _write(self, event: dict[str, Any], required: bool) -> None:
        with self._lock:
            if self._dead:
                return
            now = time.monotonic()
            if not required and self._started and now - self._last < _REFRESH:
                return
            lines = []
            if not self._started:
                self._started = True
                lines.append({"type": "Start", "version": API_VERSION})
            lines.append(event)
            data = b"".join(json.dumps(x, separators=(",", ":")).encode() + b"\n" for x in lines)
            try:
                while data:
                    data = data[os.write(self.fd, data) :]
            except OSError as e:
                self._dead = True
                print(f"Failed to write to jsonl: {e}", file=sys.stderr)
                return
            self._last = now

    # --- pulling (PullProgress) ----------------------------------------------------------

    def _bytes_event(self, required: bool) -> None:
        plan = self._plan
        if plan is None:
            return
        current = sum(t["bytes"] for t in self._subtasks.values() if t["bytes"] < t["bytesTotal"])
        self._write({
            "type": "ProgressBytes", "task": "pulling", "description": f"Pulling Image: {plan.manifest_digest}",
            "id": plan.manifest_digest, "bytesCached": plan.bytes_total - plan.bytes_to_fetch,
            "bytes": self._done_bytes + current, "bytesTotal": plan.bytes_to_fetch,
            "stepsCached": plan.layers_total - len(plan.to_fetch), "steps": self._done_steps,
            "stepsTotal": len(plan.to_fetch), "subtasks": [dict(t) for t in self._subtasks.values()],
        }, required)

    def plan(self, plan: PullPlan) -> None:
        """Remember the totals (bootc's first event comes with the first layer)."""
        self._plan = plan
        self._digest = plan.manifest_digest

    def layer_started(self, layer: LayerTask) -> None:
        """A new subtask."""
        short = layer.digest.partition(":")[2][:21]
        with self._lock:
            self._subtasks[layer.digest] = {"subtask": layer.kind, "description": f"{layer.kind}: {short}",
                                            "id": short, "bytesCached": 0, "bytes": 0, "bytesTotal": layer.size}
        self._bytes_event(False)

    def layer_bytes(self, layer: LayerTask, fetched: int) -> None:
        """A lossy byte update."""
        with self._lock:
            t = self._subtasks.get(layer.digest)
            if t is None:
                return
            t["bytes"] = min(fetched, layer.size - 1) if layer.size else 0
        self._bytes_event(False)

    def layer_done(self, layer: LayerTask) -> None:
        """``bytes == bytesTotal`` marks the subtask complete (always written)."""
        with self._lock:
            t = self._subtasks.get(layer.digest)
            if t is not None:
                t["bytes"] = layer.size
            self._done_bytes += layer.size
            self._done_steps += 1
        self._bytes_event(True)

    def importing(self, done: bool) -> None:
        """``task: "importing"``, one step."""
        self._write({
            "type": "ProgressSteps", "task": "importing", "description": "Importing Image", "id": self._digest,
            "stepsCached": 0, "steps": int(done), "stepsTotal": 1,
            "subtasks": [{"subtask": "importing", "description": "Importing Image", "id": "importing",
                          "completed": done}],
        }, True)

    # --- staging -------------------------------------------------------------------------

    def staging(self, digest: str, step: int) -> None:
        """Staging subtask ``step`` (an index of :data:`STAGING_STEPS`) starts; ``4``: all done.

        ``steps`` counts as bootc's does: 0, 1, 1, 2 as the subtasks start, 3 at the end.
        """
        subtasks = [{"subtask": s, "description": d, "id": i, "completed": n < step}
                    for n, (s, d, i) in enumerate(STAGING_STEPS) if n <= step]
        self._write({
            "type": "ProgressSteps", "task": "staging", "description": "Deploying Image", "id": digest,
            "stepsCached": 0, "steps": _STAGING_POSITION[min(step, len(STAGING_STEPS))], "stepsTotal": 3,
            "subtasks": subtasks,
        }, True)

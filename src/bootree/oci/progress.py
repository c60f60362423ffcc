"""What an image pull reports while it runs: the plan, bytes per layer, the import phase.

Layer: oci. :func:`~bootree.oci.importer.pull_image` calls a :class:`PullProgress` (the host's
bootc JSON-lines writer, the CLI's progress bar, or both through :class:`ProgressTee`).
Layer callbacks come from the download threads, so implementations must be thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["LayerTask", "ProgressTee", "PullPlan", "PullProgress"]


@dataclass(frozen=True, slots=True)
class LayerTask:
    """One layer to fetch."""

    digest: str
    size: int
    kind: str
    """bootc's subtask name: ``ostree chunk`` (a layer of an encapsulated commit) or ``layer``."""


@dataclass(frozen=True, slots=True)
class PullPlan:
    """What a pull will fetch, known once the manifest and the config are read."""

    manifest_digest: str
    layers_total: int
    bytes_total: int
    to_fetch: tuple[LayerTask, ...]

    @property
    def bytes_to_fetch(self) -> int:
        """Compressed bytes of the layers that are not in the repository."""
        return sum(t.size for t in self.to_fetch)


class PullProgress(Protocol):
    """Receives a pull's progress (every method may be called from another thread)."""

    def plan(self, plan: PullPlan) -> None:
        """The pull starts fetching."""

    def layer_started(self, layer: LayerTask) -> None:
        """A download starts."""

    def layer_bytes(self, layer: LayerTask, fetched: int) -> None:
        """``fetched`` bytes of ``layer`` are in (a running total)."""

    def layer_done(self, layer: LayerTask) -> None:
        """A layer's blob is complete and verified."""

    def importing(self, done: bool) -> None:
        """Every layer is fetched and the import is finishing (``done=False``), or it has (``True``)."""


class ProgressTee:
    """Forwards every event to several receivers."""

    def __init__(self, *sinks: PullProgress) -> None:
        self.sinks = sinks

    def plan(self, plan: PullPlan) -> None:
        """Forward."""
        for s in self.sinks:
            s.plan(plan)

    def layer_started(self, layer: LayerTask) -> None:
        """Forward."""
        for s in self.sinks:
            s.layer_started(layer)

    def layer_bytes(self, layer: LayerTask, fetched: int) -> None:
        """Forward."""
        for s in self.sinks:
            s.layer_bytes(layer, fetched)

    def layer_done(self, layer: LayerTask) -> None:
        """Forward."""
        for s in self.sinks:
            s.layer_done(layer)

    def importing(self, done: bool) -> None:
        """Forward."""
        for s in self.sinks:
            s.importing(done)

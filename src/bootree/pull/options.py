"""What a pull is asked to do and what it reports: the option and result records.

Layer: pull; no I/O. :class:`PullConfig` holds the limits and knobs (sizes, memory, threads,
network), :class:`PullOptions` what to pull and how (depth, dry run, mirror), and
:class:`PullEvent` / :class:`PullResult` what comes back. They replace the fourteen parameters the
puller's inner function used to take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from bootree.errors import KeyFileError
from bootree.format.checksum import Checksum
from bootree.transport import FetchConfig

__all__ = ["DeltaPlan", "GiB", "KiB", "MiB", "PullConfig", "PullEvent", "PullOptions", "PullPhase", "PullResult", "parse_size"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


class StaticDeltas(StrEnum):
    """Whether a pull uses static deltas: ``disable`` / ``auto`` / ``require``."""

    DISABLE = "disable"
    AUTO = "auto"
    REQUIRE = "require"


@dataclass(frozen=True, slots=True)
class PullConfig:
    """Limits and knobs of a pull; every download is bounded by one of these sizes.

    The defaults follow ostree where it has a limit (10 MiB for metadata objects and the
    summary) and are otherwise generous but finite, so that a hostile or broken server can make
    a pull fail, never make a device run out of memory or disk.
    """

    #: The remote ``summary`` file (ostree: 10 MiB).
    max_summary_size: int = 10 * MiB
    #: ``summary.sig``, ``config``, ``refs/heads/*``: small text files.
    max_small_file_size: int = 1 * MiB
    #: commit, dirtree, dirmeta and commitmeta objects (ostree's OSTREE_MAX_METADATA_SIZE).
    max_metadata_size: int = 10 * MiB
    #: One compressed content object. Objects over ``stream_threshold`` are written to their
    #: file as they arrive, so this bounds disk use, not memory.
    max_content_size: int = 1 * GiB
    #: Content objects announced larger than this go straight from the network into the file
    #: being written (verified on the way) instead of being held in memory.
    stream_threshold: int = 256 * KiB
    #: Requests in flight (across all connections).
    in_flight: int = 64
    #: Upper bound of received content waiting for verification and writing; fetching pauses
    #: above the current budget, which follows what the writer absorbs (see
    #: :class:`bootree.pull.engine.BufferBudget`). Remote key ``download-buffer-size``.
    max_buffered_bytes: int = 16 * MiB
    #: Threads that verify content objects (inflate + SHA-256; these release the GIL).
    workers: int = 2
    #: Threads that create object files. One is fastest on the ext4 measured here: parallel
    #: file creation doubled the kernel time.
    writers: int = 1
    #: Publish written content objects in the background while the pull goes on (flushed
    #: first); the alternative is one flush and all renames at the end.
    publish_early: bool = True
    #: Publish verified objects every this many objects, so that even a killed pull resumes
    #: from there (0: only when the pull fails or ends).
    checkpoint_objects: int = 0
    #: Network settings (timeouts, retries, connections); remote keys may adjust them.
    fetch: FetchConfig = field(default_factory=FetchConfig)
    #: Static deltas: used when the server offers one (``auto``), never, or required
    #: (``--disable-static-deltas`` / ``--require-static-deltas``).
    static_deltas: StaticDeltas = field(default_factory=lambda: StaticDeltas.AUTO)

    def for_remote(self, get: Callable[[str], str | None], name: str) -> PullConfig:
        """This config adjusted by a remote's keys (``download-buffer-size``, e.g. ``16M``).

        Raises:
            KeyFileError: for a malformed size.
        """
        raw = get("download-buffer-size")
        if raw is None:
            return self
        try:
            size = parse_size(raw)
        except ValueError as e:
            raise KeyFileError(f"remote {name!r}: download-buffer-size: {e}") from None
        return dataclasses.replace(self, max_buffered_bytes=size)


def parse_size(text: str) -> int:
    """``"4096"``, ``"512K"``, ``"16M"``, ``"1G"`` as bytes.

    Raises:
        ValueError: for anything else, or a size under 1 MiB (too small to pull with).
    """
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": KiB, "M": MiB, "G": GiB}.get(t[-1:], 1)
    digits = t[:-1] if mult != 1 else t
    if not digits.isdigit():
        raise ValueError(f"not a size: {text!r}")
    size = int(digits) * mult
    if size < MiB:
        raise ValueError(f"{text!r} is below the minimum of 1M")
    return size


@dataclass(frozen=True, slots=True)
class PullOptions:
    """What to pull and how: the caller's choices, as opposed to :class:`PullConfig`'s limits."""

    #: Parent commits to walk as well (-1: all).
    depth: int = 0
    #: Fetch commits (and detached metadata) only; mark them partial.
    commit_metadata_only: bool = False
    #: Say what would be fetched; fetch metadata only, write nothing.
    dry_run: bool = False
    #: Mirror every ref of the summary (and the summary itself) when no refs are given.
    mirror_all: bool = False
    #: Called a few times per second with progress.
    progress: Callable[[PullEvent], None] | None = None
    #: ``--subpath``: only these paths of each commit's tree (see
    #: :func:`bootree.pull.plan.normalize_subpaths`); the commits stay marked partial.
    subpaths: tuple[str, ...] | None = None


class PullPhase(StrEnum):
    """Where a pull is (a :class:`StrEnum`: ``PullPhase.DONE == "done"``)."""

    REFS = "refs"
    OBJECTS = "objects"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class PullEvent:
    """Progress of a pull, emitted a few times per second and once at the end."""

    phase: PullPhase
    fetched: int
    """Objects fetched and verified so far."""
    requested: int
    """Objects known to be needed so far (grows while dirtrees arrive)."""
    bytes: int
    """Bytes received so far."""


@dataclass(frozen=True, slots=True)
class DeltaPlan:
    """What a pull through static deltas would download (``pull --dry-run --require-static-deltas``):
    delta parts (those whose objects are all present count as fetched) and their sizes."""

    parts: int = 0
    fetched_parts: int = 0
    size: int = 0
    fetched_size: int = 0
    uncompressed: int = 0


@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull did (or, with ``dry_run``, would do)."""

    refs: tuple[tuple[str, Checksum], ...]
    """Local refspecs and the commits they now point at (unchanged ones included)."""
    metadata_fetched: int
    content_fetched: int
    bytes_fetched: int
    requests: int
    seconds: float
    dry_run: bool = False
    content_bytes: int = 0
    """Bytes of content objects received for writing (ostree's "content written")."""
    deltas: DeltaPlan | None = None
    """For a dry run that requires static deltas: the deltas it would use."""
    metadata_local: int = 0
    """Metadata objects read from ``--localcache-repo`` repositories instead of fetched."""
    content_local: int = 0
    """Content objects read from ``--localcache-repo`` repositories instead of fetched."""

"""The commit gate of a pull: nothing of a commit's tree before the commit is trusted.

Layer: pull. A commit object and its detached metadata (``.commitmeta``) are requested together;
the gate holds the commit until both have arrived, runs the checks (signature policy, downgrade)
on the exact bytes received, and only then releases it to the puller, which writes it and starts
fetching its tree. A commit that fails is never written, and nothing it references is
requested, so an unsigned or wrongly signed commit leaves the repository as it was.

The gate is I/O-free: the puller feeds it what arrived and acts on what it releases. This is
the minimal hook issue 13 needs in the puller as it is today; it is meant to move into the pull
seams' verify step (issue 9) unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bootree.format.checksum import Checksum
from bootree.format.objects import Commit

__all__ = ["CommitCheck", "CommitGate", "Held"]

#: ``check(csum, commit_bytes, commit, commitmeta_bytes_or_None)``: raise to refuse the commit.
CommitCheck = Callable[[Checksum, bytes, Commit, "bytes | None"], None]


@dataclass(frozen=True, slots=True)
class Held:
    """A commit that arrived (fetched, or read from a partial local copy) and waits for its check."""

    checksum: Checksum
    data: bytes
    commit: Commit
    depth: int
    local: bool
    #: Its detached metadata once it arrived (``None``: the server has none).
    meta: bytes | None = None


class CommitGate:
    """Pairs each commit with its detached metadata and checks them before release.

    ``wait_for_meta``: hold commits until their ``.commitmeta`` answer (data or 404) is in;
    needed whenever signatures are verified. Without it a commit is checked (downgrade) and
    released as soon as it arrives.
    """

    def __init__(self, check: CommitCheck, *, wait_for_meta: bool, load_local: Callable[[Checksum], bytes]) -> None:
        self._check = check
        self._wait = wait_for_meta
        self._load_local = load_local
        self._meta: dict[Checksum, bytes | None] = {}
        self._held: dict[Checksum, Held] = {}
        self._expected: set[Checksum] = set()
        #: Commits that passed, with the detached metadata they passed with.
        self.passed: dict[Checksum, bytes | None] = {}

    def expect(self, csum: Checksum) -> None:
        """A commit object will arrive (a fetch was queued, or a partial local copy is read)."""
        self._expected.add(csum)

    def meta_arrived(self, csum: Checksum, data: bytes | None) -> list[Held]:
        """Detached metadata (``None``: 404) of ``csum``; returns the commits now released.

        A commit that is complete locally (no commit object expected) is checked at once
        against its local bytes: pulling it again moves a ref to it, which needs the same trust.

        Raises:
            BootreeError: from the check (e.g. ``SignatureError``).
        """
        self._meta[csum] = data
        held = self._held.pop(csum, None)
        if held is not None:
            return [self._release(held, data)]
        if csum not in self._expected and self._wait:
            local = self._load_local(csum)
            self._check(csum, local, Commit.from_bytes(local), data)
            self.passed[csum] = data
        return []

    def commit_arrived(self, held: Held) -> list[Held]:
        """A verified-by-checksum, parsed commit; returns it once it may be used.

        Raises:
            BootreeError: from the check.
        """
        if not self._wait:
            return [self._release(held, None)]
        if held.checksum in self._meta:
            return [self._release(held, self._meta[held.checksum])]
        self._held[held.checksum] = held
        return []

    def _release(self, held: Held, meta: bytes | None) -> Held:
        self._check(held.checksum, held.data, held.commit, meta)
        self.passed[held.checksum] = meta
        return Held(held.checksum, held.data, held.commit, held.depth, held.local, meta)

    @property
    def verifies(self) -> bool:
        """Whether commits wait for their detached metadata (signatures are checked)."""
        return self._wait

    @property
    def waiting(self) -> int:
        """Commits still held (their metadata has not arrived)."""
        return len(self._held)

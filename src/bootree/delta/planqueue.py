"""Similar pairs planned ahead on the worker pool and handed back in a fixed emission order.

Layer: delta. Generation emits pairs one by one, in an order that depends only on the plans
(so a delta's bytes do not depend on thread timing), but planning takes from milliseconds (a
small text file) to many seconds (an initramfs: decompression, a deflate-boundary search and
chunk matching). With a fixed window of plans in flight, one slow plan at the head stalls the
other core as soon as the few plans behind it are done; here the other workers keep getting
plans while the head runs, within a count and a byte budget (each finished plan holds its
object's data until it is emitted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from bootree.delta.bootree_mode import Pair
from bootree.format.checksum import Checksum

__all__ = ["PlanQueue"]

T = TypeVar("T")

#: Plans submitted or finished and not yet emitted, at most (besides the byte budget): many
#: small files are planned in the time one initramfs is.
_MAX_AHEAD = 2048
#: New-object bytes of those plans, at most (a plan holds its new object, often its old one).
_AHEAD_BUDGET = 96 << 20


class PlanQueue(Generic[T]):
    """The plans of ``pairs``, made by ``plan`` on ``pool``, returned by :meth:`next` in order.

    The order is the given one, changed only by :meth:`hurry`; at least ``2 * threads`` plans
    are in flight, and more while the head is unfinished and workers would otherwise idle.
    """

    def __init__(
        self, pool: ThreadPoolExecutor, pairs: Iterable[Pair], plan: Callable[[Pair], T], *, threads: int,
        budget: int = _AHEAD_BUDGET,
    ) -> None:
        self._pool = pool
        self._plan = plan
        self._threads = max(1, threads)
        self._budget = budget
        self._order: deque[Pair] = deque(pairs)
        self._unsubmitted: deque[Pair] = deque(self._order)
        self._futures: dict[Checksum, Future[T]] = {}
        self._running: set[Future[T]] = set()  # submitted and not done (done callbacks remove)
        self._ahead = 0

    def __bool__(self) -> bool:
        return bool(self._order)

    def __contains__(self, pair: Pair) -> bool:
        """Whether ``pair`` is still to be returned."""
        return pair in self._order

    def hurry(self, pair: Pair) -> None:
        """Return ``pair`` next (its plan is submitted now if it was not yet)."""
        self._order.remove(pair)
        self._order.appendleft(pair)
        if pair.new not in self._futures:
            self._unsubmitted.remove(pair)
            self._unsubmitted.appendleft(pair)

    def next(self) -> T:
        """The plan of the first pair in order, waiting for it (exceptions are re-raised)."""
        while True:
            self._submit()
            head = self._order[0]
            future = self._futures[head.new]
            if future.done() or not self._unsubmitted or not self._room():
                break
            # The head is still being planned and more could run: wake on any plan finishing.
            wait(list(self._running), return_when=FIRST_COMPLETED)
        self._order.popleft()
        del self._futures[head.new]
        self._ahead -= head.new_info.size
        return future.result()

    def _room(self) -> bool:
        return len(self._futures) < _MAX_AHEAD and self._ahead < self._budget

    def _submit(self) -> None:
        while self._unsubmitted:
            if self._order[0].new in self._futures and len(self._futures) >= 2 * self._threads:
                if len(self._running) > self._threads or not self._room():
                    return
            pair = self._unsubmitted.popleft()
            future = self._pool.submit(self._plan, pair)
            self._running.add(future)
            future.add_done_callback(self._running.discard)
            self._futures[pair.new] = future
            self._ahead += pair.new_info.size

"""Planning pairs ahead: plans come back in the fixed order (changed only by ``hurry``), and the
other workers keep planning while a slow plan is at the head."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bootree.delta.bootree_mode import Pair
from bootree.delta.content import ContentInfo
from bootree.delta.planqueue import PlanQueue
from bootree.format.checksum import Checksum
from bootree.format.objects import FileHeader

_INFO = ContentInfo(FileHeader(0, 0, 0o100644), 100, 100)


def _pairs(n: int) -> list[Pair]:
    return [Pair(Checksum(f"{i:064x}"), _INFO, Checksum(f"{i + 1000:064x}"), _INFO) for i in range(n)]


def test_order_and_hurry() -> None:
    pairs = _pairs(20)
    with ThreadPoolExecutor(2) as pool:
        queue: PlanQueue[Checksum] = PlanQueue(pool, pairs, lambda p: p.new, threads=2)
        got = [queue.next(), queue.next()]
        assert pairs[15] in queue
        queue.hurry(pairs[15])  # planned already or not: it comes next
        queue.hurry(pairs[3])
        while queue:
            got.append(queue.next())
    order = [pairs[0], pairs[1], pairs[3], pairs[15]] + [p for i, p in enumerate(pairs) if i not in (0, 1, 3, 15)]
    assert got == [p.new for p in order]
    assert pairs[15] not in queue


def test_slow_head_does_not_stall_the_other_workers() -> None:
    """With the head's plan blocked, far more than the minimum window of plans are made."""
    pairs = _pairs(40)
    planned = threading.Semaphore(0)
    release = threading.Event()

    def plan(pair: Pair) -> Checksum:
        if pair is pairs[0]:
            # the head finishes only once 30 other plans are done: a fixed window of 4 would
            # never let them start, and this would time out
            for _ in range(30):
                assert planned.acquire(timeout=10)
            release.set()
        else:
            planned.release()
        return pair.new

    with ThreadPoolExecutor(2) as pool:
        queue: PlanQueue[Checksum] = PlanQueue(pool, pairs, plan, threads=2)
        got = [queue.next() for _ in range(len(pairs))]
    assert release.is_set() and got == [p.new for p in pairs]


def test_byte_budget_bounds_the_plans_ahead() -> None:
    pairs = _pairs(30)
    started: list[Checksum] = []
    gate = threading.Event()

    def plan(pair: Pair) -> Checksum:
        started.append(pair.new)
        if pair is pairs[0]:
            gate.wait(timeout=1)  # the head is slow; the budget (5 objects) stops the lookahead
        return pair.new

    with ThreadPoolExecutor(2) as pool:
        queue: PlanQueue[Checksum] = PlanQueue(pool, pairs, plan, threads=2, budget=5 * _INFO.size)
        assert queue.next() == pairs[0].new
        assert len(started) <= 5
        gate.set()
        while queue:
            queue.next()


def test_a_failing_plan_raises_at_its_turn() -> None:
    pairs = _pairs(5)

    def plan(pair: Pair) -> Checksum:
        if pair is pairs[2]:
            raise ValueError("bad pair")
        return pair.new

    with ThreadPoolExecutor(2) as pool:
        queue: PlanQueue[Checksum] = PlanQueue(pool, pairs, plan, threads=2)
        assert [queue.next(), queue.next()] == [pairs[0].new, pairs[1].new]
        with pytest.raises(ValueError, match="bad pair"):
            queue.next()

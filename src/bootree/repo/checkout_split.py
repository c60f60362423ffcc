"""Hardlink checkouts on two processes: the tree cut into subtrees that this process and one
forked child check out side by side.

Layer: repo. Why two processes and not threads, and what it costs:
``docs/adr/0005-two-process-hardlink-checkout.md``. This module knows only the small surface
of a checkout it drives (:class:`UnitWorker`), so :mod:`bootree.repo.checkout` can call it
without an import circle.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import Protocol

from bootree import _fs
from bootree.errors import CheckoutError
from bootree.format.checksum import Checksum
from bootree.repo.reader import ObjectReader

__all__ = ["UnitWorker", "split_allowed", "split_checkout"]


class _Options(Protocol):
    @property
    def workers(self) -> int: ...


class UnitWorker(Protocol):
    """What the split needs of a checkout in progress (:class:`bootree.repo.checkout._Checkout`)."""

    reader: ObjectReader
    files: int

    def open_subdir(self, dfd: int, name: str, relpath: str) -> int: ...
    def finish_dir(self, dfd: int, meta_csum: Checksum) -> None: ...
    def link_files(self, dfd: int, files: tuple[tuple[str, Checksum], ...], relpath: str) -> None: ...
    def tree(self, dfd: int, tree: Checksum, relpath: str) -> None: ...
    def flush(self) -> None: ...


# A hardlink checkout is a few microseconds of Python and a few system calls per file. Threads do
# not help (measured 1.5x slower: the GIL changes hands at every system call), but two processes
# do: the kernel work of two directory trees runs on two cores. The parent reads the top of the
# tree breadth-first until it has enough subtrees ("units"), forks one child, and both take units
# from a shared pipe until it is empty; each unit is checked out completely (directory metadata
# included) by whichever process took it. The parent finishes the directories above the units.

#: Subtrees to cut the tree into before forking: enough that the last few even out.
_SPLIT_UNITS = 256
#: Directories read breadth-first at most while looking for units (a flat tree is not split).
_SPLIT_MAX_DIRS = 800


def split_allowed(options: _Options) -> bool:
    """Whether this checkout may fork: two cores, ``fork``, no other thread alive, not ``workers=1``."""
    if options.workers == 1 or (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
        return False
    # fork() copies only the calling thread: with other threads alive a lock they hold (logging,
    # imports) could stay locked forever in the child. Then do it all here.
    return threading.active_count() == 1


#: One share of the work: link ``files`` into the directory ``fd`` (``tree`` is None), or check
#: the dirtree ``tree`` out into ``fd`` completely (``files`` is empty). ``relpath`` is for errors.
_Unit = tuple[int, Checksum | None, tuple[tuple[str, Checksum], ...], str]


def split_checkout(co: UnitWorker, root_fd: int, root_tree: Checksum) -> None:
    # 1. Breadth-first from the root, reading dirtrees and creating directories only (their files
    #    become units too), until enough subtrees are waiting: this part runs on one core, so it
    #    is kept short. Directories created here are finished by this process at the end.
    frontier: deque[tuple[int, Checksum, str]] = deque([(root_fd, root_tree, "")])
    above: list[tuple[int, Checksum]] = []  # (fd, dirmeta) of the directories created here
    file_units: list[_Unit] = []
    read = 0
    while frontier and len(frontier) < _SPLIT_UNITS and read < _SPLIT_MAX_DIRS:
        dfd, tree, relpath = frontier.popleft()
        dt = co.reader.read_dirtree(tree)
        read += 1
        if dt.files:
            file_units.append((dfd, None, dt.files, relpath))
        for name, sub_tree, sub_meta in dt.dirs:
            sub_rel = f"{relpath}/{name}"
            sfd = co.open_subdir(dfd, name, sub_rel)
            above.append((sfd, sub_meta))
            frontier.append((sfd, sub_tree, sub_rel))
    try:
        # Subtrees first (their size is unknown), then the known file lists, largest first, so
        # that the two processes finish close together.
        file_units.sort(key=lambda u: len(u[2]), reverse=True)
        units: list[_Unit] = [(dfd, tree, (), relpath) for dfd, tree, relpath in frontier] + file_units
        if len(units) < 2:
            for unit in units:
                _do_unit(co, unit)
        else:
            child_files = _run_units(co, units)  # (not "co.files += ...": that reads co.files first)
            co.files += child_files
        # 2. The directories above the units, deepest first (a parent may be read-only).
        for fd, meta in reversed(above):
            co.finish_dir(fd, meta)
    finally:
        for fd, _ in above:
            os.close(fd)


def _do_unit(co: UnitWorker, unit: _Unit) -> None:
    dfd, tree, files, relpath = unit
    if tree is None:
        co.files += len(files)
        co.link_files(dfd, files, relpath)
    else:
        co.tree(dfd, tree, relpath)
        co.flush()


def _run_units(co: UnitWorker, units: list[_Unit]) -> int:
    """Check out ``units`` on this process and one forked child; the files the child linked.

    (This process's own files are counted in ``co.files`` as it goes.)
    """
    import pickle  # here: only a large hardlink checkout needs it

    queue_r, queue_w = os.pipe()
    result_r, result_w = os.pipe()
    # Unit numbers go into the pipe up front (4 bytes each: a read of them is atomic).
    os.write(queue_w, b"".join(i.to_bytes(4, "little") for i in range(len(units))))
    os.close(queue_w)
    pid = os.fork()
    if pid == 0:  # the child: take units, report, and leave without running any cleanup
        status = 1
        try:
            os.close(result_r)
            before = co.files
            _take_units(co, units, queue_r)
            os.write(result_w, b"ok" + (co.files - before).to_bytes(8, "little"))
            status = 0
        except BaseException as e:  # reported to the parent, which raises it
            try:
                os.write(result_w, b"er" + pickle.dumps(_portable(e)))
            except BaseException:
                pass
        finally:
            os._exit(status)
    os.close(result_w)
    error: BaseException | None = None
    try:
        _take_units(co, units, queue_r)
    except BaseException as e:
        error = e
        # Stop the child from taking more: drain the queue.
        with contextlib.suppress(OSError):
            while os.read(queue_r, 4096):
                pass
    finally:
        report = _fs.read_all(result_r)
        os.close(result_r)
        os.close(queue_r)
        _, wait_status = os.waitpid(pid, 0)
    if error is not None:
        raise error
    if report[:2] == b"er":
        raise pickle.loads(report[2:])
    if report[:2] != b"ok" or os.waitstatus_to_exitcode(wait_status) != 0:
        raise CheckoutError("", f"checkout worker process failed (status {wait_status})")
    return int.from_bytes(report[2:10], "little")


def _take_units(co: UnitWorker, units: list[_Unit], queue_r: int) -> None:
    while True:
        raw = os.read(queue_r, 4)
        if len(raw) < 4:
            return
        _do_unit(co, units[int.from_bytes(raw, "little")])


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling, else a :class:`CheckoutError` with its message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return CheckoutError("", str(e))
    return e

"""The pipelined client resumes a cut-off body with ``Range`` instead of starting over.

The server here cuts every response without a ``Range`` header in half (as ostree's test
server does with ``--force-range-requests``), so a pull can only succeed by asking for the
rest; the assembled body must be the file, byte for byte.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.errors import FetchError
from bootree.transport import FetchConfig
from bootree.transport.http import PipelinedHttpFetcher
from bootree.transport.server import StaticHandler, StaticServer

DATA = os.urandom(200_001)


class _Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ranges: list[str | None] = []
        self.bad_range = False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[StaticServer, _Log]]:
    (tmp_path / "obj").write_bytes(DATA)
    log = _Log()

    class Halving(StaticHandler):
        def send_path(self, path: Path | None, *, head: bool) -> None:
            rng = self.headers.get("Range")
            with log.lock:
                log.ranges.append(rng)
            if path is None or head:
                super().send_path(path, head=head)
                return
            if rng is not None and log.bad_range:
                self.send_response(206)  # a range that does not continue what the client has
                self.send_header("Content-Range", f"bytes 0-9/{len(DATA)}")
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.write(DATA[:10])
                return
            if rng is not None:
                super().send_path(path, head=head)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            self.wfile.write(DATA[: len(DATA) // 2])
            self.close_connection = True

    srv = StaticServer(tmp_path, handler=Halving).start()
    try:
        yield srv, log
    finally:
        srv.stop()


def test_cut_off_body_is_completed_with_a_range_request(served: tuple[StaticServer, _Log]) -> None:
    srv, log = served
    with PipelinedHttpFetcher(FetchConfig(backoff_base=0.01)) as f:
        assert f.fetch(f"{srv.url}/obj", max_length=1 << 20) == DATA
        f.submit(f"{srv.url}/obj", max_length=1 << 20, key="k")
        done = f.wait(timeout=10)
        assert done.error is None and done.data == DATA
    assert log.ranges == [None, f"bytes={len(DATA) // 2}-"] * 2


def test_a_range_that_does_not_continue_is_refused(served: tuple[StaticServer, _Log]) -> None:
    srv, log = served
    log.bad_range = True
    with PipelinedHttpFetcher(FetchConfig(backoff_base=0.01, max_attempts=4)) as f, pytest.raises(FetchError):
        f.fetch(f"{srv.url}/obj", max_length=1 << 20)
    # cut off, resumed, refused (start over), cut off, resumed, refused: never spliced wrongly
    assert log.ranges == [None, f"bytes={len(DATA) // 2}-"] * 2

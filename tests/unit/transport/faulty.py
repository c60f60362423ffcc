"""A static server whose responses can be sabotaged per path, for the bad-server tests.

Faults: ``"500"`` (answer 500), ``"truncate"`` (announce the full length, send half, close),
``"stall"`` (send headers, then nothing), ``"garble"`` (flip bytes of the body), ``"404"``,
``"chunked"`` (send a correct chunked body), ``"trickle"`` (send the body one byte every
``trickle_seconds``). Each fault has a count: how many requests it
affects before the path is served normally again (``-1`` = forever).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bootree.transport.server import StaticHandler, StaticServer


class Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: dict[str, list[object]] = {}  # path suffix -> [fault, remaining]
        self.hits: list[str] = []

    def add(self, suffix: str, fault: str, count: int = 1) -> None:
        with self.lock:
            self.rules[suffix] = [fault, count]

    def take(self, path: str) -> str | None:
        with self.lock:
            self.hits.append(path)
            for suffix, rule in self.rules.items():
                if path.endswith(suffix) and rule[1] != 0:
                    if isinstance(rule[1], int) and rule[1] > 0:
                        rule[1] -= 1
                    return str(rule[0])
        return None


def faulty_server(
    root: Path, faults: Faults, stall_seconds: float = 3.0, trickle_seconds: float = 0.05
) -> StaticServer:
    class Handler(StaticHandler):
        def send_path(self, path: Path | None, *, head: bool) -> None:
            fault = faults.take(self.path)
            if fault is None or path is None:
                super().send_path(path, head=head)
                return
            data = path.read_bytes()
            if fault == "500":
                self.send_error_status(500)
            elif fault == "404":
                self.send_error_status(404)
            elif fault == "truncate":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
            elif fault == "stall":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.flush()
                time.sleep(stall_seconds)
                self.close_connection = True
            elif fault == "garble":
                bad = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(bad)))
                self.end_headers()
                self.wfile.write(bad)
            elif fault == "chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), 7):
                    part = data[i : i + 7]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif fault == "trickle":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(trickle_seconds)
                except OSError:
                    pass  # the client gave up
                self.close_connection = True
            else:  # pragma: no cover
                raise AssertionError(fault)

    return StaticServer(root, handler=Handler)

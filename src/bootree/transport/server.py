"""A small static HTTP/1.1 file server with Range support, for ``bootree serve``, demos and tests.

Layer: transport. An archive repository is served as plain files, exactly like nginx or a CDN
would (which is the production setup, see the README); this server exists so that a demo or a
test needs nothing but bootree. It speaks keep-alive HTTP/1.1 (so clients may pipeline), answers
``GET`` and ``HEAD``, single ``Range: bytes=`` requests with 206, and never serves anything
outside its root (no directory listings, no symlinks out of the tree, no ``..``).

Listening on all interfaces is the caller's explicit choice; the default is 127.0.0.1.
"""

from __future__ import annotations

import http.server
import logging
import os
import posixpath
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RequestLog", "StaticHandler", "StaticServer"]

log = logging.getLogger(__name__)

#: Called once per request with (status, body bytes sent, path).
RequestLog = Callable[[int, int, str], None]

_CHUNK = 1024 * 1024


class StaticHandler(http.server.BaseHTTPRequestHandler):
    """Serves files below ``server.root``; subclass and override :meth:`send_path` to misbehave."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: StaticServer._Server
    server_version = "bootree-serve"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _log(self, status: int, n: int) -> None:
        if self.server.request_log is not None:
            self.server.request_log(status, n, self.path)

    def do_GET(self) -> None:
        self.send_path(self.resolve(), head=False)

    def do_HEAD(self) -> None:
        self.send_path(self.resolve(), head=True)

    def resolve(self) -> Path | None:
        """The file a request names, or None when it is absent or outside the root."""
        raw = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        norm = posixpath.normpath("/" + raw)
        if "\0" in norm:
            return None
        root: Path = self.server.root
        candidate = root / norm.lstrip("/")
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(root) or not real.is_file():
            return None
        return real

    def send_error_status(self, status: int, head: bool = False) -> None:
        """A short plain-text error with a body length, so the connection can be reused."""
        body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self._log(status, 0 if head else len(body))

    def send_path(self, path: Path | None, *, head: bool) -> None:
        """Send ``path`` (or a 404), honouring a single ``Range: bytes=a-b`` header."""
        if path is None:
            self.send_error_status(404, head)
            return
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error_status(404, head)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng is not None:
                parsed = _parse_range(rng, size)
                if parsed is None:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self._log(416, 0)
                    return
                start, end = parsed
                status = 206
            length = max(0, end - start + 1)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if head:
                self._log(status, 0)
                return
            f.seek(start)
            left = length
            while left > 0:
                buf = f.read(min(_CHUNK, left))
                if not buf:
                    break
                self.wfile.write(buf)
                left -= len(buf)
            self._log(status, length - left)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` to an inclusive (start, end), None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first:
            start = int(first)
            end = int(last) if last else size - 1
        else:
            n = int(last)
            if n <= 0:
                return None
            start, end = max(0, size - n), size - 1
    except ValueError:
        return None
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end


class StaticServer:
    """A threaded static server running in the background; use as a context manager.

    ``port=0`` picks a free port; :attr:`url` is the base URL to give a client.
    """

    class _Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        root: Path
        request_log: RequestLog | None

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that hangs up mid-response is routine for a file server: no traceback.
            log.debug("error while serving %s", client_address, exc_info=True)

    def __init__(
        self,
        root: os.PathLike[str] | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[StaticHandler] = StaticHandler,
        request_log: RequestLog | None = None,
    ) -> None:
        self._httpd = self._Server((host, port), handler)
        self._httpd.root = Path(root).resolve()
        self._httpd.request_log = request_log
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the server."""
        host = self._httpd.server_address[0]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{self.port}"

    def start(self) -> StaticServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="bootree-serve",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

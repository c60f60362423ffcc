"""A chunked blob upload to a real docker-registry (distribution 2.8) that loses its connection in
the middle of a chunk resumes where the registry says the session stands, instead of restarting.

A small HTTP proxy on 127.0.0.1 sits between bootree and the registry and counts the PATCH body
bytes going each way; on one chosen PATCH it reads part of the body and drops the connection:

* ``drop``: nothing of the cut chunk reaches the registry. ``GET <Location>`` answers 204 with
  ``Range: 0-<last byte>`` of the chunks accepted before, and the upload goes on from there: the
  registry receives every byte exactly once.
* ``partial``: the proxy forwards part of the cut chunk and then drops the registry side too.
  distribution 2.8 does not keep such a session: the upload-state request answers 404
  (``BLOB_UPLOAD_UNKNOWN``), and the upload starts a new session from byte 0; the blob still
  arrives intact. (Had it kept the bytes, the offset signed into the old Location's ``_state``
  would no longer match and it would cancel the session with 400 ``BLOB_UPLOAD_INVALID``; both
  answers mean "start again".)
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from registrykit import Registry, access_log

from bootree.oci.push import BlobToPush, PushOptions, RegistryPusher
from bootree.oci.registry import RegistryOptions

pytestmark = [pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry")]

CHUNK = 128 << 10
SIZE = 8 * CHUNK + 1000
KEEP = 50 << 10
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class CutProxy:
    """Forwards every request to ``upstream``; cuts the ``cut``-th PATCH after ``keep`` body bytes."""

    def __init__(self, upstream: int, cut: int, keep: int, mode: str) -> None:
        self.patch_in = 0  # PATCH body bytes read from the client
        self.patch_out = 0  # PATCH body bytes handed to the registry
        self.patches = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                assert "chunked" not in (self.headers.get("Transfer-Encoding") or ""), "bodies have a length"
                cut = False
                if self.command == "PATCH":
                    with proxy.lock:
                        proxy.patches += 1
                        cut = proxy.patches == cut_at
                if cut:
                    part = self.rfile.read(keep)
                    proxy.patch_in += len(part)
                    if mode == "partial":
                        proxy._send_partial(self, part)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = self.rfile.read(n) if n else b""
                if self.command == "PATCH":
                    proxy.patch_in += len(body)
                    proxy.patch_out += len(body)
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body if n else None, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                finally:
                    conn.close()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        cut_at = cut
        self.upstream = upstream
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _send_partial(self, h: BaseHTTPRequestHandler, part: bytes) -> None:
        """Start the cut PATCH at the registry with its full length, send ``part``, hang up."""
        s = socket.create_connection(("127.0.0.1", self.upstream))
        try:
            head = f"{h.command} {h.path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in h.headers.items() if k.lower() not in _HOP) + "Connection: close\r\n\r\n"
            s.sendall(head.encode() + part)
            self.patch_out += len(part)
            time.sleep(0.3)  # let the registry write what it got before it sees the hang-up
        finally:
            s.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    (tmp_path / "registry").mkdir()
    r = Registry(tmp_path / "registry")
    yield r
    r.stop()


def _blob(tmp_path: Path) -> BlobToPush:
    data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SIZE // 32 + 1))[:SIZE]
    p = tmp_path / "blob"
    p.write_bytes(data)
    return BlobToPush("sha256:" + hashlib.sha256(data).hexdigest(), SIZE, p)


def _push_through(reg: Registry, tmp_path: Path, mode: str) -> tuple[CutProxy, RegistryPusher, BlobToPush]:
    blob = _blob(tmp_path)
    proxy = CutProxy(reg.port, cut=5, keep=KEEP, mode=mode)
    client = RegistryPusher(proxy.host, RegistryOptions(tls_verify=False, retries=3, backoff=0.01))
    try:
        assert client.push_blob("resume/os", blob, PushOptions(chunk_size=CHUNK), []) == "uploaded"
    finally:
        client.close()
        proxy.stop()
    # The registry holds the blob, byte for byte (asked directly, not through the proxy).
    got = httpx.get(f"http://{reg.host}/v2/resume/os/blobs/{blob.digest}")
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == blob.digest[7:]
    return proxy, client, blob


def test_cut_chunk_resumes_from_the_registry_offset(reg: Registry, tmp_path: Path) -> None:
    mark = reg.mark()
    proxy, client, _ = _push_through(reg, tmp_path, "drop")
    st = client.push_stats
    assert (st.resumed, st.restarted, st.chunked) == (1, 0, 1)
    # Every byte reached the registry once; the client re-sent only the cut chunk's first KEEP bytes
    # (a restart would have re-sent the 4 chunks accepted before too).
    assert proxy.patch_out == SIZE
    assert proxy.patch_in == SIZE + KEEP
    assert st.bytes_sent == SIZE
    log = access_log(reg, mark)
    status = [x for x in log if x[0] == "GET" and "/blobs/uploads/" in x[1]]
    assert [x[2] for x in status] == [204], "one upload-state request, answered with the session's Range"
    assert sum(1 for x in log if x[0] == "POST") == 1, "the same session throughout"
    assert [x[2] for x in log if x[0] == "PATCH"] == [202] * 9


def test_partly_written_chunk_makes_distribution_drop_the_session(reg: Registry, tmp_path: Path) -> None:
    mark = reg.mark()
    proxy, client, _ = _push_through(reg, tmp_path, "partial")
    st = client.push_stats
    log = access_log(reg, mark)
    status = [x[2] for x in log if x[0] == "GET" and "/blobs/uploads/" in x[1]]
    # distribution drops the session of a PATCH cut off mid-body: a new session from byte 0.
    assert status == [404] and (st.resumed, st.restarted) == (0, 1)
    assert sum(1 for x in log if x[0] == "POST") == 2
    assert proxy.patch_out == 4 * CHUNK + KEEP + SIZE

"""Shared parts of the registry tests: a real docker-registry on 127.0.0.1, a token issuer,
the CLI runner and tree listings (imported by the bootc and the publishing tests).

Not a conftest: test modules import it by name (``from registrykit import Registry``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.cli import main
from bootree.sysroot import ops


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """A docker-registry with its own config and storage, and its access log."""

    def __init__(self, work: Path, *, htpasswd: Path | None = None, extra: str = "") -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.data = work / "data"
        conf = work / "registry.yml"
        auth = f"auth:\n  htpasswd:\n    realm: bootree-test\n    path: {htpasswd}\n" if htpasswd else extra
        conf.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {self.data}\n"
                        f"  delete:\n    enabled: true\nhttp:\n  addr: {self.host}\n{auth}")
        self.log = work / "access.log"
        self._out = open(self.log, "wb")  # closed in stop()
        self.proc = subprocess.Popen(["docker-registry", "serve", str(conf)], stdout=self._out,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.05)

    def mark(self) -> int:
        """Where the access log ends now (count only what comes after with ``since``)."""
        self._out.flush()
        return self.log.stat().st_size

    def blob_bytes(self, agent: str = "python-httpx", statuses: tuple[str, ...] = ("200", "206"),
                   since: int = 0) -> dict[str, int]:
        """Bytes of blob bodies the registry sent to ``agent``, by digest (its access log)."""
        out: dict[str, int] = {}
        pat = re.compile(r'"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" (\d{3}) (\d+) "[^"]*" "([^"]*)"')
        for line in self.log.read_bytes()[since:].decode().splitlines():
            m = pat.search(line)
            if m and m.group(4).startswith(agent) and m.group(2) in statuses:
                out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(3))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def bootree(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def new_sysroot(tmp_path: Path) -> Path:
    path = tmp_path / "sysroot"
    ops.init_fs(path)
    return path


def tree_listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (type, permission bits, content or link target) for every entry under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", 0o777, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), "")
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), p.read_text())
    return out


class TokenIssuer:
    """A bearer-token service as Docker Hub/quay.io run one: Basic credentials in, a JWT out.

    The registry is configured with ``auth: token`` and trusts the issuer's self-signed
    certificate; each token is an ES256 JWT with the certificate in ``x5c`` and the granted
    ``access`` for the requested scope (none for anonymous requests).
    """

    def __init__(self, work: Path, service: str, users: dict[str, str]) -> None:
        import base64
        import datetime
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bootree-test-issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.bundle = work / "issuer.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.issuer, self.service, self.requests = "bootree-test-issuer", service, 0

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        def token(sub: str, access: list[dict[str, object]]) -> str:
            t = int(time.time())
            head = b64(json.dumps({"typ": "JWT", "alg": "ES256", "x5c": [x5c]}).encode())
            body = b64(json.dumps({"iss": self.issuer, "sub": sub, "aud": service, "exp": t + 300, "nbf": t - 10,
                                   "iat": t, "jti": os.urandom(8).hex(), "access": access}).encode())
            r, s = decode_dss_signature(key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
            return f"{head}.{body}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                issuer.requests += 1
                q = parse_qs(urlparse(self.path).query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if users.get(u) != p:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u
                access = []
                for scope in q.get("scope", []):
                    kind, repo, actions = scope.split(":")
                    if user is not None:
                        access.append({"type": kind, "name": repo, "actions": actions.split(",")})
                data = json.dumps({"token": token(user or "", access), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"')


def access_log(reg: Registry, since: int = 0) -> list[tuple[str, str, int]]:
    """``(method, path, status)`` of every request in the registry's access log after ``since``."""
    reg.mark()
    out = []
    for line in reg.log.read_bytes()[since:].decode().splitlines():
        m = _REQUEST.search(line)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


@contextlib.contextmanager
def insecure_registry(work: Path) -> Iterator[Registry]:
    """A plain registry that bootree reaches over HTTP (``registries.conf`` marks it insecure)."""
    reg = Registry(work)
    conf = work / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    old = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    try:
        yield reg
    finally:
        reg.stop()
        if old is None:
            os.environ.pop("CONTAINERS_REGISTRIES_CONF", None)
        else:
            os.environ["CONTAINERS_REGISTRIES_CONF"] = old


@contextlib.contextmanager
def token_registry(work: Path, users: dict[str, str]) -> Iterator[tuple[Registry, TokenIssuer]]:
    """A registry with ``auth: token`` and the issuer it trusts (Docker Hub's flow), both stopped after."""
    work.mkdir(parents=True, exist_ok=True)
    issuer = TokenIssuer(work, "bootree-registry", users)
    reg = None
    try:
        auth = (f"auth:\n  token:\n    realm: {issuer.realm}\n    service: bootree-registry\n"
                f"    issuer: {issuer.issuer}\n    rootcertbundle: {issuer.bundle}\n")
        reg = Registry(work, extra=auth)
        yield reg, issuer
    finally:
        if reg is not None:
            reg.stop()
        issuer.stop()

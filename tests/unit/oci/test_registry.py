"""The registry client against scripted servers (httpx.MockTransport): auth, retries, bounds."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bootree.errors import RegistryError
from bootree.format.oci import Descriptor
from bootree.oci.registry import RegistryClient, RegistryOptions

BLOB = bytes(range(256)) * 40
DESC = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + hashlib.sha256(BLOB).hexdigest(), len(BLOB))
MANIFEST = json.dumps({"schemaVersion": 2}).encode()
MDIG = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
FAST = RegistryOptions(tls_verify=False, retries=3, backoff=0.0)
Handler = Callable[[httpx.Request], httpx.Response]


def body(status: int, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A streamed response, as from the network (64 KiB chunks)."""
    return httpx.Response(status, content=iter([data[i:i + 65536] for i in range(0, len(data), 65536)]),
                          headers=headers)


def client(handler: Handler, options: RegistryOptions = FAST) -> RegistryClient:
    return RegistryClient("reg.test", options, transport=httpx.MockTransport(handler))


def test_bearer_token_flow_with_auth_json(tmp_path: Path) -> None:
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {"reg.test": {"auth": base64.b64encode(b"u:p").decode()}}}))
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(f"{req.method} {req.url.path}")
        if req.url.path == "/token":
            assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
            assert req.url.params["scope"] == "repository:x/os:pull" and req.url.params["service"] == "reg"
            return httpx.Response(200, json={"access_token": "T1"})
        if req.headers.get("Authorization") != "Bearer T1":
            return httpx.Response(401, headers={"WWW-Authenticate":
                                                'Bearer realm="http://auth.test/token",service="reg",scope="repository:x/os:pull"'})
        return httpx.Response(200, content=MANIFEST, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                              "Docker-Content-Digest": MDIG})

    c = client(handler, RegistryOptions(tls_verify=False, backoff=0.0, authfile=authfile))
    got = c.get_manifest("x/os", "latest")
    assert got.digest == MDIG and got.data == MANIFEST
    c.get_manifest("x/os", MDIG)
    assert seen == ["GET /v2/x/os/manifests/latest", "GET /token", "GET /v2/x/os/manifests/latest",
                    f"GET /v2/x/os/manifests/{MDIG}"], "the token is cached"


def test_401_without_credentials_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "missing.json"))
    c = client(lambda req: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'}))
    with pytest.raises(RegistryError, match="authentication required") as ei:
        c.get_manifest("x/os", "latest")
    assert ei.value.status == 401 and "\n" not in str(ei.value)


def test_retries_429_and_503_then_succeeds() -> None:
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(200, content=MANIFEST)

    assert client(handler).get_manifest("x/os", MDIG).digest == MDIG
    assert len(calls) == 3


def test_manifest_digest_mismatch_and_size_bound() -> None:
    with pytest.raises(RegistryError, match="digest mismatch"):
        client(lambda req: httpx.Response(200, content=MANIFEST + b" ")).get_manifest("x/os", MDIG)
    with pytest.raises(RegistryError, match="larger than"):
        client(lambda req: httpx.Response(200, content=b"x" * (5 << 20))).get_manifest("x/os", "latest")


def test_blob_endless_body_is_cut_and_digest_checked(tmp_path: Path) -> None:
    dest = tmp_path / "blob"
    with pytest.raises(RegistryError, match="larger than its declared size"):
        client(lambda req: body(200, BLOB + b"more")).fetch_blob("x/os", DESC, dest)
    assert not dest.exists()
    bad = bytearray(BLOB)
    bad[7] ^= 1
    with pytest.raises(RegistryError, match="digest mismatch"):
        client(lambda req: body(200, bytes(bad))).fetch_blob("x/os", DESC, dest)
    assert not dest.exists() and not (tmp_path / "blob.partial").exists()


def test_truncated_blob_resumes_with_range(tmp_path: Path) -> None:
    dest = tmp_path / "blob"
    ranges: list[str | None] = []

    def handler(req: httpx.Request) -> httpx.Response:
        ranges.append(req.headers.get("Range"))
        if len(ranges) == 1:
            return body(200, BLOB[:1000])  # the connection dropped
        start = int(req.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return body(206, BLOB[start:],
                    headers={"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})

    c = client(handler)
    with pytest.raises(RegistryError, match="truncated"):
        c.fetch_blob("x/os", DESC, dest)
    assert (tmp_path / "blob.partial").stat().st_size == 1000
    c.fetch_blob("x/os", DESC, dest)
    assert dest.read_bytes() == BLOB and ranges == [None, "bytes=1000-"] and c.stats.resumed == 1


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    dest = tmp_path / "blob"
    (tmp_path / "blob.partial").write_bytes(b"garbage!")
    client(lambda req: body(200, BLOB)).fetch_blob("x/os", DESC, dest)
    assert dest.read_bytes() == BLOB


def test_blob_progress_counts_the_resumed_part_and_can_stop(tmp_path: Path) -> None:
    big = bytes(range(256)) * 2000  # 512 KB: several chunks
    desc = Descriptor(DESC.media_type, "sha256:" + hashlib.sha256(big).hexdigest(), len(big))

    def handler(req: httpx.Request) -> httpx.Response:
        rng = req.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            return body(206, big[start:])
        return body(200, big)

    dest = tmp_path / "blob"
    (tmp_path / "blob.partial").write_bytes(big[:100_000])
    seen: list[int] = []
    c = client(handler)
    c.fetch_blob("x/os", desc, dest, seen.append)
    assert dest.read_bytes() == big and seen[-1] == len(big) and seen[0] > 100_000 and seen == sorted(seen)
    assert c.stats.resumed == 1 and c.stats.by_digest[desc.digest] == len(big) - 100_000

    class Stop(Exception):
        pass

    def stop(n: int) -> None:
        raise Stop

    dest2 = tmp_path / "blob2"
    with pytest.raises(Stop):
        c.fetch_blob("x/os", desc, dest2, stop)
    assert not dest2.exists() and (tmp_path / "blob2.partial").stat().st_size > 0, "kept for a resume"


def test_get_range_checks_content_range_and_reports_an_ignored_range() -> None:
    got: list[tuple[int, bytes]] = []

    def ranged(req: httpx.Request) -> httpx.Response:
        assert req.headers["Range"] == "bytes=10-19"
        return body(206, BLOB[10:20], {"Content-Range": f"bytes 10-19/{len(BLOB)}"})

    assert client(ranged).get_range("x/os", DESC, 10, 20, lambda pos, b: got.append((pos, b)))
    assert b"".join(b for _, b in got) == BLOB[10:20] and got[0][0] == 10
    assert not client(lambda req: body(200, BLOB)).get_range("x/os", DESC, 10, 20, lambda pos, b: None), \
        "a registry that ignores Range: nothing read, the caller falls back"
    wrong = client(lambda req: body(206, BLOB[0:10], {"Content-Range": f"bytes 0-9/{len(BLOB)}"}))
    with pytest.raises(RegistryError, match="Content-Range"):
        wrong.get_range("x/os", DESC, 10, 20, lambda pos, b: None)
    longer = client(lambda req: body(206, BLOB[10:30], {"Content-Range": f"bytes 10-19/{len(BLOB)}"}))
    with pytest.raises(RegistryError, match="longer"):
        longer.get_range("x/os", DESC, 10, 20, lambda pos, b: None)

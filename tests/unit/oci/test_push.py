"""The push client against scripted servers (httpx.MockTransport): relative Locations, retries,
chunk boundaries, a rejected manifest, multi-scope tokens, the blob-location cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from pathlib import Path

import httpx
import pytest

from bootree.errors import PushError
from bootree.oci.push import BlobLocations, BlobToPush, PushOptions, push_blobs
from bootree.oci.reference import DockerReference
from bootree.oci.registry import RegistryOptions

FAST = RegistryOptions(tls_verify=False, retries=2, backoff=0.0)
MANIFEST = b'{"schemaVersion":2}'
MDIG = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def _blob(tmp_path: Path, data: bytes) -> BlobToPush:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    p = tmp_path / digest[7:]
    p.write_bytes(data)
    return BlobToPush(digest, len(data), p)


class FakeRegistry:
    """Just enough of the distribution API: uploads (PATCH/PUT), HEAD, mounts, manifests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.sessions: dict[str, bytearray] = {}
        self.log: list[str] = []
        self.fail_first: set[str] = set()
        self.mountable: dict[str, str] = {}
        self.lock = threading.Lock()  # digest -> the repository it can be mounted from

    def __call__(self, req: httpx.Request) -> httpx.Response:
        path, q = req.url.path, req.url.params
        self.log.append(f"{req.method} {path}")
        key = f"{req.method} {path.rsplit('/', 1)[0]}"
        if key in self.fail_first:
            self.fail_first.discard(key)
            return httpx.Response(503, headers={"Retry-After": "0"})
        if req.method == "HEAD":
            return httpx.Response(200 if path.rsplit("/", 1)[1] in self.blobs else 404)
        if req.method == "POST":
            if "mount" in q and self.mountable.get(q["mount"]) == q["from"]:
                self.blobs[q["mount"]] = b""
                return httpx.Response(201)
            with self.lock:
                sid = f"s{len(self.sessions)}"
                self.sessions[sid] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/x/os/blobs/uploads/{sid}?_state=0"})
        if req.method == "PATCH":
            sid = path.rsplit("/", 1)[1]
            start, end = map(int, req.headers["Content-Range"].split("-"))
            data = req.read()
            assert start == len(self.sessions[sid]) and end - start + 1 == len(data)
            self.sessions[sid] += data
            return httpx.Response(202, headers={"Location": f"/v2/x/os/blobs/uploads/{sid}?_state={end + 1}"})
        if req.method == "PUT" and "/blobs/uploads/" in path:
            sid = path.rsplit("/", 1)[1]
            data = bytes(self.sessions[sid]) + req.read()
            if "sha256:" + hashlib.sha256(data).hexdigest() != q["digest"]:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID", "message": "bad"}]})
            self.blobs[q["digest"]] = data
            return httpx.Response(201)
        if req.method == "PUT" and "/manifests/" in path:
            if json.loads(req.read()).get("schemaVersion") != 2:
                return httpx.Response(400, json={"errors": [{"code": "MANIFEST_INVALID", "message": "no"}]})
            return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + hashlib.sha256(req.content).hexdigest()})
        return httpx.Response(405)


def _push(reg: FakeRegistry, blobs: list[BlobToPush], tmp_path: Path, manifest: bytes = MANIFEST,
          **popts: object) -> tuple[str, dict[str, str]]:
    res = push_blobs(DockerReference("reg.test", "x/os", "v1"), blobs, manifest,
                     "sha256:" + hashlib.sha256(manifest).hexdigest(), "application/vnd.oci.image.manifest.v1+json",
                     options=FAST, push_options=PushOptions(location_cache=tmp_path / "cache.json", **popts),  # type: ignore[arg-type]
                     transport=httpx.MockTransport(reg))
    return res.digest, res.stats.by_digest


def test_monolithic_chunked_skip_and_retry(tmp_path: Path) -> None:
    reg = FakeRegistry()
    small, big = _blob(tmp_path, b"s" * 10), _blob(tmp_path, bytes(range(256)) * 40)
    reg.fail_first = {"HEAD /v2/x/os/blobs"}  # a 503 first: retried
    digest, how = _push(reg, [small, big], tmp_path, chunk_size=1000)
    assert digest == MDIG and how == {small.digest: "uploaded", big.digest: "uploaded"}
    assert reg.blobs[big.digest] == big.path.read_bytes()
    assert sum(1 for x in reg.log if x.startswith("PATCH ")) == 11  # 10240 bytes in 1000-byte chunks
    _, how = _push(reg, [small, big], tmp_path)
    assert set(how.values()) == {"skipped"}


def test_mount_from_the_location_cache_or_the_declined_session(tmp_path: Path) -> None:
    blob = _blob(tmp_path, b"layer")
    reg = FakeRegistry()
    _, how = _push(reg, [blob], tmp_path, mount_from=("elsewhere/repo",))
    # Declined (202): the mount's session takes the upload, no second POST.
    assert how == {blob.digest: "uploaded"} and sum(1 for x in reg.log if x.startswith("POST")) == 1
    cache = BlobLocations(tmp_path / "cache.json")
    assert cache.repositories("reg.test", blob.digest) == ["x/os"]
    cache.record("reg.test", blob.digest, "has/it")
    cache.save()
    reg = FakeRegistry()
    reg.mountable[blob.digest] = "has/it"
    _, how = _push(reg, [blob], tmp_path)
    assert how == {blob.digest: "mounted"}
    assert not [x for x in reg.log if x.startswith(("PUT /v2/x/os/blobs", "PATCH"))]


def test_rejected_manifest_and_blob_are_push_errors(tmp_path: Path) -> None:
    with pytest.raises(PushError, match=r"pushing to .*manifest.*MANIFEST_INVALID"):
        _push(FakeRegistry(), [], tmp_path, manifest=b'{"schemaVersion":1}')
    blob = _blob(tmp_path, b"abc")
    blob.path.write_bytes(b"xyz")  # the file no longer matches its digest
    with pytest.raises(PushError, match="DIGEST_INVALID"):
        _push(FakeRegistry(), [blob], tmp_path)


def test_token_request_carries_every_scope_of_the_challenge(tmp_path: Path) -> None:
    scopes: list[list[str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/token":
            scopes.append(req.url.params.get_list("scope"))
            return httpx.Response(200, json={"token": "T"})
        if req.headers.get("Authorization") != "Bearer T":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token",'
                                                'service="r",scope="repository:x/os:pull,push repository:a/b:pull"'})
        return FakeRegistry()(req)

    _push_with = push_blobs(DockerReference("reg.test", "x/os", "v1"), [], MANIFEST, MDIG,
                            "application/vnd.oci.image.manifest.v1+json", options=FAST,
                            push_options=PushOptions(use_location_cache=False), transport=httpx.MockTransport(handler))
    assert _push_with.digest == MDIG
    assert scopes == [["repository:x/os:pull,push", "repository:a/b:pull"]]


class CuttingRegistry(FakeRegistry):
    """A registry that keeps part of a cut chunk and says so: ``Range`` on PATCH and upload GET."""

    def __init__(self, cut_patch: int, keep: int, forget_session: bool = False) -> None:
        super().__init__()
        self.cut_patch, self.keep, self.forget = cut_patch, keep, forget_session
        self.patches = 0
        self.received = 0

    def __call__(self, req: httpx.Request) -> httpx.Response:
        sid = req.url.path.rsplit("/", 1)[1]
        if req.method == "GET" and "/blobs/uploads/" in req.url.path:
            self.log.append(f"GET {req.url.path}")
            if sid not in self.sessions:
                return httpx.Response(404, json={"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "gone"}]})
            n = len(self.sessions[sid])
            return httpx.Response(204, headers={"Range": f"0-{max(n - 1, 0)}",
                                                "Location": f"/v2/x/os/blobs/uploads/{sid}?_state={n}"})
        if req.method == "PATCH":
            self.patches += 1
            data = req.read()
            self.received += len(data)
            if self.patches == self.cut_patch:
                self.log.append(f"PATCH {req.url.path} (cut)")
                self.sessions[sid] += data[: self.keep]
                if self.forget:
                    del self.sessions[sid]
                raise httpx.ReadError("connection reset by peer")
            r = super().__call__(req)
            return httpx.Response(r.status_code, headers={**r.headers, "Range": f"0-{len(self.sessions[sid]) - 1}"})
        return super().__call__(req)


@pytest.mark.parametrize(("keep", "forget"), [(0, False), (300, False), (300, True)])
def test_cut_chunk_resumes_at_the_registry_offset(tmp_path: Path, keep: int, forget: bool) -> None:
    from bootree.oci.push import RegistryPusher

    data = bytes(range(256)) * 40  # 10240 bytes: 11 chunks of 1000
    blob = _blob(tmp_path, data)
    reg = CuttingRegistry(cut_patch=4, keep=keep, forget_session=forget)
    with contextlib.closing(RegistryPusher("reg.test", FAST, transport=httpx.MockTransport(reg))) as client:
        assert client.push_blob("x/os", blob, PushOptions(chunk_size=1000), []) == "uploaded"
        stats = client.push_stats
    assert reg.blobs[blob.digest] == data
    assert sum(1 for x in reg.log if x.startswith("GET ")) == 1
    if forget:  # the session is gone: a new one, from byte 0
        assert (stats.resumed, stats.restarted) == (0, 1)
        assert reg.received == 3000 + 1000 + len(data)
        assert stats.bytes_sent == 3000 + len(data)
    else:  # 3 chunks accepted, the 4th cut after ``keep`` bytes: only the rest of it is sent again
        assert (stats.resumed, stats.restarted) == (1, 0)
        assert reg.received == len(data) + 1000 - keep
        assert stats.bytes_sent == len(data)


def test_cut_chunks_give_up_after_the_retries(tmp_path: Path) -> None:
    from bootree.oci.push import RegistryPusher

    class Always(CuttingRegistry):
        def __call__(self, req: httpx.Request) -> httpx.Response:
            if req.method == "PATCH" and self.patches >= 1:
                self.patches += 1
                raise httpx.ReadError("reset")
            return super().__call__(req)

    blob = _blob(tmp_path, b"z" * 5000)
    reg = Always(cut_patch=0, keep=0)
    with contextlib.closing(RegistryPusher("reg.test", FAST, transport=httpx.MockTransport(reg))) as client, \
            pytest.raises(PushError, match="reset"):
        client.push_blob("x/os", blob, PushOptions(chunk_size=1000), [])
    assert reg.patches == 1 + 1 + FAST.retries  # the first accepted, then the first try and each retry

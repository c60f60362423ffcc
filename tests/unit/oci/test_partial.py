"""Partial pulls of zstd:chunked layers through :func:`pull_image`, from a scripted registry
(httpx.MockTransport serving an ``oci:`` layout, with ``Range`` support that a test can turn
off or tamper with): v1 → v2 fetches the TOC and the changed files only, and imports the very
commits a full pull of v2 makes; bad TOCs and frames fail with a typed error and stage nothing;
a registry that ignores ``Range`` gets a whole-blob fetch."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from commitgen import F, base_spec, write_commit

from bootree.errors import LayerError
from bootree.oci.export import EncapsulateOptions, encapsulate_to_layout
from bootree.oci.importer import PullResult, pull_image
from bootree.oci.reference import ImageReference, blob_ref, image_ref
from bootree.oci.registry import RegistryClient, RegistryOptions
from bootree.oci.source import RegistrySource
from bootree.oci.zchunked import (
    MANIFEST_POSITION_KEY,
    TAR_HEADERS_BOOTREE,
    TAR_HEADERS_KEY,
    TARSPLIT_POSITION_KEY,
    TarSplitEntry,
    decode_toc,
)
from bootree.repo import Repo

IMAGE = ImageReference.parse("docker://reg.test/r/os:latest")
FAST = RegistryOptions(tls_verify=False, retries=0, backoff=0.0)
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _content(i: int, n: int = 6000) -> bytes:
    """Incompressible, deterministic file content."""
    return b"".join(hashlib.sha256(f"{i}:{k}".encode()).digest() for k in range(n // 32))


def _spec(version: int) -> dict[str, F]:
    spec = {**base_spec(), **{f"usr/share/data/f{i:03d}": F(_content(i)) for i in range(80)}}
    if version >= 2:
        spec["usr/share/data/f010"] = F(_content(1010))
        spec["usr/share/data/f050"] = F(_content(1050))
        spec["usr/share/data/new"] = F(_content(2000))
    return spec  # type: ignore[return-value]


def _stream(data: bytes) -> Iterator[bytes]:
    """A streamed body, as from the network (64 KiB chunks)."""
    return iter([data[i:i + 65536] for i in range(0, len(data), 65536)])


@dataclass
class FakeRegistry:
    """Serves the layout at ``root`` as ``r/os`` (tag ``latest``): manifests, blobs, ranges."""

    root: Path
    ranges: bool = True
    tamper: Callable[[str, bytes], bytes] | None = None
    sent: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def blob(self, digest: str) -> bytes:
        return (self.root / "blobs/sha256" / digest[7:]).read_bytes()

    def handler(self, req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if "/manifests/" in path:
            ref = path.rsplit("/", 1)[1]
            if not ref.startswith("sha256:"):
                ref = json.loads((self.root / "index.json").read_text())["manifests"][0]["digest"]
            data = self.blob(ref)
            return httpx.Response(200, content=data, headers={
                "Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": ref})
        digest = path.rsplit("/", 1)[1]
        data = self.blob(digest)
        if self.tamper is not None:
            data = self.tamper(digest, data)
        m = _RANGE.fullmatch(req.headers.get("Range", ""))
        self.requests.append(f"{digest[7:15]} {req.headers.get('Range', 'all')}")
        if m and self.ranges:
            a, b = int(m.group(1)), int(m.group(2))
            part = data[a:b + 1]
            self.sent[digest] = self.sent.get(digest, 0) + len(part)
            return httpx.Response(206, content=_stream(part), headers={"Content-Range": f"bytes {a}-{b}/{len(data)}"})
        self.sent[digest] = self.sent.get(digest, 0) + len(data)
        return httpx.Response(200, content=_stream(data))


def _publish(tmp_path: Path, version: int) -> tuple[Path, dict[str, object]]:
    src = Repo.init(tmp_path / f"src{version}")
    write_commit(src, _spec(version), version=f"{version}.0")  # type: ignore[arg-type]
    out = tmp_path / f"oci{version}"
    encapsulate_to_layout(src, "test", ImageReference.parse(f"oci:{out}:latest"),
                          EncapsulateOptions(compression="zstd:chunked", architecture="amd64", max_layers=3))
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    return out, manifest


def _pull(repo: Repo, reg: FakeRegistry) -> PullResult:
    src = RegistrySource(IMAGE, FAST)
    src.client.close()
    src.client = RegistryClient("reg.test", FAST, transport=httpx.MockTransport(reg.handler))
    src.stats = src.client.stats
    return pull_image(repo, IMAGE, source=src, architecture="amd64", privileged=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object], Path, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("zchunked-images")
    return (*_publish(tmp, 1), *_publish(tmp, 2))


def _changed_layers(m1: dict[str, object], m2: dict[str, object]) -> list[dict[str, object]]:
    old = {x["digest"] for x in m1["layers"]}  # type: ignore[attr-defined, index]
    return [x for x in m2["layers"] if x["digest"] not in old]  # type: ignore[attr-defined, index]


def test_upgrade_fetches_only_changed_files_and_matches_a_full_pull(tmp_path: Path, images: tuple) -> None:
    oci1, m1, oci2, m2 = images
    for layer in m2["layers"]:
        assert MANIFEST_POSITION_KEY in layer["annotations"]
    repo = Repo.init(tmp_path / "repo")
    _pull(repo, FakeRegistry(oci1))
    reg = FakeRegistry(oci2)
    res = _pull(repo, reg)
    changed = _changed_layers(m1, m2)
    assert changed, "v2 changes layers"
    sent = {x["digest"]: (reg.sent[x["digest"]], x["size"]) for x in changed}
    big = max(changed, key=lambda x: x["size"])
    assert sent[big["digest"]][0] < big["size"] / 3, sent
    meta = sum(int(n) for x in changed for key in (MANIFEST_POSITION_KEY, TARSPLIT_POSITION_KEY)
               for n in [x["annotations"][key].split(":")[1]])
    # The three changed files (incompressible: stored as they are), the TOCs and tar-splits, and
    # the new commit and dirtree objects of the commit layer.
    three = 3 * len(_content(0))
    assert three <= sum(got for got, _ in sent.values()) <= three + meta + 8192, sent
    # The same commits as a full pull of v2 into an empty repository.
    full_repo = Repo.init(tmp_path / "full")
    full_reg = FakeRegistry(oci2)
    full = _pull(full_repo, full_reg)
    assert all(full_reg.sent[x["digest"]] == x["size"] for x in changed), "a first pull fetches whole blobs"
    assert res.state.commit == full.state.commit and res.ostree_commit == full.ostree_commit
    for layer in m2["layers"]:
        assert repo.resolve_rev(blob_ref(layer["digest"])) == full_repo.resolve_rev(blob_ref(layer["digest"]))


def test_registry_ignoring_range_gets_whole_blobs(tmp_path: Path, images: tuple) -> None:
    oci1, m1, oci2, m2 = images
    repo = Repo.init(tmp_path / "repo")
    _pull(repo, FakeRegistry(oci1))
    reg = FakeRegistry(oci2, ranges=False)
    res = _pull(repo, reg)
    for layer in _changed_layers(m1, m2):
        # The first (ignored) Range request is abandoned unread; then the whole blob.
        assert reg.sent[layer["digest"]] == 2 * layer["size"]
    full = _pull(Repo.init(tmp_path / "full"), FakeRegistry(oci2))
    assert res.state.commit == full.state.commit


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def f(data: bytes) -> bytes:
        return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]
    return f


def _bad_pull(tmp_path: Path, images: tuple, corrupt: Callable[[dict[str, object], bytes], bytes]) -> LayerError:
    oci1, m1, oci2, m2 = images
    repo = Repo.init(tmp_path / "repo")
    before = _pull(repo, FakeRegistry(oci1)).state.commit
    refs = repo.list_refs()
    changed = {x["digest"]: x for x in _changed_layers(m1, m2)}
    reg = FakeRegistry(oci2, tamper=lambda d, data: corrupt(changed[d], data) if d in changed else data)
    with pytest.raises(LayerError) as e:
        _pull(repo, reg)
    assert repo.list_refs() == refs, "nothing published"
    assert repo.resolve_rev(image_ref(IMAGE)) == before
    assert not list((repo.path / "tmp").glob("staging-*/*")), "nothing staged"
    return e.value


def test_toc_checksum_mismatch_is_an_error(tmp_path: Path, images: tuple) -> None:
    def corrupt(layer: dict[str, object], data: bytes) -> bytes:
        off = int(str(layer["annotations"][MANIFEST_POSITION_KEY]).split(":")[0])  # type: ignore[index]
        return _flip(off + 10)(data)

    err = _bad_pull(tmp_path, images, corrupt)
    assert "TOC checksum mismatch" in str(err)


def test_frame_not_matching_its_digest_is_an_error(tmp_path: Path, images: tuple) -> None:
    import zstandard

    def corrupt(layer: dict[str, object], data: bytes) -> bytes:
        o, n, u, _ = (int(x) for x in str(layer["annotations"][MANIFEST_POSITION_KEY]).split(":"))  # type: ignore[index]
        toc = decode_toc(zstandard.ZstdDecompressor().decompress(data[o:o + n], max_output_size=u))
        new = next((e for e in toc.entries if e.type == "reg"
                    and e.digest == "sha256:" + hashlib.sha256(_content(2000)).hexdigest()), None)
        if new is None:  # another changed layer
            return data
        return _flip((new.offset + new.end_offset) // 2)(data)  # inside a raw block: other bytes, same size

    err = _bad_pull(tmp_path, images, corrupt)
    assert "does not match its TOC digest" in str(err), err


def _tarsplit_requested(reg: FakeRegistry, layer: dict[str, object]) -> bool:
    start = str(layer["annotations"][TARSPLIT_POSITION_KEY]).split(":")[0]  # type: ignore[index]
    return any(r.startswith(str(layer["digest"])[7:15]) and f"bytes={start}-" in r for r in reg.requests)


def test_bootree_layers_rebuild_without_their_tarsplit(tmp_path: Path, images: tuple) -> None:
    oci1, m1, oci2, m2 = images
    repo = Repo.init(tmp_path / "repo")
    _pull(repo, FakeRegistry(oci1))
    reg = FakeRegistry(oci2)
    res = _pull(repo, reg)
    changed = _changed_layers(m1, m2)
    assert all(x["annotations"][TAR_HEADERS_KEY] == TAR_HEADERS_BOOTREE for x in changed)  # type: ignore[index]
    rebuilt = [x for x in changed if reg.sent[x["digest"]] < x["size"]]  # type: ignore[index, operator]
    assert rebuilt, "some layers were rebuilt from ranges"
    assert not any(_tarsplit_requested(reg, x) for x in rebuilt), reg.requests
    full = _pull(Repo.init(tmp_path / "full"), FakeRegistry(oci2))
    assert res.state.commit == full.state.commit and res.ostree_commit == full.ostree_commit


def test_derived_headers_not_matching_the_diff_id_fetch_the_tarsplit(
        tmp_path: Path, images: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    import bootree.oci.partial as partial

    real = partial.synth_tarsplit

    def wrong(entries: object) -> Iterator[TarSplitEntry] | None:
        recs = real(entries)  # type: ignore[arg-type]
        assert recs is not None
        first = next(recs)
        # Another writer's header: same length, one byte different (the mtime field).
        bad = first.payload[:140] + bytes([first.payload[140] ^ 1]) + first.payload[141:]
        return iter([TarSplitEntry(first.type, first.position, bad), *recs])

    monkeypatch.setattr(partial, "synth_tarsplit", wrong)
    oci1, m1, oci2, m2 = images
    repo = Repo.init(tmp_path / "repo")
    _pull(repo, FakeRegistry(oci1))
    reg = FakeRegistry(oci2)
    res = _pull(repo, reg)
    rebuilt = [x for x in _changed_layers(m1, m2) if reg.sent[x["digest"]] < x["size"]]  # type: ignore[index, operator]
    assert rebuilt and all(_tarsplit_requested(reg, x) for x in rebuilt), reg.requests
    full = _pull(Repo.init(tmp_path / "full"), FakeRegistry(oci2))
    assert res.state.commit == full.state.commit and res.ostree_commit == full.ostree_commit

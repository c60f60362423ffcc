"""OCI manifest/index/config codecs: the sample layout parses, bad documents are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.oci import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    check_digest,
    digest_of,
    layer_compression,
    parse_manifest_or_index,
)

SAMPLE = Path("/work/shared/reference/oci-vectors/sample-oci-layout")
D = "sha256:" + "ab" * 32


def _blob(digest: str) -> bytes:
    return (SAMPLE / "blobs/sha256" / digest.split(":")[1]).read_bytes()


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="sample OCI layout not available")
def test_sample_layout_parses_and_digests_match() -> None:
    index = Index.from_bytes((SAMPLE / "index.json").read_bytes())
    tags = {d.annotations["org.opencontainers.image.ref.name"]: d for d in index.manifests}
    assert set(tags) == {"v1", "v2"}
    data = _blob(tags["v2"].digest)
    assert digest_of(data) == tags["v2"].digest and len(data) == tags["v2"].size
    m = Manifest.from_bytes(data)
    assert len(m.layers) == 3
    cfg = ImageConfig.from_bytes(_blob(m.config.digest))
    assert cfg.architecture == "amd64" and len(cfg.diff_ids) == 3
    assert cfg.labels.get("containers.bootc") == "1"
    assert layer_compression(m.layers[0].media_type) == "gzip"


def _manifest(**over: object) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": D, "size": 5}],
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_docker_schema2_manifest() -> None:
    data = json.loads(_manifest())
    data["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    data["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    data["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    m = Manifest.from_bytes(json.dumps(data).encode())
    assert layer_compression(m.layers[0].media_type) == "gzip"


@pytest.mark.parametrize("bad", [
    {"schemaVersion": 1},
    {"layers": "x"},
    {"config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:AB", "size": 1}},
    {"config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": -1}},
    {"config": {"mediaType": "text/plain", "digest": D, "size": 1}},
    {"mediaType": "application/x-unknown"},
])
def test_bad_manifests_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        Manifest.from_bytes(_manifest(**bad))


def test_not_json() -> None:
    with pytest.raises(FormatError):
        Manifest.from_bytes(b"\xff{")


def test_index_picks_host_platform() -> None:
    def entry(arch: str) -> dict[str, object]:
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + (arch[0] * 64)[:64]
                if arch[0] in "abcdef" else D, "size": 1, "platform": {"architecture": arch, "os": "linux"}}
    data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": [entry("arm64"), entry("amd64")]}).encode()
    doc = parse_manifest_or_index(data, None)
    assert isinstance(doc, Index)
    chosen = doc.for_platform("amd64")
    assert chosen is not None and chosen.platform is not None and chosen.platform.architecture == "amd64"
    assert doc.for_platform("s390x") is None
    assert doc.platforms() == ["linux/arm64", "linux/amd64"]


def test_config_version_and_timestamp_rules() -> None:
    cfg = ImageConfig.from_bytes(json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2023-01-01T00:00:00Z",
        "config": {"Labels": {"version": "1", "org.opencontainers.image.version": "2"}},
        "rootfs": {"type": "layers", "diff_ids": [D]}}).encode())
    assert cfg.version == "2" and cfg.timestamp == "2023-01-01T00:00:00Z"


@given(st.binary(max_size=200))
def test_digest_of_is_valid_and_descriptor_round_trips(data: bytes) -> None:
    d = digest_of(data)
    assert check_digest(d) == d
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar", d, len(data), {"a": "b"})
    assert Descriptor.from_json(desc.to_json()) == desc


@given(st.text(max_size=80))
def test_check_digest_accepts_only_sha256_hex(text: str) -> None:
    ok = text.startswith("sha256:") and len(text) == 71 and all(c in "0123456789abcdef" for c in text[7:])
    if ok:
        assert check_digest(text) == text
    else:
        with pytest.raises(FormatError):
            check_digest(text)

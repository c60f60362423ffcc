"""The image-delta artifact format and the referrers index: build, parse, refuse."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError, ImageError
from bootree.format.checksum import Checksum
from bootree.format.oci import OCI_INDEX, OCI_MANIFEST, Descriptor, digest_of
from bootree.oci import deltaartifact as da
from bootree.oci.referrers import Referrer, parse_referrers, referrers_tag


def _csum(i: int) -> Checksum:
    return Checksum(hashlib.sha256(str(i).encode()).hexdigest())


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(f"layer{i}".encode()).hexdigest()


def test_referrers_tag_follows_the_spec_examples() -> None:
    assert referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    assert referrers_tag("sha512:" + "a" * 128) == "sha512-" + "a" * 64
    weird = ("test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
             "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation")
    assert referrers_tag(weird) == ("test-algorithm-using-algorithm-s-"
                                    "alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot")
    with pytest.raises(FormatError):
        referrers_tag("nodigest")


@settings(deadline=None, max_examples=60)  # a loaded CI machine: no per-example deadline
@given(st.lists(st.integers(0, 299), min_size=1, max_size=300), st.integers(1, 300))
def test_layer_map_roundtrip(assign: list[int], nlayers: int) -> None:
    nlayers = max(nlayers, max(assign) + 1)
    layers = tuple(_digest(i) for i in range(nlayers))
    groups: list[set[Checksum]] = [set() for _ in layers]
    for obj, layer in enumerate(assign):
        groups[layer].add(_csum(obj))
    lm = da.LayerMap.build(layers, tuple(frozenset(g) for g in groups))
    back = da.LayerMap.from_bytes(lm.to_bytes())
    assert back == lm
    ordered = sorted(_csum(i) for i in range(len(assign)))
    assert [back.indexes()[ordered.index(_csum(obj))] for obj in range(len(assign))] == assign


def test_layer_map_refuses_an_object_in_two_layers() -> None:
    with pytest.raises(ImageError, match="is in layers 0 and 1"):
        da.LayerMap.build((_digest(0), _digest(1)), (frozenset({_csum(1)}), frozenset({_csum(1)})))


def _map_doc(**override: object) -> bytes:
    doc: dict[str, object] = {"version": 1, "layers": [_digest(0), _digest(1)], "width": 1, "objects": 3,
                              "assignment": base64.b64encode(zlib.compress(b"\x00\x01\x01")).decode()}
    doc.update(override)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data, why", [
    (b"not json", "not JSON"),
    (_map_doc(version=2), "unknown version"),
    (_map_doc(layers=[]), "malformed"),
    (_map_doc(objects=-1), "malformed"),
    (_map_doc(width=2), "width"),
    (_map_doc(objects=2), "not 2 objects"),
    (_map_doc(objects=4), "not 4 objects"),
    (_map_doc(assignment="!!"), "bad assignment"),
    (_map_doc(assignment=base64.b64encode(zlib.compress(b"\x00\x01\x02")).decode()), "does not exist"),
    # A bomb: far more bytes than declared are never inflated.
    (_map_doc(assignment=base64.b64encode(zlib.compress(b"\x00" * (64 << 20))).decode()), "not 3 objects"),
])
def test_layer_map_refuses_malformed_blobs(data: bytes, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        da.LayerMap.from_bytes(data)


def _artifact(**ann: str) -> tuple[bytes, Descriptor]:
    subject = Descriptor(OCI_MANIFEST, _digest(9), 1234)
    annotations = {da.FROM_DIGEST: _digest(8), da.FROM_COMMIT: str(_csum(1)), da.TO_DIGEST: subject.digest,
                   da.TO_COMMIT: str(_csum(2)), da.FORMAT: "bootree"}
    annotations.update(ann)
    data = da.build_artifact(subject, Descriptor(da.DELTA_MEDIA_TYPE, _digest(3), 10),
                             Descriptor(da.LAYERMAP_MEDIA_TYPE, _digest(4), 20), annotations)
    return data, subject


def test_artifact_roundtrip_and_its_oci_shape() -> None:
    data, subject = _artifact()
    doc = json.loads(data)
    assert doc["artifactType"] == da.ARTIFACT_TYPE and doc["mediaType"] == OCI_MANIFEST
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json",
                             "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                             "size": 2}
    art = da.parse_artifact(data, digest_of(data))
    assert art.subject == subject and art.from_commit == _csum(1) and art.to_commit == _csum(2)
    assert (art.delta.size, art.layer_map.size, art.format) == (10, 20, "bootree")


def _mutated(edit: str) -> bytes:
    data, _ = _artifact()
    doc = json.loads(data)
    if edit == "type":
        doc["artifactType"] = "application/vnd.example.sbom"
    elif edit == "subject":
        del doc["subject"]
    elif edit == "two-deltas":
        doc["layers"] = [doc["layers"][0], doc["layers"][0], doc["layers"][1]]
    elif edit == "no-map":
        doc["layers"] = doc["layers"][:1]
    elif edit == "to-digest":
        doc["annotations"][da.TO_DIGEST] = _digest(7)
    elif edit == "from-commit":
        doc["annotations"][da.FROM_COMMIT] = "xyz"
    return json.dumps(doc).encode()


@pytest.mark.parametrize("edit, why", [
    ("type", "not a bootree image delta"), ("subject", "no subject"), ("two-deltas", "one delta"),
    ("no-map", "one delta and one layer map"), ("to-digest", "do not match its subject"),
    ("from-commit", "from-commit"),
])
def test_artifact_refusals(edit: str, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        da.parse_artifact(_mutated(edit), "sha256:" + "0" * 64)


def test_referrers_index_parse() -> None:
    entry = Referrer(Descriptor(OCI_MANIFEST, _digest(1), 42), da.ARTIFACT_TYPE, {"k": "v"})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry.to_json()]}).encode()
    assert parse_referrers(index) == [entry]
    for bad in (b"[]", json.dumps({"schemaVersion": 2, "manifests": [{"digest": "x"}]}).encode(),
                json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": []}).encode()):
        with pytest.raises(FormatError):
            parse_referrers(bad)

"""Signed claims of container signatures: strict parsing (containers-signature(5))."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.oci.sigpayload import COSIGN_TYPE, SIMPLE_SIGNING_TYPE, digest_matches, make_payload, parse_claim

D = "sha256:" + "ab" * 32


def _doc(**critical: object) -> dict[str, object]:
    c: dict[str, object] = {"type": SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": D},
                            "identity": {"docker-reference": "reg.example/a:1"}}
    c.update(critical)
    return {"critical": c, "optional": {"creator": "skopeo", "timestamp": 1700000000}}


def test_the_manual_example() -> None:
    text = json.dumps({"critical": {"type": "atomic container signature",
                                    "image": {"docker-manifest-digest": "sha256:817a12c32a39bbe394944ba49de563e085f1d3c5266eb8e9723256bc4448680e"},
                                    "identity": {"docker-reference": "docker.io/library/busybox:latest"}},
                       "optional": {"creator": "some software package v1.0.1-35", "timestamp": 1483228800}})
    c = parse_claim(text.encode(), SIMPLE_SIGNING_TYPE)
    assert c.docker_reference == "docker.io/library/busybox:latest" and c.timestamp == 1483228800
    assert c.creator == "some software package v1.0.1-35"


@pytest.mark.parametrize(("doc", "match"), [
    (_doc(type="cosign container image signature"), "expected 'atomic container signature'"),
    (_doc(extra=1), "unexpected member 'extra'"),
    (_doc(image={"docker-manifest-digest": D, "more": 1}), "unexpected member 'more'"),
    (_doc(image={}), "no member 'docker-manifest-digest'"),
    (_doc(image={"docker-manifest-digest": "sha256:xyz"}), "invalid docker-manifest-digest"),
    (_doc(identity={"docker-reference": 7}), "docker-reference"),
    ({"critical": {}}, "no member 'optional'"),
    ({**_doc(), "optional": None}, "optional must be a JSON object"),
    ({**_doc(), "optional": {"timestamp": 1.5}}, "not an integer"),
    ({**_doc(), "optional": {"creator": 3}}, "creator"),
    ([1, 2], "must be a JSON object"),
])
def test_rejects(doc: object, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        parse_claim(json.dumps(doc).encode(), SIMPLE_SIGNING_TYPE)


def test_duplicate_member_is_refused() -> None:
    other = "sha256:" + "cd" * 32
    text = ('{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"' + D + '",'
            '"docker-manifest-digest":"' + other + '"},"identity":{"docker-reference":"r.example/a:1"}},"optional":{}}')
    with pytest.raises(FormatError, match="duplicate member"):
        parse_claim(text.encode(), SIMPLE_SIGNING_TYPE)


def test_cosign_optional_may_be_null() -> None:
    text = json.dumps({"critical": {"type": COSIGN_TYPE, "image": {"docker-manifest-digest": D},
                                    "identity": {"docker-reference": "r.example/a"}}, "optional": None})
    assert parse_claim(text.encode(), COSIGN_TYPE).docker_reference == "r.example/a"


@given(st.binary(max_size=200), st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}(:[a-z0-9]{1,5})?", fullmatch=True),
       st.sampled_from([SIMPLE_SIGNING_TYPE, COSIGN_TYPE]), st.integers(0, 2**40))
def test_make_then_parse(manifest: bytes, name: str, kind: str, ts: int) -> None:
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    claim = parse_claim(make_payload(digest, "reg.example/" + name, kind=kind, timestamp=ts), kind)
    assert claim.manifest_digest == digest and claim.docker_reference == "reg.example/" + name and claim.timestamp == ts
    assert digest_matches(manifest, digest) and not digest_matches(manifest + b"x", digest)


@given(st.binary(max_size=300))
def test_garbage_fails_typed(data: bytes) -> None:
    try:
        parse_claim(data, SIMPLE_SIGNING_TYPE)
    except FormatError:
        pass


def test_digest_algorithms() -> None:
    m = b"{}"
    assert digest_matches(m, "sha512:" + hashlib.sha512(m).hexdigest())
    assert not digest_matches(m, "md5:" + hashlib.md5(m).hexdigest())

"""Image references, origin strings and ostree-ext's ref escaping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import InvalidImageReference
from bootree.oci.reference import (
    DockerReference,
    ImageReference,
    OstreeImageReference,
    SignatureKind,
    Transport,
    blob_ref,
    escape_ref,
    image_ref,
)

DIG = "sha256:" + "0123456789abcdef" * 4


def test_escape_examples_from_upstream() -> None:
    assert escape_ref("sha256:2c26") == "sha256_3A_2c26"
    assert escape_ref("registry:quay.io/coreos/fedora:latest") == "registry_3A_quay_2E_io/coreos/fedora_3A_latest"
    assert escape_ref("docker://quay.io/exampleos/os:latest") == "docker_3A__2F__2F_quay_2E_io/exampleos/os_3A_latest"
    assert escape_ref("a_b/") == "a__b_2F_"


def test_store_refs() -> None:
    img = ImageReference.parse("quay.io/coreos/fedora:latest")
    assert image_ref(img) == "ostree/container/image/registry_3A_quay_2E_io/coreos/fedora_3A_latest"
    assert blob_ref(DIG) == "ostree/container/blob/sha256_3A_" + DIG[7:]


@pytest.mark.parametrize(("text", "host", "repo", "tag", "digest"), [
    ("quay.io/x/y:tag", "quay.io", "x/y", "tag", None),
    ("127.0.0.1:5000/demo/os", "127.0.0.1:5000", "demo/os", "latest", None),
    ("localhost/os:v1", "localhost", "os", "v1", None),
    ("fedora", "docker.io", "library/fedora", "latest", None),
    (f"quay.io/x/y:t@{DIG}", "quay.io", "x/y", "t", DIG),
    ("[::1]:5000/os:v2", "[::1]:5000", "os", "v2", None),
])
def test_docker_reference(text: str, host: str, repo: str, tag: str, digest: str | None) -> None:
    r = DockerReference.parse(text)
    assert (r.host, r.repository, r.tag, r.digest) == (host, repo, tag, digest)
    assert r.reference == (digest or tag)


@pytest.mark.parametrize("bad", ["Quay.io/X/Y", "quay.io/x/y:bad tag", "quay.io/x/y@sha256:123", "quay.io/x//y", ""])
def test_bad_docker_references(bad: str) -> None:
    with pytest.raises(InvalidImageReference):
        ImageReference.parse(bad)


def test_transports() -> None:
    assert ImageReference.parse("docker://quay.io/x/y:1") == ImageReference(Transport.REGISTRY, "quay.io/x/y:1")
    oci = ImageReference.parse("oci:/var/mnt/usb/os:v2")
    assert oci.transport is Transport.OCI and oci.layout_path_and_tag() == ("/var/mnt/usb/os", "v2")
    assert ImageReference.parse("oci:/a/b").layout_path_and_tag() == ("/a/b", None)
    assert ImageReference.parse("oci-archive:/f.tar").transport is Transport.OCI_ARCHIVE
    assert ImageReference.parse("/srv/os", "oci") == ImageReference(Transport.OCI, "/srv/os")
    assert str(ImageReference.parse("quay.io/x/y:1")) == "docker://quay.io/x/y:1"
    assert ImageReference.parse("quay.io/x/y:1").short == "quay.io/x/y:1"
    assert ImageReference.parse("oci:/srv/os").short == "oci:/srv/os"
    with pytest.raises(InvalidImageReference):
        ImageReference.parse("x", "ftp")
    assert ImageReference.parse(f"quay.io/x/y@{DIG}").pinned


@pytest.mark.parametrize(("text", "kind", "canonical"), [
    ("ostree-unverified-registry:quay.io/x/y:tag", SignatureKind.INSECURE, None),
    ("ostree-unverified-image:oci:/var/mnt/usb/os", SignatureKind.INSECURE, None),
    ("ostree-unverified-image:docker://quay.io/x/y:1", SignatureKind.INSECURE, "ostree-unverified-registry:quay.io/x/y:1"),
    ("ostree-image-signed:docker://quay.io/x/y:1", SignatureKind.CONTAINER_POLICY, None),
    ("ostree-remote-image:fedora:docker://quay.io/x/y:1", SignatureKind.OSTREE_REMOTE, None),
    ("ostree-remote-registry:fedora:quay.io/x/y:1", SignatureKind.OSTREE_REMOTE,
     "ostree-remote-image:fedora:docker://quay.io/x/y:1"),
])
def test_origin_strings(text: str, kind: SignatureKind, canonical: str | None) -> None:
    r = OstreeImageReference.parse(text)
    assert r.sigverify is kind
    assert str(r) == (canonical or text)
    assert OstreeImageReference.parse(str(r)) == r


def test_bad_remote_form() -> None:
    with pytest.raises(InvalidImageReference):
        OstreeImageReference.parse("ostree-remote-image:nocolon")


@given(st.text(max_size=40))
def test_escape_output_is_ref_safe(text: str) -> None:
    out = escape_ref(text)
    assert all((c.isascii() and c.isalnum()) or c in "-_/" for c in out)
    assert not out.endswith("/") and "//" not in out

"""registries.d: merging files, the lookup order, and the lookaside URL layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree.errors import ContainerPolicyError
from bootree.oci.reference import DockerReference
from bootree.oci.registries_d import Namespace, load_registries_d, lookaside_url, parse_registries_d

BUSYBOX = "sha256:817a12c32a39bbe394944ba49de563e085f1d3c5266eb8e9723256bc4448680e"


def test_lookaside_url_as_the_signature_protocols_doc() -> None:
    ref = DockerReference.parse("busybox:latest")
    assert lookaside_url("https://example.com/lookaside", ref, BUSYBOX, 0) == (
        "https://example.com/lookaside/library/busybox@sha256=" + BUSYBOX[7:] + "/signature-1")
    ref = DockerReference.parse("example.com/ns1/ns2/ns3/repo:x")
    assert lookaside_url("file:///srv/sigs/", ref, BUSYBOX, 1).endswith("/srv/sigs/ns1/ns2/ns3/repo@sha256="
                                                                       + BUSYBOX[7:] + "/signature-2")


def test_lookup_order_and_old_key_names() -> None:
    conf = parse_registries_d([
        ("a.yaml", "docker:\n  reg.example:\n    sigstore: https://old.example/s\n"
                   "  reg.example/team:\n    lookaside: https://team.example/l\n    lookaside-staging: file:///stage\n"
                   "  reg.example/team/app:v1:\n    use-sigstore-attachments: true\n"),
        ("b.yaml", "default-docker:\n  lookaside: https://default.example/l\n"),
    ])
    app = DockerReference.parse("reg.example/team/app:v1")
    assert conf.lookaside_base(app) == "https://team.example/l"  # the identity's section defines no lookaside
    assert conf.lookaside_base(app, write=True) == "file:///stage"
    assert conf.use_sigstore_attachments(app)
    assert not conf.use_sigstore_attachments(DockerReference.parse("reg.example/team/app:v2"))
    assert conf.lookaside_base(DockerReference.parse("reg.example/other")) == "https://old.example/s"
    assert conf.lookaside_base(DockerReference.parse("elsewhere.example/x")) == "https://default.example/l"
    assert parse_registries_d([]).lookaside_base(app) is None


@pytest.mark.parametrize(("files", "match"), [
    ([("a.yaml", "default-docker: {}\n"), ("b.yaml", "default-docker:\n  lookaside: x\n")], "default-docker"),
    ([("a.yaml", "docker:\n  r.example: {}\n"), ("b.yaml", "docker:\n  r.example: {}\n")], "also defined in a.yaml"),
    ([("a.yaml", "docker: [1]\n")], "mapping of scopes"),
    ([("a.yaml", "- x\n")], "YAML mapping"),
    ([("a.yaml", "docker: {r.example: {lookaside: 3}}\n")], "URL string"),
    ([("a.yaml", "docker: {r.example: {use-sigstore-attachments: yes-please}}\n")], "true or false"),
    ([("a.yaml", "docker: {\n")], "invalid registries.d YAML"),
])
def test_invalid(files: list[tuple[str, str]], match: str) -> None:
    with pytest.raises(ContainerPolicyError, match=match) as exc:
        parse_registries_d(files)
    assert exc.value.reason == "config"


def test_load_directory(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("docker:\n  r.example:\n    lookaside: file:///l\n")
    (tmp_path / "ignored.yml").write_text("not: [valid")
    conf = load_registries_d(tmp_path)
    assert conf.docker == {"r.example": Namespace("file:///l", None, None)}
    assert load_registries_d(tmp_path / "missing").docker == {}

"""containers-policy.json: strict parsing, scope lookup, identity matching (containers/image rules)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import ContainerPolicyError
from bootree.oci.policy import (
    AcceptAnything,
    Reject,
    SignedBy,
    SignedIdentity,
    SigstoreSigned,
    docker_scopes,
    identity_matches,
    oci_scopes,
    parse_named,
    parse_policy,
)
from bootree.oci.reference import DockerReference

D1 = "sha256:" + "1" * 64

# The manual's "reasonably locked-down system", without its comments, with a docker scope for each rule.
LOCKED_DOWN = {
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "docker.io/openshift": [{"type": "insecureAcceptAnything"}],
            "*.temporary-project.example.com": [{"type": "insecureAcceptAnything"}],
            "hostname:5000/myns/sigstore-signed-with-full-references": [
                {"type": "sigstoreSigned", "keyPath": "/path/to/sigstore-pubkey.pub"}],
            "hostname:5000/myns/official": [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/path/to/official-pubkey.gpg"}],
            "hostname:5000/vendor/product": [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/path/to/vendor-pubkey.gpg",
                 "signedIdentity": {"type": "exactRepository", "dockerRepository": "vendor-hostname/product/repository"}},
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/path/to/reviewer-pubkey.gpg"}],
            "private-mirror:5000/vendor-mirror": [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/path/to/vendor-pubkey.gpg",
                 "signedIdentity": {"type": "remapIdentity", "prefix": "private-mirror:5000/vendor-mirror",
                                    "signedPrefix": "vendor.example.com"}}],
        },
        "dir": {"": [{"type": "insecureAcceptAnything"}]},
    },
}


def _parse(doc: object) -> object:
    return parse_policy(json.dumps(doc).encode(), "test.json")


def _lookup(doc: object, image: str) -> tuple[str, tuple[object, ...]]:
    policy = parse_policy(json.dumps(doc).encode())
    identity, namespaces = docker_scopes(DockerReference.parse(image))
    return policy.requirements_for("docker", identity, namespaces)


def test_locked_down_example() -> None:
    p = parse_policy(json.dumps(LOCKED_DOWN).encode())
    assert p.default == (Reject(),) and not p.default_is_insecure
    vendor = p.transports["docker"]["hostname:5000/vendor/product"]
    assert isinstance(vendor[0], SignedBy) and vendor[0].key_paths == ("/path/to/vendor-pubkey.gpg",)
    assert vendor[0].identity == SignedIdentity("exactRepository", repository="vendor-hostname/product/repository")
    assert vendor[1].identity == SignedIdentity()  # the default: matchRepoDigestOrExact
    sig = p.transports["docker"]["hostname:5000/myns/sigstore-signed-with-full-references"][0]
    assert isinstance(sig, SigstoreSigned) and sig.key_paths == ("/path/to/sigstore-pubkey.pub",)


@pytest.mark.parametrize(("image", "scope", "kind"), [
    ("docker.io/openshift/origin:v1", 'docker scope "docker.io/openshift"', AcceptAnything),
    ("openshift/hello-openshift", 'docker scope "docker.io/openshift"', AcceptAnything),
    ("a.b.temporary-project.example.com/x/y:1", 'docker scope "*.temporary-project.example.com"', AcceptAnything),
    ("hostname:5000/myns/official:latest", 'docker scope "hostname:5000/myns/official"', SignedBy),
    ("hostname:5000/myns/officialx:latest", "default", Reject),  # a prefix of a name is not a namespace
    ("busybox", "default", Reject),
])
def test_scope_lookup(image: str, scope: str, kind: type) -> None:
    got_scope, reqs = _lookup(LOCKED_DOWN, image)
    assert got_scope == scope and isinstance(reqs[0], kind)


def test_most_specific_scope_wins_and_transport_default() -> None:
    doc = {"default": [{"type": "reject"}], "transports": {"docker": {
        "": [{"type": "insecureAcceptAnything"}],
        "reg.example/ns": [{"type": "reject"}],
        "reg.example/ns/app:v1": [{"type": "insecureAcceptAnything"}],
        "reg.example/ns/app@" + D1: [{"type": "insecureAcceptAnything"}, {"type": "reject"}],
    }}}
    assert _lookup(doc, "reg.example/ns/app:v1")[0] == 'docker scope "reg.example/ns/app:v1"'
    assert _lookup(doc, "reg.example/ns/app:v2")[0] == 'docker scope "reg.example/ns"'
    assert len(_lookup(doc, "reg.example/ns/app@" + D1)[1]) == 2
    assert _lookup(doc, "other.example/x")[0] == 'docker scope ""'
    assert _lookup({"default": [{"type": "reject"}]}, "other.example/x")[0] == "default"


def test_docker_scopes_order() -> None:
    identity, ns = docker_scopes(DockerReference.parse("sub.example.com:5000/a/b/c:tag"))
    assert identity == "sub.example.com:5000/a/b/c:tag"
    assert ns == ["sub.example.com:5000/a/b/c", "sub.example.com:5000/a/b", "sub.example.com:5000/a",
                  "sub.example.com:5000", "*.example.com", "*.com"]
    assert docker_scopes(DockerReference.parse("busybox@" + D1))[0] == "docker.io/library/busybox@" + D1


def test_oci_scopes() -> None:
    assert oci_scopes("/var/lib/images/os") == ("/var/lib/images/os", ["/var/lib/images/os", "/var/lib/images",
                                                                       "/var/lib", "/var"])


def test_default_is_insecure_as_ostree_ext() -> None:
    assert _parse({"default": [{"type": "insecureAcceptAnything"}]}).default_is_insecure  # type: ignore[attr-defined]
    both = {"default": [{"type": "insecureAcceptAnything"}, {"type": "insecureAcceptAnything"}]}
    assert not _parse(both).default_is_insecure  # type: ignore[attr-defined]


def test_key_data_and_paths() -> None:
    data = base64.b64encode(b"keyring bytes").decode()
    p = parse_policy(json.dumps({"default": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyData": data},
        {"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a", "/b"]},
        {"type": "sigstoreSigned", "keyDatas": [data, data], "signedIdentity": {"type": "matchRepository"}},
    ]}).encode())
    a, b, c = p.default
    assert isinstance(a, SignedBy) and a.key_data == b"keyring bytes" and a.key_paths == ()
    assert isinstance(b, SignedBy) and b.key_paths == ("/a", "/b")
    assert isinstance(c, SigstoreSigned) and c.key_datas == (b"keyring bytes",) * 2
    assert c.identity.kind == "matchRepository"


@pytest.mark.parametrize(("text", "match"), [
    ("{}", "default policy is missing"),
    ('{"default": []}', "must not be empty"),
    ('{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}', "duplicate member"),
    ('{"default": [{"type": "reject"}], "extra": 1}', "unknown member 'extra'"),
    ('{"default": [{"type": "reject", "x": 1}]}', "unknown member 'x'"),
    ('{"default": [{"type": "nope"}]}', "unknown policy requirement type"),
    ('{"default": [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}}]}', "not supported"),
    ('{"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/k"}]}', "keyType"),
    ('{"default": [{"type": "signedBy", "keyPath": "/k"}]}', "keyType"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}', "exactly one of"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "keyData": "eA=="}]}', "exactly one of"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "k"}]}', "must be absolute"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "!!"}]}', "base64"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}]}', "non-empty list"),
    ('{"default": [{"type": "sigstoreSigned", "fulcio": {}}]}', "not supported by bootree"),
    ('{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "rekorPublicKeyPath": "/r"}]}', "not supported"),
    ('{"default": [{"type": "sigstoreSigned"}]}', "exactly one of"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "signedIdentity": {"type": "x"}}]}',
     "unknown signedIdentity"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "signedIdentity": '
     '{"type": "exactReference", "dockerReference": "reg.example/x"}}]}', "neither a tag nor a digest"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "signedIdentity": '
     '{"type": "matchExact", "dockerReference": "reg.example/x:1"}}]}', "has no member"),
    ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "signedIdentity": '
     '{"type": "remapIdentity", "prefix": "reg.example/x:tag", "signedPrefix": "a.example"}}]}', "prefix"),
    ('{"default": [{"type": "reject"}], "transports": {"oci": {"relative/dir": [{"type": "reject"}]}}}', "absolute"),
    ('{"default": [{"type": "reject"}], "transports": {"oci": {"/a/../b": [{"type": "reject"}]}}}', "clean path"),
    ('{"default": [{"type": "reject"}], "transports": {"docker": []}}', "must be a JSON object"),
    ("not json", "invalid containers policy"),
])
def test_strict_parsing(text: str, match: str) -> None:
    with pytest.raises(ContainerPolicyError, match=match) as exc:
        parse_policy(text.encode(), "p.json")
    assert exc.value.reason == "config" and str(exc.value).startswith("p.json: invalid containers policy")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
                         ["default", "transports", "type", "keyType", "keyPath", "docker", "", "signedIdentity"]),
                         inner, max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_any_json_parses_or_fails_typed(doc: object) -> None:
    try:
        parse_policy(json.dumps(doc).encode())
    except ContainerPolicyError as e:
        assert e.reason == "config"


_components = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(_components, min_size=1, max_size=4), st.integers(0, 4), _components)
def test_lookup_picks_the_longest_namespace(parts: list[str], depth: int, tag: str) -> None:
    """Scopes at every depth above the image: the deepest one that exists is used."""
    host = "reg.example:5000"
    name = "/".join([host, *parts])
    levels = [host] + [host + "/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    present = levels[: min(depth, len(levels))]
    scopes = {s: [{"type": "reject"}] * (i + 1) for i, s in enumerate(present)}
    doc = {"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": scopes}}
    scope, reqs = _lookup(doc, f"{name}:{tag}")
    if present:
        assert scope == f'docker scope "{present[-1]}"' and len(reqs) == len(present)
    else:
        assert scope == "default"


# --- identities ------------------------------------------------------------------------------

IMG_TAG = DockerReference.parse("reg.example/ns/app:v1")
IMG_DIGEST = DockerReference.parse("reg.example/ns/app@" + D1)


@pytest.mark.parametrize(("rule", "image", "signed", "ok"), [
    (SignedIdentity("matchExact"), IMG_TAG, "reg.example/ns/app:v1", True),
    (SignedIdentity("matchExact"), IMG_TAG, "reg.example/ns/app:v2", False),
    (SignedIdentity("matchExact"), IMG_TAG, "reg.example/ns/app", False),
    (SignedIdentity("matchExact"), IMG_DIGEST, "reg.example/ns/app:v1", False),
    (SignedIdentity(), IMG_TAG, "reg.example/ns/app:v1", True),
    (SignedIdentity(), IMG_TAG, "reg.example/ns/app:latest", False),
    (SignedIdentity(), IMG_DIGEST, "reg.example/ns/app:any-tag", True),
    (SignedIdentity(), IMG_DIGEST, "reg.example/ns/other:v1", False),
    (SignedIdentity(), IMG_DIGEST, "reg.example/ns/app", False),  # name-only signatures never match
    (SignedIdentity("matchRepository"), IMG_TAG, "reg.example/ns/app:v9", True),
    (SignedIdentity("matchRepository"), IMG_TAG, "reg.example/ns/app", True),
    (SignedIdentity("matchRepository"), IMG_TAG, "reg.example/ns/app2:v1", False),
    (SignedIdentity("exactReference", reference="vendor.example/p:1"), IMG_TAG, "vendor.example/p:1", True),
    (SignedIdentity("exactReference", reference="vendor.example/p:1"), IMG_TAG, "vendor.example/p:2", False),
    (SignedIdentity("exactReference", reference="vendor.example/p:1"), None, "vendor.example/p:1", True),
    (SignedIdentity("exactRepository", repository="vendor.example/p"), IMG_TAG, "vendor.example/p:7", True),
    (SignedIdentity("exactRepository", repository="vendor.example/p"), IMG_TAG, "vendor.example/q:7", False),
    (SignedIdentity("matchRepository"), None, "reg.example/ns/app:v1", False),  # oci: no docker identity
    (SignedIdentity("remapIdentity", prefix="reg.example/ns", signed_prefix="vendor.example"), IMG_TAG,
     "vendor.example/app:v1", True),
    (SignedIdentity("remapIdentity", prefix="reg.example/ns", signed_prefix="vendor.example"), IMG_TAG,
     "reg.example/ns/app:v1", False),
    (SignedIdentity("remapIdentity", prefix="reg.example/n", signed_prefix="vendor.example"), IMG_TAG,
     "reg.example/ns/app:v1", True),  # "reg.example/n" is not a namespace of reg.example/ns: no remap
    (SignedIdentity("remapIdentity", prefix="reg.example/ns", signed_prefix="vendor.example"), IMG_DIGEST,
     "vendor.example/app:whatever", True),
    (SignedIdentity(), DockerReference.parse("busybox:1"), "docker.io/library/busybox:1", True),
    (SignedIdentity(), DockerReference.parse("busybox:1"), "busybox:1", True),
    (SignedIdentity(), IMG_TAG, "Not A Reference", False),
])
def test_identity_matching(rule: SignedIdentity, image: DockerReference | None, signed: str, ok: bool) -> None:
    assert identity_matches(rule, image, signed) is ok


def test_parse_named_normalizes() -> None:
    n = parse_named("busybox")
    assert n is not None and n.name == "docker.io/library/busybox" and n.name_only
    n = parse_named("docker.io/busybox:1")
    assert n is not None and str(n) == "docker.io/library/busybox:1"
    assert parse_named("UPPER/case") is None

"""The policy check end to end without a registry: a stub source, a file:// lookaside, real gpg.

Signatures are made as skopeo's ``--sign-by`` makes them: ``gpg --sign`` (an OpenPGP signed
message, not a detached signature) over a simple-signing payload.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.conftest import GpgKey

from bootree.errors import ContainerPolicyError
from bootree.format.oci import Descriptor, digest_of
from bootree.oci.reference import ImageReference
from bootree.oci.registry import BlobStats, Fetched
from bootree.oci.sigpayload import make_payload
from bootree.oci.sigverify import PinnedSource, PolicyOptions, find_policy, verify_image
from bootree.sign.gpg import GpgVerifier

IMAGE = "reg.example/team/os:v1"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "0" * 64, "size": 2}, "layers": []}).encode()


class StubSource:
    """Serves one manifest; counts what is asked."""

    def __init__(self, data: bytes = MANIFEST) -> None:
        self.data = data
        self.stats = BlobStats()
        self.requests = 0

    def manifest(self, reference: str | None) -> Fetched:
        self.requests += 1
        return Fetched(self.data, "application/vnd.oci.image.manifest.v1+json", digest_of(self.data))

    def blob_bytes(self, desc: Descriptor) -> bytes:
        raise AssertionError("no blob is read while verifying")

    def fetch_blob(self, desc: Descriptor, dest: Path, on_bytes: object = None) -> None:
        raise AssertionError("no blob is read while verifying")

    def local_blob(self, desc: Descriptor) -> Path | None:
        raise AssertionError("no blob is read while verifying")

    def close(self) -> None:
        pass


def gpg_sign_message(key: GpgKey, payload: bytes) -> bytes:
    """A binary OpenPGP signed message (what skopeo --sign-by writes through GPGME)."""
    return subprocess.run(["gpg", "--homedir", str(key.home), "--batch", "--no-tty", "--local-user", key.fingerprint,
                           "--sign"], input=payload, check=True, capture_output=True).stdout


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lookaside = tmp / "lookaside"
        self.regd = tmp / "registries.d"
        self.regd.mkdir()
        (self.regd / "l.yaml").write_text(f"docker:\n  reg.example:\n    lookaside: file://{self.lookaside}\n")
        self.policy = tmp / "policy.json"

    def write_policy(self, reqs: list[dict[str, object]], default: str = "reject") -> PolicyOptions:
        self.policy.write_text(json.dumps({"default": [{"type": default}],
                                           "transports": {"docker": {"reg.example/team": reqs}}}))
        return PolicyOptions(policy=self.policy, registries_d=self.regd)

    def add_signature(self, blob: bytes, digest: str = digest_of(MANIFEST), repo: str = "team/os") -> None:
        d = self.lookaside / f"{repo}@{digest.replace(':', '=')}"
        d.mkdir(parents=True, exist_ok=True)
        n = len(list(d.iterdir())) + 1
        (d / f"signature-{n}").write_bytes(blob)


def _signed_by(key: GpgKey, identity: dict[str, object] | None = None) -> dict[str, object]:
    req: dict[str, object] = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key.public_keyring)}
    if identity:
        req["signedIdentity"] = identity
    return req


def _verify(opts: PolicyOptions, image: str = IMAGE, source: StubSource | None = None) -> str:
    return verify_image(ImageReference.parse(image), source or StubSource(), opts).line


def test_signed_by_accepts_a_good_signature(tmp_path: Path, gpg_key: GpgKey) -> None:
    s = Setup(tmp_path)
    opts = s.write_policy([_signed_by(gpg_key)])
    s.add_signature(gpg_sign_message(gpg_key, make_payload(digest_of(MANIFEST), "reg.example/team/os:v1")))
    line = _verify(opts)
    assert f"signedBy GPG key {gpg_key.fingerprint} for reg.example/team/os:v1" in line
    assert 'docker scope "reg.example/team"' in line


def test_refusals(tmp_path: Path, gpg_key: GpgKey, other_gpg_key: GpgKey) -> None:
    s = Setup(tmp_path)
    opts = s.write_policy([_signed_by(gpg_key)])
    with pytest.raises(ContainerPolicyError, match="a signature was required, but no signature exists") as exc:
        _verify(opts)
    assert exc.value.reason == "unsigned"
    # Signed by a key the policy does not trust.
    s.add_signature(gpg_sign_message(other_gpg_key, make_payload(digest_of(MANIFEST), IMAGE)))
    with pytest.raises(ContainerPolicyError, match="untrusted") as exc:
        _verify(opts)
    assert exc.value.reason == "untrusted"


def test_replayed_signature_of_another_digest(tmp_path: Path, gpg_key: GpgKey) -> None:
    s = Setup(tmp_path)
    opts = s.write_policy([_signed_by(gpg_key)])
    # A genuine signature for another manifest, copied under this manifest's digest.
    s.add_signature(gpg_sign_message(gpg_key, make_payload("sha256:" + "9" * 64, IMAGE)))
    with pytest.raises(ContainerPolicyError, match=r"signature for digest sha256:9{64} does not match") as exc:
        _verify(opts)
    assert exc.value.reason == "invalid"


def test_identity_rules(tmp_path: Path, gpg_key: GpgKey) -> None:
    s = Setup(tmp_path)
    s.add_signature(gpg_sign_message(gpg_key, make_payload(digest_of(MANIFEST), "reg.example/team/os:v2")))
    with pytest.raises(ContainerPolicyError, match=r"identity 'reg\.example/team/os:v2' is not accepted"):
        _verify(s.write_policy([_signed_by(gpg_key)]))
    assert "signedBy" in _verify(s.write_policy([_signed_by(gpg_key, {"type": "matchRepository"})]))
    # By digest, matchRepoDigestOrExact accepts any tag of the repository.
    assert "signedBy" in _verify(s.write_policy([_signed_by(gpg_key)]), f"reg.example/team/os@{digest_of(MANIFEST)}")


def test_tampered_and_foreign_blobs(tmp_path: Path, gpg_key: GpgKey) -> None:
    s = Setup(tmp_path)
    opts = s.write_policy([_signed_by(gpg_key)])
    good = gpg_sign_message(gpg_key, make_payload(digest_of(MANIFEST), IMAGE))
    s.add_signature(good[:-8] + bytes(8))
    s.add_signature(subprocess.run(["gpg", "--homedir", str(gpg_key.home), "--batch", "--clearsign"],
                                   input=make_payload(digest_of(MANIFEST), IMAGE), check=True,
                                   capture_output=True).stdout)
    s.add_signature(b"\x00garbage")
    with pytest.raises(ContainerPolicyError, match="none of the 3 signatures were accepted") as exc:
        _verify(opts)
    assert exc.value.reason == "invalid"
    s.add_signature(good)  # signature-4: one good signature is enough
    assert "signedBy" in _verify(opts)


def test_reject_insecure_and_key_data(tmp_path: Path, gpg_key: GpgKey) -> None:
    import base64

    s = Setup(tmp_path)
    src = StubSource()
    with pytest.raises(ContainerPolicyError, match=r"rejected by policy \(reject\)") as exc:
        _verify(s.write_policy([{"type": "reject"}]), source=src)
    assert exc.value.reason == "rejected" and src.requests == 0, "reject needs no network"
    assert _verify(s.write_policy([{"type": "insecureAcceptAnything"}])).endswith(": insecureAcceptAnything")
    with pytest.raises(ContainerPolicyError, match="default of `insecureAcceptAnything`; refusing usage"):
        _verify(s.write_policy([{"type": "insecureAcceptAnything"}], default="insecureAcceptAnything"))
    # All requirements must hold: insecureAcceptAnything does not excuse a missing signature.
    with pytest.raises(ContainerPolicyError, match="no signature exists"):
        _verify(s.write_policy([{"type": "insecureAcceptAnything"}, _signed_by(gpg_key)]))
    s.add_signature(gpg_sign_message(gpg_key, make_payload(digest_of(MANIFEST), IMAGE)))
    data = base64.b64encode(gpg_key.public_keyring.read_bytes()).decode()
    assert "signedBy" in _verify(s.write_policy([{"type": "signedBy", "keyType": "GPGKeys", "keyData": data}]))
    with pytest.raises(ContainerPolicyError, match="does not exist") as exc:
        _verify(s.write_policy([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(tmp_path / "nokey")}]))
    assert exc.value.reason == "config"


def test_oci_layout_has_no_signatures(tmp_path: Path, gpg_key: GpgKey) -> None:
    lay = tmp_path / "layout"
    lay.mkdir()
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"default": [{"type": "reject"}], "transports": {"oci": {
        str(tmp_path): [_signed_by(gpg_key)], str(lay / "other"): [{"type": "insecureAcceptAnything"}]}}}))
    with pytest.raises(ContainerPolicyError, match="no signature exists") as exc:
        verify_image(ImageReference.parse(f"oci:{lay}:v1"), StubSource(), PolicyOptions(policy=policy))
    assert f'oci scope "{tmp_path}"' in str(exc.value)


def test_policy_file_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("CONTAINERS_POLICY_JSON", raising=False)
    user = tmp_path / "home/.config/containers/policy.json"
    user.parent.mkdir(parents=True)
    user.write_text("{}")
    assert find_policy() == user
    xdg = tmp_path / "xdg/containers/policy.json"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("{}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_policy() == xdg  # $XDG_CONFIG_HOME replaces ~/.config
    monkeypatch.setenv("CONTAINERS_POLICY_JSON", str(tmp_path / "env.json"))
    assert find_policy() == tmp_path / "env.json"
    assert find_policy(tmp_path / "explicit.json") == tmp_path / "explicit.json"
    with pytest.raises(ContainerPolicyError, match="cannot read the containers policy"):
        verify_image(ImageReference.parse(IMAGE), StubSource(), PolicyOptions())


def test_pinned_source_serves_the_verified_manifest() -> None:
    inner = StubSource()
    top = Fetched(b"verified", None, digest_of(b"verified"))
    pinned = PinnedSource(inner, top)
    assert pinned.manifest(None) is top and pinned.manifest(top.digest) is top and inner.requests == 0
    assert pinned.manifest("sha256:" + "1" * 64).data == MANIFEST  # children of an index: by digest


def test_gpg_verify_message_extracts_only_signed_data(gpg_key: GpgKey, other_gpg_key: GpgKey) -> None:
    payload = b'{"x": 1}'
    blob = gpg_sign_message(gpg_key, payload)
    with GpgVerifier(keyrings=[gpg_key.public_keyring]) as v:
        check, data = v.verify_message(blob)
        assert check.valid and check.key == gpg_key.fingerprint and data == payload
        check, data = v.verify_message(gpg_sign_message(other_gpg_key, payload))
        assert check.status == "untrusted" and data is None
        detached = subprocess.run(["gpg", "--homedir", str(gpg_key.home), "--batch", "--detach-sign"], input=payload,
                                  check=True, capture_output=True).stdout
        check, data = v.verify_message(detached)
        assert not check.valid and data is None
        check, data = v.verify_message(gpg_sign_message(gpg_key, b"y" * 5000), max_payload=1000)
        assert not check.valid and data is None
    assert not os.path.exists("1.out")

"""Container image signatures for the bootc workflow (issue 13, "what it must show" item 3).

A real docker-registry on 127.0.0.1 (images built by umoci, see test_bootc_registry.py); GPG
"simple signing" signatures made by ``skopeo copy --sign-by`` into a lookaside staging directory
and served to bootree over HTTP by a small server on 127.0.0.1; cosign ("sigstore") signatures
made here with ``cryptography`` and pushed as the ``sha256-<hex>.sig`` tag, because this
machine's skopeo 1.9.3 is built without sigstore support (no ``--sign-by-sigstore-private-key``).

Every refusal ends with one ``error:`` line and leaves deployments and refs as they were.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.conftest import GpgKey
from tests.integration.test_bootc_registry import (
    Registry,
    _one_error_nothing_staged,
    bootree,
    build_images,
    new_sysroot,
)

from bootree.format.oci import digest_of
from bootree.oci.sigpayload import COSIGN_TYPE, make_payload
from bootree.sysroot import Sysroot

TOOLS = ("docker-registry", "skopeo", "umoci", "gpg")
pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason="needs docker-registry, skopeo, umoci, gpg"),
    pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack and bare-user deployments need root here"),
    pytest.mark.slow,
]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Env:
    reg: Registry
    images: Path
    work: Path
    lookaside: Path
    lookaside_url: str
    regd: Path
    skopeo_policy: Path

    def policy(self, scopes: dict[str, list[dict[str, object]]], default: str = "reject") -> Path:
        """A policy.json (a new file per call) with docker scopes under this registry."""
        path = self.work / f"policy-{len(list(self.work.glob('policy-*')))}.json"
        path.write_text(json.dumps({"default": [{"type": default}], "transports": {
            "docker": {f"{self.reg.host}/{k}": v for k, v in scopes.items()}}}))
        return path

    def signed_push(self, tag: str, repo: str, key: GpgKey | None) -> str:
        """``skopeo copy [--sign-by]`` to the registry; the signature lands in the lookaside staging dir."""
        argv = ["skopeo", "--policy", str(self.skopeo_policy), "--registries.d", str(self.regd), "copy", "--quiet",
                "--dest-tls-verify=false"]
        env = dict(os.environ)
        if key is not None:
            argv += ["--sign-by", key.fingerprint]
            env["GNUPGHOME"] = str(key.home)
        subprocess.run([*argv, f"oci:{self.images}:{tag}", f"docker://{self.reg.host}/{repo}"], check=True, env=env,
                       capture_output=True)
        return push_digest(self.reg, repo)

    def args(self, policy: Path) -> list[str]:
        return [f"--policy={policy}", f"--registries.d={self.regd}"]


def push_digest(reg: Registry, repo: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{reg.host}/{repo}"], check=True,
                         capture_output=True, text=True)
    return str(json.loads(out.stdout)["Digest"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("bootc-sigpolicy")
    images = build_images(work)
    reg = Registry(work)
    lookaside = work / "lookaside"
    lookaside.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(lookaside)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    regd = work / "registries.d"
    regd.mkdir()
    # skopeo writes to lookaside-staging (file://); bootree reads lookaside (http://), as a fleet would.
    (regd / "test.yaml").write_text(f"docker:\n  {reg.host}:\n    lookaside: {url}\n"
                                    f"    lookaside-staging: file://{lookaside}\n"
                                    f"  {reg.host}/demo/cosign:\n    use-sigstore-attachments: true\n")
    skopeo_policy = work / "skopeo-policy.json"
    skopeo_policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    conf = work / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    old = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    try:
        yield Env(reg, images, work, lookaside, url, regd, skopeo_policy)
    finally:
        server.shutdown()
        server.server_close()
        reg.stop()
        if old is None:
            os.environ.pop("CONTAINERS_REGISTRIES_CONF", None)
        else:
            os.environ["CONTAINERS_REGISTRIES_CONF"] = old


@pytest.fixture(autouse=True)
def _mutable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


def _signed_by(key: GpgKey, **identity: str) -> dict[str, object]:
    req: dict[str, object] = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key.public_keyring)}
    if identity:
        req["signedIdentity"] = identity
    return req


def _refused(capsys: pytest.CaptureFixture[str], sysroot: Path, argv: list[str], match: str) -> None:
    _one_error_nothing_staged(capsys, sysroot, argv, match)
    assert not (sysroot / "ostree/deploy/demo").exists() or Sysroot.open(sysroot).deployments, \
        "a refused first switch must not create its stateroot"


def test_gpg_signed_switch_and_upgrade(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       gpg_key: GpgKey, other_gpg_key: GpgKey) -> None:
    repo = "demo/signed:latest"
    d1 = env.signed_push("v1", repo, gpg_key)
    assert (env.lookaside / f"demo/signed@{d1.replace(':', '=')}/signature-1").is_file()
    policy = env.policy({"demo": [_signed_by(gpg_key)]})
    sysroot = new_sysroot(tmp_path)
    image = f"{env.reg.host}/{repo}"
    rc, out, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo",
                           "--enforce-container-sigpolicy", *env.args(policy), image)
    assert rc == 0, err
    assert f"Image {d1} accepted by {policy}" in out and f"signedBy GPG key {gpg_key.fingerprint}" in out
    assert f"Digest: {d1}" in out
    origin = Sysroot.open(sysroot).deployments[0].origin
    assert origin is not None and origin.container_image_reference == f"ostree-image-signed:docker://{image}"
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0

    # The tag moves to an unsigned v2: upgrade re-verifies the origin and refuses it.
    env.signed_push("v2", repo, None)
    _refused(capsys, sysroot, ["upgrade", f"--sysroot={sysroot}", *env.args(policy)],
             r"no signature exists")
    _refused(capsys, sysroot, ["upgrade", f"--sysroot={sysroot}", "--check", *env.args(policy)],
             r"no signature exists")
    # Signed by a key the policy does not name: refused as untrusted.
    env.signed_push("v2", repo, other_gpg_key)
    _refused(capsys, sysroot, ["upgrade", f"--sysroot={sysroot}", *env.args(policy)], r"GPG signature: untrusted")
    # Signed by the trusted key: staged.
    d2 = env.signed_push("v2", repo, gpg_key)
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}", *env.args(policy))
    assert rc == 0, err
    assert f"Image {d2} accepted" in out and "Version: 2.0" in out
    staged = Sysroot.open(sysroot).staged
    assert staged is not None and staged.origin is not None
    assert staged.origin.container_image_reference == f"ostree-image-signed:docker://{image}"


def test_unsigned_untrusted_reject_insecure(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            gpg_key: GpgKey, other_gpg_key: GpgKey) -> None:
    env.signed_push("v1", "demo/plain:latest", None)
    env.signed_push("v1", "demo/mallory:latest", other_gpg_key)
    env.signed_push("v1", "open/os:latest", None)
    policy = env.policy({"demo": [_signed_by(gpg_key)], "demo/closed": [{"type": "reject"}],
                         "open": [{"type": "insecureAcceptAnything"}]})
    sysroot = new_sysroot(tmp_path)
    switch = ["switch", f"--sysroot={sysroot}", "--stateroot=demo", "--enforce-container-sigpolicy", *env.args(policy)]
    _refused(capsys, sysroot, [*switch, f"{env.reg.host}/demo/plain:latest"],
             r"signedBy: a signature was required, but no signature exists")
    _refused(capsys, sysroot, [*switch, f"{env.reg.host}/demo/mallory:latest"], r"GPG signature: untrusted")
    _refused(capsys, sysroot, [*switch, f"{env.reg.host}/demo/closed/os:latest"], r"rejected by policy \(reject\)")
    insecure_default = env.policy({"demo": [_signed_by(gpg_key)]}, default="insecureAcceptAnything")
    _refused(capsys, sysroot, [*switch[:-2], *env.args(insecure_default), f"{env.reg.host}/demo/plain:latest"],
             r"default of `insecureAcceptAnything`; refusing usage")
    # Without --enforce-container-sigpolicy nothing is checked (ostree-unverified-registry).
    rc, out, err = bootree(capsys, *switch[:3], f"{env.reg.host}/demo/plain:latest")
    assert rc == 0 and "accepted by" not in out, err
    # An explicitly open scope accepts the unsigned image under the signed origin.
    rc, out, err = bootree(capsys, *switch, f"{env.reg.host}/open/os:latest")
    assert rc == 0, err
    assert f'docker scope "{env.reg.host}/open"): insecureAcceptAnything' in out


def test_replayed_signature_for_another_digest(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               gpg_key: GpgKey) -> None:
    d1 = env.signed_push("v1", "demo/replay:v1", gpg_key)
    d2 = env.signed_push("v2", "demo/replay:latest", None)
    # The attacker serves v1's valid signature as if it were v2's.
    src = env.lookaside / f"demo/replay@{d1.replace(':', '=')}"
    shutil.copytree(src, env.lookaside / f"demo/replay@{d2.replace(':', '=')}")
    policy = env.policy({"demo": [_signed_by(gpg_key, type="matchRepository")]})
    sysroot = new_sysroot(tmp_path)
    _refused(capsys, sysroot, ["switch", f"--sysroot={sysroot}", "--stateroot=demo", "--enforce-container-sigpolicy",
                               *env.args(policy), f"{env.reg.host}/demo/replay:latest"],
             rf"signature for digest {d1} does not match the image")


def _push_blob(host: str, repo: str, data: bytes) -> dict[str, object]:
    digest = digest_of(data)
    r = httpx.post(f"http://{host}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    url = loc if loc.startswith("http") else f"http://{host}{loc}"
    r = httpx.put(url + ("&" if "?" in url else "?") + f"digest={digest}", content=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return {"digest": digest, "size": len(data)}


def push_cosign_signature(host: str, repo: str, digest: str, payload: bytes, signature: bytes) -> None:
    """What ``cosign sign --key`` stores: an OCI manifest tagged ``sha256-<hex>.sig``, one layer per signature."""
    config = _push_blob(host, repo, b'{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}')
    layer = _push_blob(host, repo, payload)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **layer,
                            "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()}}]}
    r = httpx.put(f"http://{host}/v2/{repo}/manifests/{digest.replace(':', '-')}.sig", content=json.dumps(manifest),
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text


def test_sigstore_signed(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    host = env.reg.host
    requirement = {"type": "sigstoreSigned", "keyPath": str(pub), "signedIdentity": {"type": "matchRepository"}}
    policy = env.policy({"demo/cosign": [requirement], "demo/cosign-off": [requirement]})

    def sign(k: ec.EllipticCurvePrivateKey, digest: str, repo: str) -> None:
        payload = make_payload(digest, f"{host}/{repo}", kind=COSIGN_TYPE)  # cosign names the repository only
        push_cosign_signature(host, repo, digest, payload, k.sign(payload, ec.ECDSA(hashes.SHA256())))

    sysroot = new_sysroot(tmp_path)
    switch = ["switch", f"--sysroot={sysroot}", "--stateroot=demo", "--enforce-container-sigpolicy", *env.args(policy)]
    d2 = env.signed_push("v2", "demo/cosign:v2", None)
    _refused(capsys, sysroot, [*switch, f"{host}/demo/cosign:v2"], r"sigstoreSigned: a signature was required")
    sign(other, d2, "demo/cosign")
    _refused(capsys, sysroot, [*switch, f"{host}/demo/cosign:v2"], r"sigstore signature: untrusted")
    d1 = env.signed_push("v1", "demo/cosign:v1", None)
    sign(key, d1, "demo/cosign")
    # A valid signature of v1 stored under v2's tag: the payload names v1's digest.
    payload = make_payload(d1, f"{host}/demo/cosign", kind=COSIGN_TYPE)
    push_cosign_signature(host, "demo/cosign", d2, payload, key.sign(payload, ec.ECDSA(hashes.SHA256())))
    _refused(capsys, sysroot, [*switch, f"{host}/demo/cosign:v2"], rf"signature for digest {d1} does not match")
    # Without use-sigstore-attachments in registries.d the signature is not even looked for.
    env.signed_push("v1", "demo/cosign-off:v1", None)
    sign(key, d1, "demo/cosign-off")
    _refused(capsys, sysroot, [*switch, f"{host}/demo/cosign-off:v1"], r"a signature was required")
    rc, out, err = bootree(capsys, *switch, f"{host}/demo/cosign:v1")
    assert rc == 0, err
    assert "sigstoreSigned key sha256:" in out and "(ECDSA-secp256r1)" in out and f"Digest: {d1}" in out

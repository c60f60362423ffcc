"""Referrers lookup and announcement against a scripted registry, with and without the 1.1 API.

The integration tests run distribution 2.8 (Debian's ``docker-registry``), which has no
referrers API, so only the tag schema is exercised there. A 1.1 registry (distribution 3,
zot, Harbor, quay) answers ``GET /v2/NAME/referrers/DIGEST`` itself; this scripted one (an
``httpx.MockTransport``) serves that API when asked to, keeps pushed manifests by tag, and
records what the client requested, so both paths and the fallback between them are checked.
"""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from bootree.errors import FormatError, RegistryError
from bootree.format.oci import OCI_INDEX, OCI_MANIFEST, Descriptor
from bootree.oci.push import RegistryPusher
from bootree.oci.referrers import Referrer, announce_referrer, list_referrers, referrers_tag
from bootree.oci.registry import RegistryOptions

FAST = RegistryOptions(tls_verify=False, retries=1, backoff=0.0)
SUBJECT = "sha256:" + "5" * 64
DELTA_TYPE = "application/vnd.bootree.delta.v1"


def _referrer(n: int, artifact_type: str | None = DELTA_TYPE) -> Referrer:
    digest = "sha256:" + hashlib.sha256(b"referrer %d" % n).hexdigest()
    return Referrer(Descriptor(OCI_MANIFEST, digest, 500 + n), artifact_type, {"n": str(n)})


def _index(entries: list[Referrer]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [e.to_json() for e in entries]}).encode()


class ScriptedRegistry:
    """One repository ``os``: manifests by tag, and (with ``api``) the referrers API over ``api_entries``."""

    def __init__(self, *, api: bool, api_entries: list[Referrer] | None = None, api_filters: bool = True,
                 api_body: bytes | None = None) -> None:
        self.api, self.api_entries, self.api_filters, self.api_body = api, api_entries or [], api_filters, api_body
        self.tags: dict[str, bytes] = {}
        self.requests: list[str] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(f"{req.method} {req.url.path}" + (f"?{req.url.query.decode()}" if req.url.query else ""))
        if m := re.fullmatch(r"/v2/os/referrers/(sha256:[0-9a-f]{64})", req.url.path):
            if not self.api:
                return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND"}]})
            if self.api_body is not None:
                return httpx.Response(200, content=self.api_body, headers={"Content-Type": OCI_INDEX})
            wanted = req.url.params.get("artifactType")
            entries = [e for e in self.api_entries if not (wanted and self.api_filters) or e.artifact_type == wanted]
            headers = {"Content-Type": OCI_INDEX}
            if wanted and self.api_filters:
                headers["OCI-Filters-Applied"] = "artifactType"
            assert m.group(1) == SUBJECT
            return httpx.Response(200, content=_index(entries), headers=headers)
        if m := re.fullmatch(r"/v2/os/manifests/([^/]+)", req.url.path):
            tag = m.group(1)
            if req.method == "PUT":
                self.tags[tag] = req.content
                digest = "sha256:" + hashlib.sha256(req.content).hexdigest()
                return httpx.Response(201, headers={"Docker-Content-Digest": digest})
            if tag not in self.tags:
                return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
            data = self.tags[tag]
            return httpx.Response(200, content=data, headers={
                "Content-Type": OCI_INDEX, "Docker-Content-Digest": "sha256:" + hashlib.sha256(data).hexdigest()})
        return httpx.Response(404)


def _pusher(reg: ScriptedRegistry) -> RegistryPusher:
    return RegistryPusher("reg.test", FAST, transport=httpx.MockTransport(reg))


def test_the_api_answers_and_the_tag_is_not_read() -> None:
    wanted, other = _referrer(1), _referrer(2, "application/vnd.example.sbom")
    reg = ScriptedRegistry(api=True, api_entries=[wanted, other])
    entries, source = list_referrers(_pusher(reg), "os", SUBJECT, DELTA_TYPE)
    assert (entries, source) == ([wanted], "api")
    assert reg.requests == [f"GET /v2/os/referrers/{SUBJECT}?artifactType={DELTA_TYPE.replace('/', '%2F')}"]


def test_a_registry_that_ignores_the_filter_is_filtered_by_the_client() -> None:
    wanted, other = _referrer(1), _referrer(2, "application/vnd.example.sbom")
    reg = ScriptedRegistry(api=True, api_entries=[other, wanted], api_filters=False)
    assert list_referrers(_pusher(reg), "os", SUBJECT, DELTA_TYPE) == ([wanted], "api")
    assert list_referrers(_pusher(reg), "os", SUBJECT) == ([other, wanted], "api")


def test_without_the_api_the_tag_schema_is_read() -> None:
    wanted = _referrer(1)
    reg = ScriptedRegistry(api=False)
    reg.tags[referrers_tag(SUBJECT)] = _index([wanted, _referrer(2, None)])
    assert list_referrers(_pusher(reg), "os", SUBJECT, DELTA_TYPE) == ([wanted], "tag")
    assert reg.requests[-1] == f"GET /v2/os/manifests/{referrers_tag(SUBJECT)}"


def test_without_the_api_or_the_tag_there_are_none() -> None:
    reg = ScriptedRegistry(api=False)
    assert list_referrers(_pusher(reg), "os", SUBJECT, DELTA_TYPE) == ([], "tag")


def test_a_tag_that_is_not_an_index_means_none() -> None:
    reg = ScriptedRegistry(api=False)
    reg.tags[referrers_tag(SUBJECT)] = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
    assert list_referrers(_pusher(reg), "os", SUBJECT) == ([], "tag")


@pytest.mark.parametrize("body", [b"not json", json.dumps({"schemaVersion": 2, "manifests": [{"digest": "x"}]}).encode()])
def test_a_malformed_api_answer_is_an_error_not_an_empty_list(body: bytes) -> None:
    reg = ScriptedRegistry(api=True, api_body=body)
    with pytest.raises(FormatError, match=f"referrers of {SUBJECT}"):
        list_referrers(_pusher(reg), "os", SUBJECT, DELTA_TYPE)


def test_an_api_server_error_is_a_registry_error() -> None:
    def broken(req: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"errors": [{"code": "UNKNOWN"}]})

    with pytest.raises(RegistryError):
        list_referrers(RegistryPusher("reg.test", FAST, transport=httpx.MockTransport(broken)), "os", SUBJECT)


def test_announce_on_an_api_registry_that_lists_the_referrer_writes_no_tag() -> None:
    ref = _referrer(1)
    reg = ScriptedRegistry(api=True, api_entries=[ref])  # a 1.1 registry indexes the pushed subject itself
    assert announce_referrer(_pusher(reg), "os", SUBJECT, ref) == "api"
    assert reg.tags == {} and not any(r.startswith("PUT") for r in reg.requests)


def test_announce_without_the_api_keeps_the_tag_index_and_adds_once() -> None:
    first, second = _referrer(1), _referrer(2)
    reg = ScriptedRegistry(api=False)
    pusher = _pusher(reg)
    assert announce_referrer(pusher, "os", SUBJECT, first) == "tag"
    assert announce_referrer(pusher, "os", SUBJECT, second) == "tag"
    assert announce_referrer(pusher, "os", SUBJECT, first) == "present"
    assert list_referrers(pusher, "os", SUBJECT, DELTA_TYPE) == ([first, second], "tag")


def test_announce_on_an_api_registry_that_has_not_indexed_it_falls_back_to_the_tag() -> None:
    ref = _referrer(1)
    reg = ScriptedRegistry(api=True, api_entries=[])  # e.g. a registry that indexes asynchronously
    assert announce_referrer(_pusher(reg), "os", SUBJECT, ref) == "tag"
    assert json.loads(reg.tags[referrers_tag(SUBJECT)])["manifests"][0]["digest"] == ref.descriptor.digest

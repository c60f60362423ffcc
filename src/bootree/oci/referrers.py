"""OCI 1.1 referrers: the manifests that name another one as their ``subject``.

Layer: oci. Distribution spec 1.1 lists them with ``GET /v2/NAME/referrers/DIGEST`` (an image
index of descriptors carrying each referrer's ``artifactType`` and annotations). A registry
without that API (distribution 2.8, Debian's ``docker-registry``) answers 404; the spec's
fallback is then the *referrers tag schema*: an index pushed to the tag ``ALG-HEX`` derived
from the subject's digest, which the client that pushes a referrer keeps up to date (fetch the
index, add the descriptor if missing, push it back). Both directions live here:
:func:`list_referrers` (API first, then the tag) and :func:`announce_referrer` (after a push:
the API, if it lists the referrer, else the tag).

The tag index is maintained by clients, so concurrent pushes of two referrers of one subject
can lose one of them (the spec leaves that race to clients; bootree re-reads the index just
before writing it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bootree.errors import FormatError, RegistryError
from bootree.format.oci import OCI_INDEX, Descriptor
from bootree.oci.registry import RegistryClient

if TYPE_CHECKING:  # the pull side reads referrers without importing the publishing modules
    from bootree.oci.push import RegistryPusher

__all__ = ["Referrer", "announce_referrer", "list_referrers", "parse_referrers", "referrers_tag"]

_TAG_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")


@dataclass(frozen=True, slots=True)
class Referrer:
    """One entry of a referrers list: a manifest's descriptor and what it says it is."""

    descriptor: Descriptor
    artifact_type: str | None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The index entry (``mediaType``, ``digest``, ``size``, ``artifactType``, ``annotations``)."""
        out: dict[str, Any] = {"mediaType": self.descriptor.media_type, "digest": self.descriptor.digest,
                               "size": self.descriptor.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def referrers_tag(digest: str) -> str:
    """The referrers tag of ``digest``: algorithm (32 chars at most), ``-``, encoded (64 at most).

    Characters a tag may not hold become ``-`` (distribution spec 1.1, "Referrers Tag Schema").
    """
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise FormatError(f"not a digest: {digest!r}")
    return f"{_TAG_CHARS.sub('-', algorithm[:32])}-{_TAG_CHARS.sub('-', encoded[:64])}"


def parse_referrers(data: bytes, what: str = "referrers index") -> list[Referrer]:
    """The entries of a referrers index (API response or tag), strictly parsed.

    Raises:
        FormatError: not an image index, or a malformed entry.
    """
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise FormatError(f"{what}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
        raise FormatError(f"{what}: not an image index")
    if doc.get("mediaType", OCI_INDEX) != OCI_INDEX:
        raise FormatError(f"{what}: media type {doc.get('mediaType')!r} is not an OCI index")
    out: list[Referrer] = []
    for i, entry in enumerate(doc["manifests"]):
        desc = Descriptor.from_json(entry, f"{what} entry {i}")
        art = entry.get("artifactType")
        if art is not None and not isinstance(art, str):
            raise FormatError(f"{what} entry {i}: 'artifactType' must be a string")
        out.append(Referrer(desc, art, dict(desc.annotations)))
    return out


def _index(entries: list[Referrer]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e.to_json() for e in entries]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _from_tag(client: RegistryClient, repository: str, subject: str) -> list[Referrer]:
    try:
        fetched = client.get_manifest(repository, referrers_tag(subject))
    except RegistryError as e:
        if e.status == 404:
            return []  # no tag: no referrers (the spec's rule)
        raise
    try:
        return parse_referrers(fetched.data, f"referrers tag {referrers_tag(subject)}")
    except FormatError:
        return []  # "does not return a valid image index": assume none


def list_referrers(client: RegistryClient, repository: str, subject: str,
                   artifact_type: str | None = None) -> tuple[list[Referrer], str]:
    """The referrers of manifest ``subject``, and where they came from (``api`` or ``tag``).

    With ``artifact_type`` only those entries are returned (whether or not the registry
    applied the filter itself).

    Raises:
        RegistryError: the registry failed (not a missing API or tag: those give fallbacks).
        FormatError: the referrers API answered with a malformed index.
    """
    fetched = client.get_referrers(repository, subject, artifact_type)
    if fetched is not None:
        entries, source = parse_referrers(fetched.data, f"referrers of {subject}"), "api"
    else:
        entries, source = _from_tag(client, repository, subject), "tag"
    if artifact_type is not None:
        entries = [e for e in entries if e.artifact_type == artifact_type]
    return entries, source


def announce_referrer(pusher: RegistryPusher, repository: str, subject: str, referrer: Referrer) -> str:
    """Make a pushed referrer findable: ``api`` if the registry lists it, else the tag is updated.

    Returns ``api``, ``tag`` (the tag's index now holds the referrer) or ``present`` (it
    already did).

    Raises:
        PushError, RegistryError: the tag index could not be read or written.
    """
    api = pusher.get_referrers(repository, subject)
    if api is not None:
        with_ref = [e for e in parse_referrers(api.data) if e.descriptor.digest == referrer.descriptor.digest]
        if with_ref:
            return "api"
    tag = referrers_tag(subject)
    entries = _from_tag(pusher, repository, subject)
    if any(e.descriptor.digest == referrer.descriptor.digest for e in entries):
        return "present"
    data = _index([*entries, referrer])
    pusher.put_manifest(repository, tag, data, OCI_INDEX)
    return "tag"

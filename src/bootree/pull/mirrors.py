"""Remote URLs that name other URLs: ``metalink=URL`` and ``mirrorlist=URL``, as ostree has them.

Layer: pull. A remote's ``url`` may be ``metalink=URL``: an XML metalink document
(metalinker.org 3.0) whose ``<file name="summary">`` gives the summary's size, its hashes and
the URLs it can be fetched from; the first URL whose body has that size and hash is the summary,
and the directory holding it is the repository's URL. ``url`` or ``contenturl`` may be
``mirrorlist=URL``: a text file of base URLs, every request then tries them in order
(:class:`~bootree.transport.mirrors.MirrorFetcher`).

Why the metalink's hash is checked: it is what makes the summary trustworthy when the metalink
comes from a trusted server and the mirrors do not. Of the hashes listed, the strongest known
one is used (``sha512``, else ``sha256``); a document with neither is refused, not trusted
without one. Error texts are ostree's (scripts match them), in bootree's one-line form.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bootree.errors import FetchError, RemoteError
from bootree.transport import Fetcher
from bootree.transport.mirrors import parse_mirrorlist

if TYPE_CHECKING:  # loaded by parse_metalink: most pulls have no metalink
    import xml.etree.ElementTree as ET

__all__ = ["METALINK", "MIRRORLIST", "MetalinkFile", "parse_metalink", "resolve_metalink", "resolve_mirrorlist"]

METALINK = "metalink="
MIRRORLIST = "mirrorlist="

#: Hash types known here, strongest first, with their hex digest lengths.
_KNOWN_HASHES = (("sha512", 128), ("sha256", 64))
#: A metalink document or mirror list is a small text file.
_MAX_LIST_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MetalinkFile:
    """The ``<file name="summary">`` entry of a metalink document."""

    size: int | None
    #: The strongest known hash: (type, lower-case hex digest).
    hash: tuple[str, str]
    #: Where the file can be fetched, most preferred first.
    urls: tuple[str, ...]

    def check(self, data: bytes) -> None:
        """Refuse a body that is not the file described.

        Raises:
            RemoteError: the wrong size or hash.
        """
        if self.size is not None and len(data) != self.size:
            raise RemoteError(f"Expected size is {self.size} bytes but content is {len(data)} bytes")
        kind, want = self.hash
        actual = hashlib.new(kind, data).hexdigest()
        if actual != want:
            raise RemoteError(f"Expected checksum is {want} but actual is {actual}")


def _local(tag: str) -> str:
    """An element's name without its XML namespace."""
    return tag.rpartition("}")[2]


def _children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in elem if _local(c.tag) == name]


def parse_metalink(data: bytes, name: str = "summary") -> MetalinkFile:
    """The entry for file ``name`` of a metalink document (``<metalink><files><file>``).

    Unknown elements anywhere are ignored, as ostree ignores them.

    Raises:
        RemoteError: malformed XML, no such file, no known hash, a malformed digest, no URL.
    """
    text = data.lstrip()
    if not text.startswith(b"<"):
        raise RemoteError("metalink: Document must begin with an element (e.g. <book>)")
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise RemoteError(f"metalink: malformed document: {e}") from None
    if _local(root.tag) != "metalink":
        raise RemoteError("metalink: the document is not a <metalink>")
    entry = next(
        (f for files in _children(root, "files") for f in _children(files, "file") if f.get("name") == name), None
    )
    if entry is None:
        raise RemoteError(f"metalink: no <file name=\"{name}\"> element")
    size: int | None = None
    for s in _children(entry, "size"):
        raw = (s.text or "").strip()
        if not raw.isdigit():
            raise RemoteError(f"metalink: invalid <size> {raw[:40]!r}")
        size = int(raw)
    hashes: dict[str, str] = {}
    for ver in _children(entry, "verification"):
        for h in _children(ver, "hash"):
            hashes[(h.get("type") or "").lower()] = (h.text or "").strip().lower()
    chosen: tuple[str, str] | None = None
    for kind, length in _KNOWN_HASHES:
        digest = hashes.get(kind)
        if digest is None:
            continue
        if len(digest) != length or any(c not in "0123456789abcdef" for c in digest):
            raise RemoteError(f"metalink: Invalid hash digest for {kind}")
        if chosen is None:
            chosen = (kind, digest)
    if chosen is None:
        raise RemoteError("metalink: No <verification> with known <hash type=> (sha256 or sha512) found")
    urls: list[tuple[int, int, str]] = []
    for res in _children(entry, "resources"):
        for u in _children(res, "url"):
            target = (u.text or "").strip()
            if not target:
                continue
            try:
                pref = int(u.get("preference") or "0")
            except ValueError:
                pref = 0
            urls.append((-pref, len(urls), target))
    if not urls:
        raise RemoteError("metalink: No <url method=> elements found")
    return MetalinkFile(size, chosen, tuple(u for _, _, u in sorted(urls)))


def resolve_metalink(fetcher: Fetcher, metalink_url: str, max_summary_size: int) -> tuple[str, bytes]:
    """The repository URL and summary named by the metalink at ``metalink_url``.

    Each of the document's URLs is tried in order of preference; the first body of the right
    size and hash wins, and its directory is the repository's URL.

    Raises:
        RemoteError: a bad document, or no URL gave the right file (the last one's error).
        FetchError: the document itself could not be fetched, or the last URL failed so.
    """
    entry = parse_metalink(fetcher.fetch(metalink_url, max_length=_MAX_LIST_SIZE))
    last: RemoteError | FetchError | None = None
    for url in entry.urls:
        try:
            body = fetcher.fetch(url, max_length=max_summary_size)
            entry.check(body)
        except (FetchError, RemoteError) as e:
            last = e
            continue
        return url.rpartition("/")[0], body
    assert last is not None  # parse_metalink refuses an entry without URLs
    raise last


def resolve_mirrorlist(fetcher: Fetcher, list_url: str) -> list[str]:
    """The base URLs listed at ``list_url``.

    Raises:
        RemoteError: the list is not text or names no mirror.
        FetchError: it could not be fetched.
    """
    data = fetcher.fetch(list_url, max_length=_MAX_LIST_SIZE)
    try:
        mirrors = parse_mirrorlist(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RemoteError(f"mirrorlist {list_url} is not text") from None
    if not mirrors:
        raise RemoteError(f"mirrorlist {list_url} lists no mirrors")
    return mirrors

"""A remote's cookie jar, ``REPO/REMOTE.cookies.txt``, as ostree keeps it.

Layer: pull. ``ostree remote add-cookie`` writes Netscape-format lines (domain, subdomains
flag, path, secure flag, expiry, name, value) that libcurl and libsoup read; pulls from that
remote send the matching cookies. Writes are atomic (temp file and rename).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.repo import Repo

__all__ = ["Cookie", "add_cookie", "cookie_header", "delete_cookie", "list_cookies"]

_HEADER = "# Netscape HTTP Cookie File\n"


@dataclass(frozen=True, slots=True)
class Cookie:
    """One cookie line of the jar."""

    domain: str
    path: str
    name: str
    value: str
    secure: bool = False
    expires: int = 0  # 0: a session cookie, as ostree writes them

    def to_line(self) -> str:
        sub = "TRUE" if self.domain.startswith(".") else "FALSE"
        return "\t".join([self.domain, sub, self.path, "TRUE" if self.secure else "FALSE",
                          str(self.expires), self.name, self.value])


def _jar(repo: Repo, remote: str) -> Path:
    return repo.path / f"{remote}.cookies.txt"


def list_cookies(repo: Repo, remote: str) -> list[Cookie]:
    """The cookies of ``remote`` (none when it has no jar)."""
    try:
        text = _jar(repo, remote).read_text("utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if line.startswith("#HttpOnly_"):
            line = line.removeprefix("#HttpOnly_")
        elif not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            continue
        domain, _sub, path, secure, expires, name, value = fields
        out.append(Cookie(domain, path, name, value, secure == "TRUE", int(expires) if expires.isdigit() else 0))
    return out


def _save(repo: Repo, remote: str, cookies: list[Cookie]) -> None:
    text = _HEADER + "".join(c.to_line() + "\n" for c in cookies)
    _fs.write_atomic(_jar(repo, remote), text.encode("utf-8"), fsync=repo.fsync)


def add_cookie(repo: Repo, remote: str, cookie: Cookie) -> None:
    """Add (or replace, by domain, path and name) a cookie of ``remote``."""
    kept = [c for c in list_cookies(repo, remote) if (c.domain, c.path, c.name) != (cookie.domain, cookie.path, cookie.name)]
    _save(repo, remote, [*kept, cookie])


def delete_cookie(repo: Repo, remote: str, domain: str, path: str, name: str) -> bool:
    """Remove a cookie; returns whether it was there."""
    cookies = list_cookies(repo, remote)
    kept = [c for c in cookies if (c.domain, c.path, c.name) != (domain, path, name)]
    if len(kept) == len(cookies):
        return False
    _save(repo, remote, kept)
    return True


def cookie_header(repo: Repo, remote: str, url: str) -> str | None:
    """The ``Cookie`` header value a request to ``url`` carries, if any cookie matches."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path or "/"
    found = []
    for c in list_cookies(repo, remote):
        domain = c.domain.lower().lstrip(".")
        if not (host == domain or (c.domain.startswith(".") and host.endswith("." + domain))):
            continue
        if not path.startswith(c.path) or (c.secure and parts.scheme != "https"):
            continue
        found.append(f"{c.name}={c.value}")
    return "; ".join(found) if found else None

"""Registry credentials and TLS policy, read from the files skopeo and podman read.

Layer: oci. ``auth.json`` (containers-auth.json(5)): ``--authfile``, else ``$REGISTRY_AUTH_FILE``,
else ``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.config/containers/auth.json``,
``~/.docker/config.json``; bootc also reads ``/etc/ostree/auth.json``. The first file that
has an entry for the registry wins. ``registries.conf`` (containers-registries.conf(5)):
``$CONTAINERS_REGISTRIES_CONF``, else ``/etc/containers/registries.conf`` and
``registries.conf.d/*.conf``; a ``[[registry]]`` with ``insecure = true`` is reached over plain
HTTP (containers/image would try unverified TLS first; bootree goes straight to HTTP).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bootree.errors import ImageError

__all__ = ["Credentials", "auth_file_candidates", "find_credentials", "insecure_registries"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password (or token) for one registry."""

    username: str
    password: str


def auth_file_candidates(authfile: Path | None = None) -> list[Path]:
    """The auth files to read, in order."""
    if authfile is not None:
        return [authfile]
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return [Path(env)]
    out = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(Path(xdg) / "containers/auth.json")
    home = Path(os.path.expanduser("~"))
    out += [home / ".config/containers/auth.json", home / ".docker/config.json", Path("/etc/ostree/auth.json")]
    return out


def _entry_credentials(entry: object, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, pw = base64.b64decode(auth, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ImageError(f"{path}: invalid base64 'auth' entry") from None
        if sep:
            return Credentials(user, pw)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str):
        return Credentials(name, secret)
    return None


def find_credentials(host: str, repository: str, authfile: Path | None = None) -> Credentials | None:
    """Credentials for ``host/repository``: the longest matching key (``host/ns/repo`` > ``host``).

    Raises:
        ImageError: for an auth file that exists but does not parse.
    """
    keys = [f"{host}/{repository}"]
    parts = repository.split("/")
    keys += [f"{host}/{'/'.join(parts[:i])}" for i in range(len(parts) - 1, 0, -1)]
    keys += [host, f"https://{host}", f"http://{host}"]
    if host == "docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for path in auth_file_candidates(authfile):
        try:
            doc = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            if authfile is not None:
                raise ImageError(f"auth file {path} not found") from None
            continue
        except (OSError, ValueError) as e:
            raise ImageError(f"cannot read auth file {path}: {e}") from None
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            continue
        for key in keys:
            creds = _entry_credentials(auths.get(key), path)
            if creds is not None:
                return creds
    return None


def _conf_files() -> list[Path]:
    env = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if env:
        return [Path(env)]
    base = Path("/etc/containers/registries.conf")
    out = [base]
    d = Path("/etc/containers/registries.conf.d")
    if d.is_dir():
        out += sorted(p for p in d.iterdir() if p.suffix == ".conf")
    return out


def insecure_registries() -> set[str]:
    """Registry locations (``host[:port]``) marked ``insecure = true``.

    Raises:
        ImageError: for a registries.conf that is not valid TOML.
    """
    out: set[str] = set()
    for path in _conf_files():
        try:
            doc = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ImageError(f"cannot read {path}: {e}") from None
        for reg in doc.get("registry", []) or []:
            if isinstance(reg, dict) and reg.get("insecure") is True:
                loc = reg.get("location") or reg.get("prefix")
                if isinstance(loc, str):
                    out.add(loc)
        v1 = doc.get("registries", {})
        if isinstance(v1, dict):
            insecure = v1.get("insecure", {})
            if isinstance(insecure, dict):
                out.update(r for r in insecure.get("registries", []) if isinstance(r, str))
    return out

"""Remotes: ``[remote "NAME"]`` sections of a repository's config, as ostree writes them.

Layer: pull. Operates on a :class:`~bootree.format.keyfile.KeyFile` (the caller loads and saves
the repository config), so the rules are testable without a disk. Every key of a section is kept
verbatim, in order, including ones bootree does not act on yet (``gpg-verify``, ``tls-*``,
``branches``, ``unconfigured-state``...), so a config edited by bootree stays valid for ostree
and vice versa.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootree.errors import KeyFileError, RemoteExists, RemoteNotFound
from bootree.format.keyfile import KeyFile, parse_bool
from bootree.format.refspec import validate_remote_name
from bootree.transport import FetchConfig

__all__ = [
    "Remote",
    "add_remote",
    "delete_remote",
    "find_remote",
    "get_remote",
    "list_remotes",
    "remotes_config_dir",
    "repo_chain",
    "save_remote_file",
    "section_name",
]


def section_name(name: str) -> str:
    """The config group of remote ``name``: ``remote "NAME"``."""
    return f'remote "{name}"'


def _remote_name(group: str) -> str | None:
    if group.startswith('remote "') and group.endswith('"') and len(group) > len('remote ""'):
        return group[len('remote "') : -1]
    return None


@dataclass(frozen=True, slots=True)
class Remote:
    """A configured remote: its name and every ``key=value`` of its section, in order."""

    name: str
    options: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The raw value of ``key`` (the last one if repeated), or ``default``."""
        found = default
        for k, v in self.options:
            if k == key:
                found = v
        return found

    def get_bool(self, key: str, default: bool) -> bool:
        """A boolean option (``true``/``false``), or ``default``.

        Raises:
            KeyFileError: for a value that is not a boolean.
        """
        v = self.get(key)
        if v is None:
            return default
        try:
            return parse_bool(v)
        except KeyFileError as e:
            raise KeyFileError(f"remote {self.name!r}: {key}: {e}") from e

    @property
    def url(self) -> str:
        """Base URL of the metadata (summary, config, refs), or ``metalink=URL`` / ``mirrorlist=URL``
        (resolved by :class:`bootree.pull.session.RemoteSession`)."""
        return self.get("url") or ""

    @property
    def content_url(self) -> str:
        """Base URL of objects (``contenturl``; defaults to :attr:`url`)."""
        return self.get("contenturl") or self.url

    @property
    def gpg_verify(self) -> bool:
        """``gpg-verify`` (ostree's default is true)."""
        return self.get_bool("gpg-verify", True)

    @property
    def branches(self) -> list[str]:
        """Default refs to pull (``branches=a;b;``) when none are given."""
        return [b for b in (self.get("branches") or "").split(";") if b]

    @property
    def collection_id(self) -> str | None:
        """``collection-id``, if set."""
        return self.get("collection-id")

    def fetch_config(self, base: FetchConfig | None = None) -> FetchConfig:
        """``base`` adjusted by this remote's TLS, proxy and minimum-rate keys.

        ``low-speed-limit-bytes`` and ``low-speed-time-seconds`` are ostree's names for the
        minimum transfer rate (default 1000 bytes/s over 30 s; 0 disables it).

        Raises:
            KeyFileError: for a value that is not a boolean or a non-negative number.
        """
        import dataclasses

        cfg = base or FetchConfig()
        changes: dict[str, object] = {}
        if self.get_bool("tls-permissive", False):
            changes["tls_verify"] = False
        if self.get("tls-ca-path"):
            changes["tls_ca_path"] = self.get("tls-ca-path")
        if self.get("proxy"):
            changes["proxy"] = self.get("proxy")
        for key, attr in (("low-speed-limit-bytes", "low_speed_limit"), ("low-speed-time-seconds", "low_speed_time")):
            raw = self.get(key)
            if raw is not None:
                try:
                    value = float(raw)
                except ValueError:
                    raise KeyFileError(f"remote {self.name!r}: {key}: not a number: {raw!r}") from None
                if value < 0:
                    raise KeyFileError(f"remote {self.name!r}: {key}: must not be negative")
                changes[attr] = value
        return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[arg-type]


def list_remotes(config: KeyFile) -> list[Remote]:
    """Remotes in config order."""
    out = []
    for group in config.groups:
        name = _remote_name(group)
        if name is not None:
            out.append(Remote(name, tuple(config.items(group))))
    return out


def get_remote(config: KeyFile, name: str) -> Remote:
    """The remote ``name``.

    Raises:
        RemoteNotFound: if it is not configured.
    """
    group = section_name(name)
    if not config.has_group(group):
        raise RemoteNotFound(name)
    return Remote(name, tuple(config.items(group)))


def repo_chain(repo_path: Path) -> list[tuple[Path, KeyFile]]:
    """``repo_path`` and the repositories its ``core.parent`` names, transitively, with their configs.

    ostree's parent repositories: a repository inherits the remotes (and the remotes' keyrings)
    of its parent. A loop or a parent without a readable config ends the chain.
    """
    out: list[tuple[Path, KeyFile]] = []
    seen: set[str] = set()
    path: Path | None = repo_path
    while path is not None and os.path.realpath(path) not in seen:
        seen.add(os.path.realpath(path))
        try:
            config = KeyFile.from_text((path / "config").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, KeyFileError):
            break
        out.append((path, config))
        parent = config.get("core", "parent")
        path = Path(parent) if parent else None
    return out


def find_remote(repo_path: Path, config: KeyFile, name: str) -> Remote:
    """The remote ``name`` of a repository (its ``config``), else of its parents (``core.parent``).

    Raises:
        RemoteNotFound: if neither the repository nor a parent configures it.
    """
    group = section_name(name)
    if config.has_group(group):
        return Remote(name, tuple(config.items(group)))
    for _, upper in repo_chain(repo_path)[1:]:
        if upper.has_group(group):
            return Remote(name, tuple(upper.items(group)))
    raise RemoteNotFound(name)


def add_remote(
    config: KeyFile,
    name: str,
    url: str,
    *,
    branches: Sequence[str] = (),
    contenturl: str | None = None,
    options: Iterable[tuple[str, str]] = (),
    gpg_verify: bool | None = None,
    sign_verify: bool | None = None,
    verification_keys: Sequence[tuple[str, str, str]] = (),
    collection_id: str | None = None,
    if_not_exists: bool = False,
    force: bool = False,
) -> bool:
    """Add a ``[remote "NAME"]`` section the way ``ostree remote add`` does; whether it was added.

    Key order follows ostree: ``url``, ``branches``, ``contenturl``, ``--set`` options,
    ``gpg-verify``, ``sign-verify``, the ``verification_keys`` (``--sign-verify=ENGINE=inline:KEY``
    as ``(engine, key, value)``: ``verification-ENGINE-key`` or ``-file``), then ``sign-verify``
    naming their engines, and ``collection-id``.

    Raises:
        InvalidRefName: for an invalid remote name.
        RemoteExists: if it exists and neither ``if_not_exists`` nor ``force`` is given.
    """
    validate_remote_name(name)
    group = section_name(name)
    if config.has_group(group):
        if if_not_exists:
            return False
        if not force:
            raise RemoteExists(name)
        config.remove_group(group)
    config.set(group, "url", url)
    if branches:
        config.set(group, "branches", "".join(f"{b};" for b in branches))
    if contenturl:
        config.set(group, "contenturl", contenturl)
    for key, value in options:
        config.set(group, key, value)
    if gpg_verify is not None:
        config.set(group, "gpg-verify", "true" if gpg_verify else "false")
    if sign_verify is not None:
        config.set(group, "sign-verify", "true" if sign_verify else "false")
    for _engine, key, value in verification_keys:
        config.set(group, key, value)
    if verification_keys:
        config.set(group, "sign-verify", ",".join(dict.fromkeys(e for e, _, _ in verification_keys)))
    if collection_id:
        config.set(group, "collection-id", collection_id)
    return True


def remotes_config_dir(sysroot: Path, repo_config: KeyFile) -> Path | None:
    """Where ``remote add --sysroot=SYSROOT`` writes a new remote: a ``remotes.d`` directory, or
    ``None`` for the repository's own config (ostree 2022.7's rule).

    A *physical* sysroot (the real root, no ``sysroot/`` inside it) keeps remotes in
    ``ostree/repo/config``; a deployment's view of it (it has ``/sysroot``: a booted system)
    writes ``SYSROOT/etc/ostree/remotes.d/NAME.conf``, so the remote belongs to that
    deployment's ``/etc``, unless the repository says ``core.add-remotes-config-dir=false``.
    """
    if not (sysroot / "sysroot").exists():
        return None
    if not repo_config.get_bool("core", "add-remotes-config-dir", True):
        return None
    return sysroot / "etc/ostree/remotes.d"


def save_remote_file(confdir: Path, name: str, config: KeyFile, *, if_not_exists: bool = False,
                     force: bool = False) -> bool:
    """Write ``config`` (one remote's section) as ``confdir/NAME.conf``, atomically; whether written.

    Raises:
        RemoteExists: the file exists and neither ``if_not_exists`` nor ``force`` is given.
    """
    from bootree import _fs

    conf = confdir / f"{name}.conf"
    if conf.exists() and not force:
        if if_not_exists:
            return False
        raise RemoteExists(name)
    _fs.makedirs(confdir)
    _fs.write_atomic(conf, config.to_text().encode())
    return True


def delete_remote(config: KeyFile, name: str, *, if_exists: bool = False) -> bool:
    """Remove a remote's section; whether it was there.

    Raises:
        RemoteNotFound: if it is absent and ``if_exists`` is not given.
    """
    if config.remove_group(section_name(name)):
        return True
    if if_exists:
        return False
    raise RemoteNotFound(name)

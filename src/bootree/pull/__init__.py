"""Replication: bring commits from a remote (HTTP, HTTPS, file://) or a local repository in.

Layer: pull. Imports repo, format and transport; nothing below imports it. The public entry
points are :func:`pull` and :func:`pull_local`; remotes are managed with the functions of
:mod:`bootree.pull.remote`; :func:`~bootree.pull.publish.update_summary` regenerates the
summary a server publishes.

The names below load on first use (PEP 562): importing any submodule runs this file first,
and ``remote add`` or ``summary -u`` (libostree's suite runs them hundreds of times) must not
pay for the whole pull engine and its transports at each start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bootree.pull.puller import PullConfig, PullEvent, PullResult, pull, pull_local
    from bootree.pull.remote import Remote, add_remote, delete_remote, get_remote, list_remotes

__all__ = [
    "PullConfig",
    "PullEvent",
    "PullResult",
    "Remote",
    "add_remote",
    "delete_remote",
    "get_remote",
    "list_remotes",
    "pull",
    "pull_local",
]

_HOME = {
    **dict.fromkeys(["PullConfig", "PullEvent", "PullResult", "pull", "pull_local"], "bootree.pull.puller"),
    **dict.fromkeys(["Remote", "add_remote", "delete_remote", "get_remote", "list_remotes"], "bootree.pull.remote"),
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value

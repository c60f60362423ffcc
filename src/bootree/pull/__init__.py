"""Replication: bring commits from a remote (HTTP, HTTPS, file://) or a local repository in.

Layer: pull. Imports repo, format and transport; nothing below imports it. The public entry
points are :func:`pull` and :func:`pull_local`; remotes are managed with the functions of
:mod:`bootree.pull.remote`; :func:`~bootree.pull.publish.update_summary` regenerates the
summary a server publishes.
"""

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

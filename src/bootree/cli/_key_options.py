"""The key options of the offline-update and delta-verifying commands, without their machinery.

Layer: cli. ``admin upgrade`` and bootc's ``upgrade`` declare ``--from-file`` at import time, so
these decorators need click only: the key loading and signature checks they lead to
(:mod:`bootree.cli._delta_keys`: signing, trust policies, remotes) load when a command uses them.
That keeps every ``admin`` call (libostree's suite makes thousands) from importing them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

__all__ = ["from_file_options", "keys_options"]


def from_file_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--from-file`` with ``--keys-file``/``--keys-dir``, for both spellings of ``upgrade``."""
    func = click.option("--keys-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="A directory of trusted.ed25519[.d] and revoked.ed25519[.d] keys (--from-file, image deltas).")(func)
    func = click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Public ed25519 keys the --from-file file's or an image delta's signature is checked with.")(func)
    return click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="Update from an offline update file (static-delta generate --self-contained); "
                        "no network.")(func)


def keys_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--keys-file`` and ``--keys-dir`` of the verifying commands."""
    func = click.option("--keys-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="Directory with trusted.ed25519[.d] and revoked.ed25519[.d] key files.")(func)
    return click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Read public keys from FILE (one base64 key per line).")(func)

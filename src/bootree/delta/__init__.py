"""Static deltas: generate them between two commits, apply them into a repository.

Layer: services (imports repo, format, _fs, _run and errors only). The byte formats are in
:mod:`bootree.format.delta` and :mod:`bootree.format.deltaops`; this package adds the choices
(what goes into a part, rollsum, bsdiff), the repository layout (``deltas/``,
``delta-indexes/``) and the verified application that pulls and ``apply-offline`` share.
"""

from bootree.delta.apply import ApplyResult, apply_delta, check_part
from bootree.delta.compile import DeltaOptions, GenerateResult, generate_delta
from bootree.delta.offline import apply_offline, read_superblock_file
from bootree.delta.store import delete_delta, list_deltas, list_indexes, read_superblock, reindex

__all__ = [
    "ApplyResult",
    "DeltaOptions",
    "GenerateResult",
    "apply_delta",
    "apply_offline",
    "check_part",
    "delete_delta",
    "generate_delta",
    "list_deltas",
    "list_indexes",
    "read_superblock",
    "read_superblock_file",
    "reindex",
]

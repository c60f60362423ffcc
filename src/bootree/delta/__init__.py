"""Static deltas: generate them between two commits, apply them into a repository.

Layer: services (imports repo, format, _fs, _run and errors only). The byte formats are in
:mod:`bootree.format.delta` and :mod:`bootree.format.deltaops`; this package adds the choices
(what goes into a part, rollsum, bsdiff), the repository layout (``deltas/``,
``delta-indexes/``) and the verified application that pulls and ``apply-offline`` share.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bootree.delta.apply import ApplyResult, apply_delta, check_part
    from bootree.delta.compile import DeltaOptions, GenerateResult, generate_delta
    from bootree.delta.offline import apply_offline, read_superblock_file
    from bootree.delta.store import delete_delta, list_deltas, list_indexes, read_superblock, reindex

#: Where each public name lives. The package loads a submodule on first use (PEP 562): a pull
#: that applies a delta must not pay for the generator's imports (numpy, ~0.1-0.4 s).
_HOME = {
    **dict.fromkeys(["ApplyResult", "apply_delta", "check_part"], "apply"),
    **dict.fromkeys(["DeltaOptions", "GenerateResult", "generate_delta"], "compile"),
    **dict.fromkeys(["apply_offline", "read_superblock_file"], "offline"),
    **dict.fromkeys(["delete_delta", "list_deltas", "list_indexes", "read_superblock", "reindex"], "store"),
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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

"""What a repository's configuration asks for its objects' integrity (fs-verity), as ostree reads it.

Layer: repo. Pure over the config key file: the transaction and deploys ask
:func:`fs_verity_policy` whether to enable fs-verity on the objects they write.
"""

from __future__ import annotations

from bootree.format.keyfile import KeyFile

_TRISTATE = {"yes": "yes", "true": "yes", "1": "yes", "no": "no", "false": "no", "0": "no", "maybe": "maybe"}


def fs_verity_policy(config: KeyFile) -> str:
    """``"no"``, ``"maybe"`` (where the file system supports it) or ``"yes"`` (required).

    ``[ex-integrity] fsverity`` is a tristate (``composefs`` there implies ``maybe``); else the
    older ``[ex-fsverity] required=true`` (yes) or ``opportunistic=true`` (maybe).
    """
    cfs = _TRISTATE.get((config.get("ex-integrity", "composefs", "no") or "no").strip().lower(), "no")
    value = config.get("ex-integrity", "fsverity")
    wanted = _TRISTATE.get(value.strip().lower(), "no") if value is not None else ("maybe" if cfs != "no" else "no")
    if wanted != "no":
        return wanted
    if config.get_bool("ex-fsverity", "required", False):
        return "yes"
    return "maybe" if config.get_bool("ex-fsverity", "opportunistic", False) else "no"

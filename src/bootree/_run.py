"""The one place where bootree runs external programs.

Layer: bottom utility (like :mod:`bootree._fs`); may be imported by every layer that is allowed
to run programs (not ``repo`` or ``transport``; ``sign`` only for ``gpg``, ADR 0002). Every call takes an argv list (never
a shell string), is logged as one ``shlex.join`` line, and a failure becomes an
:class:`~bootree.errors.ExternalCommandError` carrying argv, status and stderr, so callers
never parse ``CalledProcessError`` or ``FileNotFoundError`` themselves.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bootree.errors import ExternalCommandError

if TYPE_CHECKING:
    import subprocess

__all__ = ["find_program", "run"]

log = logging.getLogger(__name__)


def find_program(name: str, *, extra_dirs: Sequence[str] = ("/usr/sbin", "/sbin")) -> str | None:
    """Path of ``name`` on ``$PATH`` or in ``extra_dirs`` (sbin is often missing from PATH)."""
    import shutil  # on first use: shutil pulls bz2/lzma/fnmatch into every command's start-up (issue 9)

    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=os.pathsep.join(extra_dirs))
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: bytes | None = None,
    cwd: os.PathLike[str] | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` and return the finished process with stdout and stderr captured as bytes.

    ``env`` is *added* to the current environment (tools such as mtools need one variable set,
    not a whole new environment). A program that cannot be started, times out, or (with
    ``check``) exits non-zero raises.

    Raises:
        ExternalCommandError: for every kind of failure, with the cause chained.
    """
    import subprocess  # on first use: most commands never run a program (issue 9: start-up cost)

    args = [os.fspath(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            args, input=input, cwd=cwd, env=full_env, timeout=timeout, capture_output=True, check=False
        )
    except FileNotFoundError as e:
        raise ExternalCommandError(args, 127, f"{args[0]}: program not found") from e
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        raise ExternalCommandError(args, -1, f"timed out after {timeout} s\n{stderr}") from e
    except OSError as e:
        raise ExternalCommandError(args, 126, str(e)) from e
    if check and proc.returncode != 0:
        raise ExternalCommandError(args, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc

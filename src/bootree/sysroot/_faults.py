"""Crash points for the crash-safety tests: ``BOOTREE_TEST_CRASH_AT=<name>`` kills the process.

Layer: sysroot (private). The deploy path calls :func:`checkpoint` at named moments (after the
checkout, during the kernel copy, just before and just after the atomic rename of
``boot/loader``). When the environment variable names that point, the process sends itself
SIGKILL there: no ``finally`` block, no atexit handler runs, exactly as on a power cut or an
OOM kill. Without the variable a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["ENV", "checkpoint"]

ENV = "BOOTREE_TEST_CRASH_AT"
log = logging.getLogger(__name__)


def checkpoint(name: str) -> None:
    """Die here with SIGKILL if ``$BOOTREE_TEST_CRASH_AT`` equals ``name``."""
    if os.environ.get(ENV) == name:
        log.warning("crash point %s reached: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)

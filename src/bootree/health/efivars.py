"""The systemd-boot loader variables an OS reads after boot (``LoaderBootCountPath`` and friends).

Layer: health. efivarfs exposes each variable as a file: 4 bytes of attributes, then the value,
here a NUL-terminated UTF-16LE string. The vendor GUID is systemd's loader interface GUID.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EFIVARS", "LOADER_GUID", "read_loader_var"]

EFIVARS = Path("/sys/firmware/efi/efivars")
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"


def read_loader_var(name: str, *, efivars: Path = EFIVARS) -> str | None:
    """A loader variable as text, or ``None`` when absent (no counter, no EFI, not systemd-boot)."""
    try:
        raw = (efivars / f"{name}-{LOADER_GUID}").read_bytes()
    except OSError:
        return None
    return raw[4:].decode("utf-16-le", errors="replace").rstrip("\x00") or None

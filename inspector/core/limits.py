"""Resource limits sized for the machine (images.py's pixel limit, modelfile.py's size limits)."""

from __future__ import annotations

import os


def physical_memory() -> int:
    """The machine's memory in bytes (8 GiB where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):      # not POSIX: assume a small machine
        return 8 << 30

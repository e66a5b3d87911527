"""Peak memory of this process, on Linux, macOS and Windows (for ``evaluate`` and ``benchmark``)."""

from __future__ import annotations

import sys
from typing import Optional


def maxrss_mb(ru_maxrss: int, platform: str = sys.platform) -> float:
    """``getrusage``'s ``ru_maxrss`` in MiB: macOS counts bytes, Linux and the BSDs KiB."""
    return ru_maxrss / 2**20 if platform == "darwin" else ru_maxrss / 1024.0


def _linux_high_water_mb() -> Optional[float]:
    """VmHWM of /proc/self/status: this program's own peak.  ``ru_maxrss`` would also count the
    process it was started from (Linux keeps the larger of the two across exec), which inflates
    the figure when a large Python process starts the measurement."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB: Linux's VmHWM, macOS' and the BSDs'
    ``getrusage`` (whose units differ), Windows' peak working set through psutil (NaN there when
    psutil is missing)."""
    if sys.platform == "win32":
        try:
            import psutil
        except ImportError:
            return float("nan")
        return psutil.Process().memory_info().peak_wset / 2**20
    if sys.platform.startswith("linux"):
        hwm = _linux_high_water_mb()
        if hwm is not None:
            return hwm
    import resource
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

"""Peak memory on every platform: the units of getrusage, and this machine's real counter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.research.memory import maxrss_mb, peak_rss_mb


def test_getrusage_units_per_platform():
    assert maxrss_mb(2 * 1024 * 1024, "linux") == pytest.approx(2048.0)     # KiB
    assert maxrss_mb(2 * 1024 * 1024, "darwin") == pytest.approx(2.0)       # bytes
    assert maxrss_mb(1024, "freebsd14") == pytest.approx(1.0)


SCRIPT = """
import json
import numpy as np
from inspector.research.memory import peak_rss_mb

def hwm():
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024.0

before = (peak_rss_mb(), hwm())
block = np.ones(128 * 2**20, np.uint8)       # 128 MiB, touched
print(json.dumps([before, (peak_rss_mb(), hwm())]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_rss_is_this_programs_high_water_mark_and_grows():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    (before, hwm_before), (after, hwm_after) = json.loads(out.stdout)
    assert before == pytest.approx(hwm_before, abs=1) and after == pytest.approx(hwm_after, abs=1)
    assert after - before >= 120
    assert before < 100          # its own peak, not that of the (larger) pytest process that started it


def test_getrusage_is_the_fallback_off_linux():
    """What macOS and the BSDs use: a real getrusage reading, converted by the platform's unit."""
    resource = pytest.importorskip("resource")
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert maxrss_mb(raw, "linux") > 10 and maxrss_mb(raw, "darwin") == pytest.approx(raw / 2**20)


@pytest.mark.skipif(sys.platform != "win32", reason="Windows: the peak working set through psutil")
def test_peak_rss_on_windows():
    assert peak_rss_mb() > 10

"""Keep PySide6 6.12.0 from crashing the interpreter on Python < 3.12.

That release drops a reference to the object it returns from many calls: every void method
(``label.setText(...)``, ``model.beginResetModel()``...) takes one reference from ``None`` and every
``signal.emit()`` one from ``True``.  On Python 3.12+ these objects are immortal and nothing happens;
on 3.11 their counts run down as the window works until CPython aborts with
"none_dealloc / bool_dealloc: deallocating None".  When the leak is measured at import, the three
singletons get a reserve of references so large that it cannot run out.  Imported first by
:mod:`inspector.gui`; nothing is done when the bindings behave.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

RESERVE = 1 << 40


class _Probe(QObject):
    ping = Signal()


def measure_leak(n: int = 16) -> bool:
    """True when void calls or emits lose references to None / True."""
    probe = _Probe()
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(n):
        probe.setObjectName("probe")
        probe.ping.emit()
    after = sys.getrefcount(None), sys.getrefcount(True)
    return after[0] <= before[0] - n // 2 or after[1] <= before[1] - n // 2


def apply() -> bool:
    """Give None, True and False a reserve of references if the bindings leak. Returns whether it did."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or not measure_leak():
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE
    return True


APPLIED = apply()

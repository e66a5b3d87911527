import sys

from PySide6.QtCore import QObject, Signal

from inspector.gui import qtfix


class _O(QObject):
    sig = Signal(int)


def test_many_void_calls_and_emits_do_not_exhaust_none_or_true():
    """PySide6 6.12.0 leaks a reference per void call / emit; 200k of each would abort CPython 3.11."""
    o = _O()
    o.sig.connect(lambda v: None)
    for i in range(200_000):
        o.setObjectName("x")
        o.sig.emit(i)
    assert sys.getrefcount(None) > 0 and sys.getrefcount(True) > 0
    if sys.version_info < (3, 12) and qtfix.measure_leak():
        assert qtfix.APPLIED

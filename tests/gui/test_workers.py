import time

from inspector.core.errors import DatasetError
from inspector.gui.workers import JobWorker


def slow(n, job):
    for i in range(n):
        job.step("counting", i + 1, n)
        time.sleep(0.01)
    return n * 2


def fails(job):
    raise DatasetError("no images found in /nowhere")


def crashes(job):
    raise KeyError("oops")


def test_finished_with_progress(qtbot):
    w = JobWorker(slow, 5)
    seen = []
    w.progress.connect(lambda *a: seen.append(a))
    with qtbot.waitSignal(w.finished, timeout=5000) as sig:
        w.start()
    assert sig.args == [10]
    qtbot.waitUntil(lambda: seen and seen[-1] == ("counting", 5, 5))


def test_user_error_becomes_a_message(qtbot):
    w = JobWorker(fails)
    with qtbot.waitSignal(w.failed, timeout=5000) as sig:
        w.start()
    assert sig.args == ["no images found in /nowhere"]
    w2 = JobWorker(crashes)
    with qtbot.waitSignal(w2.failed, timeout=5000) as sig:
        w2.start()
    assert "unexpected error (KeyError)" in sig.args[0]


def test_cancel_stops_the_job(qtbot):
    w = JobWorker(slow, 10_000)
    w.progress.connect(lambda *a: w.cancel())
    with qtbot.waitSignals([w.cancelled, w.ended], timeout=5000):
        w.start()
    assert w.result is None
    assert w.wait(2000)

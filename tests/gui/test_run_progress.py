"""The wizard's RunPage draws the overall meter: weighted bar, current stage, an ETA only once
measured, nothing stale after Cancel or the end (a fake clock and fake worker: no training)."""

import os

import pytest

from inspector.core.progress import training_plan


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeWorker:
    def __init__(self):
        self.is_cancelling = False

    def cancel(self):
        self.is_cancelling = True


@pytest.fixture
def page(qtbot):
    from inspector.gui.app import create_app
    from inspector.gui.wizard import RunPage

    create_app()
    p = RunPage(None)
    qtbot.addWidget(p)
    p.resize(680, 300)
    p.clock = clock = Clock()
    from inspector.core.progress import ProgressMeter
    p.meter = ProgressMeter(clock=clock)
    p.worker, p.state = FakeWorker(), "running"
    p.show()
    return p


def _mid_run(page):
    clock = page.clock
    page._planned(training_plan("patchcore", {}, 60, n_test=20, save=True))
    page._progress("loading backbone", 0, 1)
    clock.t += 4
    page._progress("loading backbone", 1, 1)
    clock.t += 2
    page._progress("extracting features", 16, 60)
    assert "left" not in page.times.text()              # the first counted step: no ETA yet
    for done in (32, 48):
        clock.t += 2.5
        page._progress("extracting features", done, 60)


def test_run_page_shows_overall_bar_stage_and_eta(page, tmp_path):
    _mid_run(page)
    assert page.bar.maximum() == 1000 and 0 < page.bar.value() < 1000
    assert page.stage.text() == "Extracting features"
    detail = page.detail.text()
    assert detail.startswith("Step 2 of ") and "48 of 60" in detail and "img/s" in detail
    assert "Elapsed 0:11" in page.times.text() and "left" in page.times.text()
    out = os.environ.get("INSPECTOR_SHOTS")             # set it to look at the page
    page.grab().save(os.path.join(out, "runpage-mid.png") if out else str(tmp_path / "runpage-mid.png"))


def test_nothing_stale_after_cancel(page):
    _mid_run(page)
    assert "left" in page.times.text()
    page.cancel()
    assert "left" not in page.times.text() and page.detail.text() == ""
    assert page.stage.text() == "Cancelling…"
    page._progress("extracting features", 60, 60)       # a report still on its way changes nothing
    assert "left" not in page.times.text() and page.stage.text() == "Cancelling…"
    page.clock.t += 3
    page._cancelled()
    assert page.times.text() == "Cancelled after 0:14"
    assert "previous model" in page.stage.text() and page.detail.text() == ""
    page._tick()                                         # the ticker firing late writes the same
    assert page.times.text() == "Cancelled after 0:14"


def test_done_says_how_long_it_took(page):
    _mid_run(page)
    page.clock.t += 49
    page._finished(type("Outcome", (), {})())
    assert page.times.text() == "Done in 1:00" and page.detail.text() == ""


def test_status_bar_job_uses_the_same_meter(qtbot):
    from inspector.core.progress import ProgressMeter
    from inspector.gui.app import create_app
    from inspector.gui.main_window import JobStatus

    create_app()
    status = JobStatus()
    qtbot.addWidget(status)
    status.begin("inspecting")
    assert status.bar.maximum() == 0                         # busy until something is known
    clock = Clock()
    status.meter = ProgressMeter(clock=clock)
    status.report("inspecting", 8, 100)
    assert status.label.text() == "inspecting: inspecting 8/100" and status.bar.value() == 80
    for done in (16, 24, 32):
        clock.t += 2
        status.report("inspecting", done, 100)
    assert status.label.text() == "inspecting: inspecting 32/100  ·  4.0 img/s, about 0:15 left"
    status.begin("training")
    assert status.label.text() == "training" and "left" not in status.label.text()


def announcing_job(job=None):
    """A job in a worker process that announces its plan, then reports."""
    from inspector.core.progress import PlanStage
    job.announce([PlanStage("a", "a", 0.25), PlanStage("b", "b", 0.75)])
    job.step("a", 1, 1)
    job.step("b", 1, 2)
    return "ok"


def test_the_plan_crosses_the_process_boundary_before_the_progress(qtbot):
    from PySide6.QtCore import QObject, Slot

    from inspector.gui.workers import ProcessJobWorker

    class Receiver(QObject):
        def __init__(self):
            super().__init__()
            self.got = []

        @Slot(object)
        def planned(self, plan):
            self.got.append(("plan", [s.key for s in plan]))

        @Slot(str, int, int)
        def progress(self, stage, done, total):
            self.got.append((stage, done, total))

    r = Receiver()
    w = ProcessJobWorker(announcing_job)
    w.planned.connect(r.planned)
    w.progress.connect(r.progress)
    with qtbot.waitSignal(w.ended, timeout=120000):
        w.start()
    qtbot.waitUntil(lambda: len(r.got) == 3, timeout=5000)
    assert r.got == [("plan", ["a", "b"]), ("a", 1, 1), ("b", 1, 2)]

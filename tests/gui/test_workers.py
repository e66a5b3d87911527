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


# -- a job that changes a project: the work in a process, the rows stored here --------------------

import pytest  # noqa: E402

from inspector.gui.workers import ProcessJobWorker  # noqa: E402
from inspector.project import Project, StorageError  # noqa: E402
from inspector.project.handoff import OwnedJob  # noqa: E402


def mark_unreadable(plan, job, deliver):
    """The worker's half: one delivery per image, then slowly, so that a test can cancel."""
    for n, image_id in enumerate(plan["ids"]):
        job.step("marking", n, len(plan["ids"]))
        deliver(("set_readable_many", [(image_id, False, f"bad {image_id}")]))
        time.sleep(plan["pause"])
    return len(plan["ids"])


class MarkJob(OwnedJob):
    work = staticmethod(mark_unreadable)

    def __init__(self, project, pause=0.0, fail_at=None):
        super().__init__(project)
        self.pause, self.fail_at = pause, fail_at
        self.stored, self.abandoned, self.seen_pid = [], False, None

    def prepare(self):
        import os
        self.seen_pid = os.getpid()
        return {"ids": self.project.image_ids(), "pause": self.pause}

    def receive(self, delivery):
        if self.fail_at is not None and len(self.stored) == self.fail_at:
            raise StorageError("cannot write the project database: the disk is full; nothing was changed.")
        super().receive(delivery)
        self.stored.append(delivery[1][0][0])

    def finish(self, result):
        return ("finished", result)

    def abandon(self):
        self.abandoned = True


@pytest.fixture
def project(tmp_path):
    from inspector.project.demo import make_folder
    p = Project.create(tmp_path / "p")
    p.add_folder(make_folder(tmp_path / "parts", n=4, n_bad=0, size=16), "test")
    yield p
    p.close()


def test_an_owned_job_stores_what_its_process_delivers_here(qtbot, project):
    job = MarkJob(project)
    w = ProcessJobWorker(job)
    with qtbot.waitSignal(w.finished, timeout=60000) as sig:
        w.start()
    assert sig.args == [("finished", 4)]
    assert w.pid != job.seen_pid                       # the work ran in another process
    assert sorted(job.stored) == sorted(project.image_ids()) and not job.abandoned
    assert project.counts()["unreadable"] == 4           # stored by this process, the owner


def test_storing_that_fails_stops_the_process_and_fails_the_job(qtbot, project):
    job = MarkJob(project, pause=0.3, fail_at=1)
    w = ProcessJobWorker(job)
    with qtbot.waitSignal(w.failed, timeout=60000) as sig:
        w.start()
    assert sig.args[0].startswith("cannot write the project database: the disk is full")
    assert job.abandoned and len(job.stored) == 1 and project.counts()["unreadable"] == 1
    assert w.wait(10000) and not w._process.is_alive()


def test_a_cancelled_owned_job_keeps_what_was_stored_and_never_finishes(qtbot, project):
    job = MarkJob(project, pause=0.5)
    w = ProcessJobWorker(job)
    w.progress.connect(lambda stage, done, total: done >= 1 and w.cancel())
    with qtbot.waitSignals([w.cancelled, w.ended], timeout=60000):
        w.start()
    assert w.result is None and job.abandoned
    assert 1 <= len(job.stored) < 4 and project.counts()["unreadable"] == len(job.stored)

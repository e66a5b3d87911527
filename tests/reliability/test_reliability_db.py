"""The project database keeps every confirmed label and every model, whatever else happens.

The lost-label sequence of issue #14 through the real main window (a file dialog's open and close
of the database files while worker processes run), kill -9 during labelling and during inspection,
a second window, a read-only folder and a full disk.
"""

import os
import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer

from inspector.project.demo import make_mvtec

DB = "inspector.db"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The real main window, with its settings and data folder under tmp_path."""
    from inspector.gui.app import create_app
    from inspector.gui.main_window import MainWindow

    QStandardPaths.setTestModeEnabled(True)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path / "settings"))
    monkeypatch.setattr("inspector.gui.main_window.folder_projects_dir", lambda: tmp_path / "folder-projects")
    create_app()
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


class FileDialogProbe:
    """What a file dialog opened in the project folder does: open and close the database files
    (to sniff their type), from the window's process. Each close() of a descriptor drops every
    POSIX lock the process holds on that file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pokes = 0

    def poke(self) -> None:
        for name in (DB, DB + "-wal", DB + "-shm"):
            try:
                fd = os.open(self.folder / name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            os.read(fd, 16)
            os.close(fd)
        self.pokes += 1


def train_in_wizard(window, qtbot, name: str) -> None:
    wiz = window.open_wizard()
    wiz.data_page.name.setText(name)
    wiz.next()
    mp = wiz.method_page
    mp.backbone.setCurrentIndex(mp.backbone.findData("resnet18"))
    mp.random.setChecked(True)                  # plumbing only: random weights are fast
    wiz.next()
    wiz.options_page.size.setValue(64)
    wiz.next()                                  # training starts in a worker process
    run = wiz.run_page
    qtbot.waitUntil(lambda: run.state != "running", timeout=300000)
    assert run.state == "done", run.error.text()
    wiz.accept()
    qtbot.waitUntil(lambda: window.wizard is None)


def mark_in_review(window, qtbot, keys) -> dict:
    """Press A / N on the first unreviewed flagged parts; returns {image_id: label} marked."""
    window.tabs.setCurrentWidget(window.review)
    r = window.review
    r.reload()
    marked = {}
    for key in keys:
        i = r.first_unreviewed(0)
        if i is None:
            break
        r.queue.setCurrentRow(i)
        image_id = r.rows[i].id
        r.setFocus()
        qtbot.keyClick(r, key)
        marked[image_id] = "anomalous" if key == Qt.Key_A else "good"
    return marked


def on_disk(folder: Path):
    """integrity_check, operator labels and model names, read by a fresh connection."""
    c = sqlite3.connect(f"file:{folder / DB}?mode=ro", uri=True)
    try:
        check = c.execute("PRAGMA integrity_check").fetchone()[0]
        labels = dict(c.execute("SELECT image_id, label FROM labels WHERE source = 'operator'").fetchall())
        models = [r[0] for r in c.execute("SELECT name FROM models ORDER BY id")]
        return check, labels, models
    finally:
        c.close()


@pytest.mark.slow
def test_lost_label_sequence_keeps_every_label_and_model(window, qtbot, tmp_path):
    """Issue #14: train, a file dialog in the project folder while the next training runs, review,
    train again, review, report, close, reopen: every label and every model is there."""
    data = make_mvtec(tmp_path / "data" / "weave", n_train=8, n_good=6, n_bad=6, size=64)
    window.new_project(tmp_path / "p")
    window.add_images(data, "mvtec")
    folder = window.project.folder
    train_in_wizard(window, qtbot, "first")

    problems = []                               # collected, so that one run shows all the damage
    probe = FileDialogProbe(folder)
    dialog = QTimer(interval=25, timeout=probe.poke)
    dialog.start()                              # the save dialog, open while the next worker runs
    train_in_wizard(window, qtbot, "second")
    assert probe.pokes > 0
    p = window.project
    window.apply_threshold(min(s for s, _ in p.scores(p.current_model_id)))   # every part is flagged
    expected = mark_in_review(window, qtbot, [Qt.Key_A, Qt.Key_N, Qt.Key_A, Qt.Key_N])
    assert len(expected) == 4

    train_in_wizard(window, qtbot, "third")
    seen = [m.name for m in p.models()]
    if seen != ["first", "second", "third"]:
        problems.append(f"after the third training the window sees models {seen}")
    window.apply_threshold(min(s for s, _ in p.scores(p.current_model_id)))
    expected.update(mark_in_review(window, qtbot, [Qt.Key_N, Qt.Key_A, Qt.Key_N]))
    job = window.export_report(tmp_path / "report.pdf")          # one more worker
    assert job is not None
    qtbot.waitUntil(lambda: window.job is None, timeout=120000)
    expected.update(mark_in_review(window, qtbot, [Qt.Key_A]))
    dialog.stop()
    if len(expected) != 8:
        problems.append(f"only {len(expected)} of 8 parts could be marked in Review")
    believed = {i: p.label(i)[0] for i in expected}
    if believed != expected:
        problems.append(f"the window believes {believed}, marked {expected}")

    window.close_project()
    try:
        check, labels, models = on_disk(folder)
    except sqlite3.DatabaseError as exc:
        problems.append(f"after closing, {DB} cannot be read: {exc}")
    else:
        if check != "ok":
            problems.append(f"integrity_check after closing: {check}")
        if models != ["first", "second", "third"]:
            problems.append(f"models on disk: {models}")
        lost = {i: (lab, labels.get(i)) for i, lab in expected.items() if labels.get(i) != lab}
        if lost:
            problems.append(f"{len(lost)} of {len(expected)} labels lost on disk (marked, on disk): {lost}")
    try:
        reopened = window.open_path(folder)
    except Exception as exc:  # noqa: BLE001 - part of the damage to report
        problems.append(f"reopening raises {type(exc).__name__}: {exc}")
    else:
        if not reopened:
            problems.append(f"reopening fails: {window.message.text.text()}")
    try:
        p2 = window.project
        if [m.name for m in p2.models()] != ["first", "second", "third"]:
            problems.append(f"reopened, the models are {[m.name for m in p2.models()]}")
        if {i: p2.label(i)[0] for i in expected} != expected:
            problems.append("reopened, labels differ from what was marked")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"reading the reopened project raises {type(exc).__name__}: {exc}")
    assert not problems, "\n".join(problems)


# -- kill -9 during labelling and during inspection ---------------------------------------------

LABELLER = r"""
import random, sys
from inspector.project import Project
p = Project.open(sys.argv[1])
if p.read_only:
    print("read-only", p.read_only_reason, flush=True)
    sys.exit(3)
ids = p.image_ids()
rng = random.Random(int(sys.argv[2]))
print("owner", flush=True)
while True:
    i, label = rng.choice(ids), rng.choice(["good", "anomalous", None])
    print("try", i, label, flush=True)
    p.set_label(i, label)
    print("done", i, label, flush=True)
"""


def _labels(folder: Path) -> dict:
    c = sqlite3.connect(f"file:{folder / DB}?mode=ro", uri=True)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(c.execute("SELECT image_id, label FROM labels").fetchall())
    finally:
        c.close()


def test_kill_9_during_labelling_loses_no_committed_label(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import threading
    import time

    from inspector.project import Project

    data = make_mvtec(tmp_path / "weave", n_train=4, n_good=10, n_bad=10, size=16)
    p = Project.create(tmp_path / "p")
    p.add_mvtec(data)
    folder = p.folder
    p.close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(14)
    committed, pending = {}, {}       # image id -> label the labeller said was committed / was writing
    runs = 0
    for run in range(6):
        proc = subprocess.Popen([sys.executable, "-c", LABELLER, str(folder), str(run)], stdout=subprocess.PIPE,
                                text=True, env=env)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not any(line.startswith("done") for line in list(lines)) and proc.poll() is None:
            assert time.monotonic() < deadline, "the labeller never committed"
            time.sleep(0.01)
        assert lines[0].strip() == "owner", lines[:2]     # the killed run's lock went with it
        time.sleep(rng.uniform(0.0, 0.3))                   # a random moment while it labels
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(5)
        runs += 1
        pending.clear()
        for line in lines:
            if not line.endswith("\n"):     # cut by the kill: not reported
                continue
            kind, *rest = line.split()
            if kind not in ("try", "done"):
                continue
            image_id, label = int(rest[0]), None if rest[1] == "None" else rest[1]
            if kind == "try":
                pending[image_id] = label
            else:
                committed[image_id] = label
                pending.pop(image_id, None)
        on_disk_now = _labels(folder)
        for image_id, label in committed.items():
            allowed = {label, pending.get(image_id, label)}     # the one in flight may have committed
            assert on_disk_now.get(image_id) in allowed, (run, image_id, label, on_disk_now.get(image_id))
    assert runs == 6 and len(committed) > 10


class _KillAfterFirstBatch:
    """Wraps an InspectionJob's receive: counts what the owner stored, kills the worker (kill -9)
    once the first batch is stored."""

    def __init__(self, job, worker):
        self.job, self.worker, self.stored = job, worker, 0
        self._receive = job.receive
        job.receive = self

    def __call__(self, delivery):
        self._receive(delivery)
        if delivery[0] == "add_result_rows":
            self.stored += len(delivery[2])
            if self.worker.pid:
                import signal
                os.kill(self.worker.pid, signal.SIGKILL)


@pytest.mark.slow
def test_kill_9_during_inspection_keeps_the_delivered_results(qtbot, tmp_path):
    from inspector.gui.app import create_app
    from inspector.gui.workers import ProcessJobWorker
    from inspector.project import Project
    from inspector.project.inspection import InspectionJob
    from inspector.project.training_run import train_project_model

    create_app()
    data = make_mvtec(tmp_path / "weave", n_train=6, n_good=40, n_bad=24, size=48)
    p = Project.create(tmp_path / "p")
    p.add_mvtec(data)
    model = train_project_model(p, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                    "resize": 48}, name="m", inspect_test=False)
    mid = model.model_id
    ids = p.image_ids(split="test")
    job = InspectionJob(p, mid, ids)
    worker = ProcessJobWorker(job)
    killer = _KillAfterFirstBatch(job, worker)
    with qtbot.waitSignal(worker.failed, timeout=180000) as failed:
        worker.start()
    assert "stopped unexpectedly" in failed.args[0]
    assert worker.wait(10000)
    rows = [r for r in p.images(mid) if r.score is not None]
    assert 8 <= killer.stored == len(rows) < len(ids)       # what was delivered is stored, and only that
    assert all(p.load_map(r) is not None for r in rows)
    folder = p.folder
    p.close()
    assert _labels(folder)                                 # integrity_check passes
    again = Project.open(folder)                           # reopening clears what the killed worker left
    try:
        assert len([r for r in again.images(mid) if r.score is not None]) == len(rows)
        assert not list((folder / "maps").rglob(".*.tmp"))
    finally:
        again.close()


# -- a second window, a read-only folder --------------------------------------------------------

def _project_with_results(folder: Path, data_root: Path):
    """A project with a model (a stand-in file: nothing here loads it), results and labels."""
    import numpy as np

    from inspector.project import Project

    data = make_mvtec(data_root / "weave", n_train=4, n_good=3, n_bad=3, size=32)
    p = Project.create(folder, name="Weave line 3")
    p.add_mvtec(data)
    f = p.new_model_path("m")
    f.write_bytes(b"not read here")
    mid = p.add_model("weave-v1", f, "patchcore", "resnet18", 0.5, 0.4, {})
    items = [(r.id, 0.8 if r.label == "anomalous" else 0.2, "anomalous" if r.label == "anomalous" else "normal",
              np.full((32, 32), 0.8 if r.label == "anomalous" else 0.2, np.float32))
             for r in p.images(split="test")]
    p.add_results(mid, items)
    return p, mid


HOLDER = r"""
import sys
from inspector.project import Project
p = Project.open(sys.argv[1])
print("read-only" if p.read_only else "owner", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "label":
        p.set_label(int(cmd[1]), cmd[2])
        print("done", flush=True)
    else:
        break
p.close()
print("closed", flush=True)
"""


def _python_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]))


def test_a_second_window_gets_a_read_only_view(window, qtbot, tmp_path):
    import socket
    import subprocess
    import sys

    from inspector.gui.main_window import MainWindow

    p, mid = _project_with_results(tmp_path / "p", tmp_path)
    folder = p.folder
    p.close()
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=_python_env())
    try:
        assert other.stdout.readline().strip() == "owner"
        assert window.open_path(folder)
        ro = window.project
        assert ro.read_only
        banner = window.read_only_banner
        assert banner.isVisible()
        text = banner.text.text()
        assert f"Open in another Inspector window (pid {other.pid} on {socket.gethostname()}): read-only" in text
        assert " (read-only)" in window.windowTitle()
        for a in (window.act_train, window.act_add_good, window.act_add_test, window.act_inspect):
            assert not a.isEnabled()
        window.grab().save(str(tmp_path / "read-only-window.png"))

        # marking in Review: one clear message, nothing written
        window.tabs.setCurrentWidget(window.review)
        window.review.reload()
        window.review.queue.setCurrentRow(0)
        target = window.review.current_id()
        before = _labels(folder).get(target)
        window.review.setFocus()
        qtbot.keyClick(window.review, Qt.Key_N)
        assert "not saved: read-only here: open in another Inspector window" in window.message.text.text()
        assert window.message.kind == "error"
        assert _labels(folder).get(target) == before

        # the owner goes on writing; the read-only view sees it
        other.stdin.write(f"label {target} good\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "done"
        assert ro.label(target) == ("good", "operator")

        # a window in this same process is read-only too
        w2 = MainWindow()
        qtbot.addWidget(w2)
        assert w2.open_path(folder) and w2.project.read_only
        w2.close()
    finally:
        other.stdin.write("quit\n")
        other.stdin.flush()
        other.wait(30)
    assert not window.project.read_only or window.reopen_for_changes()
    assert not window.project.read_only and not window.read_only_banner.isVisible()
    assert window.act_add_good.isEnabled()
    window.project.set_label(target, "anomalous")
    assert _labels(folder)[target] == "anomalous"


def _leave_wal(folder: Path, image_id: int, label: str) -> None:
    """A process that commits a label and dies without closing: the label is only in the WAL."""
    import subprocess
    import sys

    code = ("import os, sys\nfrom inspector.project import Project\n"
            f"p = Project.open(sys.argv[1])\np.set_label({image_id}, {label!r})\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=_python_env())
    assert (folder / (DB + "-wal")).stat().st_size > 0


class _ReadOnlyFolder:
    """Make a folder read-only for real: a read-only bind mount when root (root ignores file
    modes), else file modes."""

    def __init__(self, folder: Path):
        self.folder, self.how = folder, None

    def __enter__(self):
        import subprocess

        if not hasattr(os, "geteuid"):
            pytest.skip("read-only folders are tested on Linux and macOS")
        if os.geteuid() == 0:
            ok = subprocess.run(["mount", "--bind", str(self.folder), str(self.folder)],
                                capture_output=True).returncode == 0
            if ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(self.folder)],
                                     capture_output=True).returncode == 0:
                self.how = "mount"
                return self
            if ok:
                subprocess.run(["umount", str(self.folder)], capture_output=True)
            pytest.skip("running as root and cannot make a read-only bind mount here")
        for path in [self.folder, *self.folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        self.how = "modes"
        return self

    def __exit__(self, *exc):
        import subprocess

        if self.how == "mount":
            if subprocess.run(["umount", str(self.folder)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.folder)], check=True)    # never leave it mounted
                raise AssertionError(f"something still had a file open in {self.folder}")
        elif self.how == "modes":
            for path in [self.folder, *self.folder.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.parametrize("left", ["closed", "wal", "wal-without-shm"])
def test_a_read_only_folder_opens_read_only_and_can_be_reported(window, tmp_path, capsys, left):
    import hashlib

    from inspector.cli import main
    from inspector.project import Project, ProjectError
    from inspector.reports.pdf_report import export_pdf

    p, mid = _project_with_results(tmp_path / "p", tmp_path)
    folder = p.folder
    target = p.review_queue(mid)[0].id
    p.close()
    if left != "closed":
        _leave_wal(folder, target, "good")       # a crash left this label only in the WAL
        if left == "wal-without-shm":
            (folder / (DB + "-shm")).unlink()
    digest = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir() if f.is_file()}
    out = tmp_path / "out"
    out.mkdir()
    with _ReadOnlyFolder(folder):
        ro = Project.open(folder)
        try:
            assert ro.read_only and ro.read_only_reason.startswith("the project folder cannot be written")
            assert ro.label(target) == (("good", "operator") if left != "closed" else ("anomalous", "dataset"))
            with pytest.raises(ProjectError, match="read-only here"):
                ro.set_label(target, "anomalous")
            assert export_pdf(ro, out / "report.pdf") >= 2
        finally:
            ro.close()
        assert main(["report", str(folder), "-o", str(out / "cli.pdf"), "-q"]) == 0
        assert (out / "cli.pdf").read_bytes().startswith(b"%PDF")
        assert window.open_path(folder)
        assert window.project.read_only and window.read_only_banner.isVisible()
        assert "The project folder cannot be written" in window.read_only_banner.text.text()
        window.close_project()
        with pytest.raises(ProjectError, match="cannot open .* for changes"):
            Project.open(folder, read_only=False)
    assert {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir() if f.is_file()} == digest
    capsys.readouterr()


# -- a full disk ------------------------------------------------------------------------------

class _FullDisk:
    """The project's SQLite connection on a full disk: every write statement fails as SQLite's own
    does ("database or disk is full"), reads work."""

    def __init__(self, conn):
        self._conn = conn

    def _check(self, sql: str):
        if sql.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE", "COMMIT", "REPLACE"):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, *args):
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _enospc(*args, **kwargs):
    import errno
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_on_set_label_is_one_message_and_changes_nothing(window, qtbot, tmp_path):
    from inspector.project import Project, StorageError

    p, mid = _project_with_results(tmp_path / "p", tmp_path)
    target = p.review_queue(mid)[0].id
    before = p.label(target)
    conn = p._conn
    p._conn = _FullDisk(conn)
    with pytest.raises(StorageError) as err:
        p.set_label(target, "good")
    assert str(err.value).startswith(f"cannot write the project database ({p.folder / DB}): the disk is full; "
                                     "nothing was changed. Free some space")
    p._conn = conn
    assert p.label(target) == before
    folder = p.folder
    p.close()

    # the same in the window: a message in the bar, the queue stays on the part
    assert window.open_path(folder)
    wp = window.project
    window.tabs.setCurrentWidget(window.review)
    r = window.review
    r.reload()
    r.queue.setCurrentRow(0)
    current = r.current_id()
    conn = wp._conn
    wp._conn = _FullDisk(conn)
    r.setFocus()
    qtbot.keyClick(r, Qt.Key_N)
    wp._conn = conn
    assert window.message.isVisible() and window.message.kind == "error"
    assert window.message.text.text().startswith("cannot write the project database")
    assert "unexpected error" not in window.message.text.text()
    assert r.current_id() == current and wp.label(current) == before
    assert r.undo_stack.count() == 0
    window.close_project()
    assert _labels(folder)[current] == before[0]


def test_full_disk_on_save_mask_leaves_no_partial_file(window, tmp_path, monkeypatch):
    import numpy as np

    from inspector.project import StorageError

    p, mid = _project_with_results(tmp_path / "p", tmp_path)
    target = next(r for r in p.images(split="test") if r.label is None or r.label == "good").id
    first = np.zeros((32, 32), bool)
    first[2:8, 2:8] = True
    p.save_mask(target, first)
    saved = (p.folder / "masks" / f"{target}.png").read_bytes()
    label = p.label(target)
    second = np.zeros((32, 32), bool)
    second[10:30, 10:30] = True
    with monkeypatch.context() as m:
        m.setattr(os, "write", _enospc)
        with pytest.raises(StorageError, match=r"cannot write .*masks.*: the disk is full; nothing was changed"):
            p.save_mask(target, second)
    assert sorted(f.name for f in (p.folder / "masks").iterdir()) == [f"{target}.png"]
    assert (p.folder / "masks" / f"{target}.png").read_bytes() == saved and p.label(target) == label
    # the database refusing (after the file was staged) leaves no file either
    conn = p._conn
    p._conn = _FullDisk(conn)
    with pytest.raises(StorageError):
        p.save_mask(target, second)
    p._conn = conn
    assert sorted(f.name for f in (p.folder / "masks").iterdir()) == [f"{target}.png"]
    assert (p.folder / "masks" / f"{target}.png").read_bytes() == saved
    folder = p.folder
    p.close()

    # in the window: the message, and the viewer shows the saved mask again
    assert window.open_path(folder)
    window.browser.select(target)
    with monkeypatch.context() as m:
        m.setattr(os, "write", _enospc)
        window.save_mask(target, second)
    assert window.message.kind == "error" and "the disk is full" in window.message.text.text()
    assert window.viewer.row.id == target


def test_full_disk_on_report_is_one_line_and_leaves_no_file(window, qtbot, tmp_path, monkeypatch, capsys):
    from matplotlib.backends import backend_pdf

    from inspector.cli import main
    from inspector.gui.workers import JobWorker
    from inspector.project import StorageError
    from inspector.reports.pdf_report import ReportJob, export_pdf

    p, mid = _project_with_results(tmp_path / "p", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(backend_pdf.PdfFile, "write", _enospc)
    with pytest.raises(StorageError, match="the disk is full; nothing was changed"):
        export_pdf(p, out / "report.pdf")
    assert list(out.iterdir()) == []
    worker = JobWorker(ReportJob(p, out / "report.pdf", mid))     # the window's job, in a thread here
    with qtbot.waitSignal(worker.failed, timeout=60000) as failed:
        worker.start()
    assert failed.args[0].startswith(f"cannot write {out / 'report.pdf'}: the disk is full")
    assert list(out.iterdir()) == []
    folder = p.folder
    p.close()
    capsys.readouterr()
    assert main(["report", str(folder), "-o", str(out / "report.pdf"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inspector: error: cannot write") and "disk is full" in err
    assert "Traceback" not in err and list(out.iterdir()) == []


def test_a_real_full_disk(tmp_path, capsys):
    """The same on a real full disk: a 1 MiB tmpfs (Linux, root only; skipped elsewhere)."""
    import errno
    import subprocess

    import numpy as np

    from inspector.cli import main
    from inspector.project import Project, StorageError
    from inspector.reports.pdf_report import export_pdf

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        p, mid = _project_with_results(disk / "p", tmp_path)
        target = p.review_queue(mid)[0].id
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        before = p.label(target)
        with pytest.raises(StorageError, match="the disk is full; nothing was changed"):
            p.set_label(target, "good")
        assert p.label(target) == before
        mask = np.zeros((32, 32), bool)
        mask[4:20, 4:20] = True
        with pytest.raises(StorageError, match="masks.*the disk is full"):
            p.save_mask(target, mask)
        assert list((p.folder / "masks").iterdir()) == []
        with pytest.raises(StorageError, match="report.pdf: the disk is full"):
            export_pdf(p, disk / "report.pdf")
        assert main(["report", str(p.folder), "-o", str(disk / "cli.pdf"), "-q"]) == 2
        assert "the disk is full" in capsys.readouterr().err
        assert sorted(f.name for f in disk.iterdir()) == ["filler", "p"]
        (disk / "filler").unlink()
        p.set_label(target, "good")                       # space again: it saves
        p.close()
        assert _labels(disk / "p")[target] == "good"       # and integrity_check passes
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)

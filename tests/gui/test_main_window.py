"""The real main window, driven like an operator would: project, wizard, viewer, review, reopen."""

import hashlib
import time

import pytest
from PySide6.QtCore import Qt, QTimer

from inspector.project.training_run import train_project_model


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_images(qtbot, window, n=None):
    qtbot.waitUntil(lambda: window.browser.thumbs.pending() == 0, timeout=10000)


def start_wizard(window, qtbot, name="tiny"):
    wiz = window.open_wizard()
    assert wiz is not None and wiz.isVisible()
    wiz.data_page.name.setText(name)
    wiz.next()                                  # → method and backbone
    mp = wiz.method_page
    mp.backbone.setCurrentIndex(mp.backbone.findData("resnet18"))
    mp.random.setChecked(True)                  # tests only: explicitly random weights
    wiz.next()                                  # → options
    op = wiz.options_page
    op.size.setValue(64)
    assert list(op.fields) == ["coreset_ratio"]            # PatchCore's own options, from the catalog
    assert op.fields["coreset_ratio"].value() == pytest.approx(0.1)
    assert op.threshold.currentData() == "mean+3std"
    return wiz


def test_start_page_new_open_recent(window, tmp_path):
    assert window.stack.currentWidget() is window.start_page
    assert window.new_project(tmp_path / "p1")
    assert window.stack.currentWidget() is window.tabs
    assert "p1" in window.windowTitle()
    window.close_project()
    assert window.stack.currentWidget() is window.start_page
    item = window.start_page.recent.item(0)
    assert item.data(Qt.UserRole).endswith("p1")
    window.start_page.recentChosen.emit(item.data(Qt.UserRole))
    assert window.project is not None and window.project.folder.name == "p1"


def test_errors_are_messages_in_the_window(window, tmp_path):
    assert not window.open_path(tmp_path / "nowhere")
    assert window.message.isVisible() and "not found" in window.message.text.text()
    window.new_project(tmp_path / "p")
    assert not window.add_images(tmp_path, "mvtec")
    assert "not in MVTec layout" in window.message.text.text()
    window.close_project()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "inspector.db").write_bytes(b"junk" * 50)
    assert not window.open_path(tmp_path / "broken")
    assert "not a readable project database" in window.message.text.text()


def test_open_image_folder_makes_a_project(window, dataset):
    assert window.open_path(dataset)
    assert window.project.counts()["total"] == 17
    assert window.project.name == "weave"
    folder = window.project.folder
    window.close_project()
    assert window.open_path(dataset)            # the same folder reopens the same project
    assert window.project.folder == folder and window.project.counts()["total"] == 17


def test_browser_filters_counts_and_unreadable_mark(window, dataset, qtbot, tmp_path):
    window.new_project(tmp_path / "p")
    window.add_images(dataset, "mvtec")
    b = window.browser
    assert b.model.rowCount() == 17
    assert "17</b> shown of 17" in b.counts.text()
    b.split.setCurrentIndex(b.split.findData("train"))
    assert b.model.rowCount() == 10
    b.split.setCurrentIndex(0)
    b.label.setCurrentIndex(b.label.findData("anomalous"))
    assert b.model.rowCount() == 4
    for row in range(b.model.rowCount()):        # ask for every thumbnail, as painting does
        b.model.data(b.model.index(row), Qt.DecorationRole)
    wait_images(qtbot, window)
    qtbot.waitUntil(lambda: window.project.counts()["unreadable"] == 1)
    b.refresh()
    assert "unreadable 1" in b.counts.text()
    bad = [r for r in b.model.rows if r.readable is False]
    assert len(bad) == 1 and "not a readable image" in bad[0].error
    assert "cannot be read" in b.model.data(b.model.index(b.model.row_of(bad[0].id)), Qt.ToolTipRole)
    assert len(list((window.project.folder / "cache" / "thumbs").glob("*.png"))) == 3   # disk cache


def test_train_view_review_reopen(window, dataset, qtbot, tmp_path):
    window.new_project(tmp_path / "p")
    window.add_images(dataset, "mvtec")
    wiz = start_wizard(window, qtbot)

    gaps, last = [], [time.monotonic()]

    def beat():
        t = time.monotonic()
        gaps.append(t - last[0])
        last[0] = t

    wiz.next()                                  # → training starts in a worker process
    run = wiz.run_page
    assert run.state == "running"
    last[0] = time.monotonic()                  # from here on, while the training runs
    heartbeat = QTimer(interval=20, timeout=beat)
    heartbeat.start()
    qtbot.waitUntil(lambda: run.state != "running", timeout=120000)
    heartbeat.stop()
    assert run.state == "done", run.error.text()
    # the training runs in a worker process: the window's event loop keeps turning.  The bound is
    # about blocking (training on the GUI thread stops it for the whole run), not speed: a loaded
    # 2-core machine delays a timer by up to a second now and then.
    assert max(gaps) < 2.0, f"the window froze for {max(gaps):.3f} s"
    assert wiz.currentPage() is wiz.result_page
    text = wiz.result_page.summary.text()
    assert "Threshold" in text and "AUROC" in text
    assert len(wiz.result_page.histogram.series["held-out normal"]) > 0
    wiz.accept()

    p = window.project
    mid = p.current_model_id
    assert mid is not None and window.model_combo.currentData() == mid
    assert p.counts(mid)["not_inspected"] == 10 + 1       # train images and the unreadable one

    # viewer: an anomalous test image shows an overlay; the threshold slider flips its verdict
    blob = [r for r in p.images(mid, label="anomalous") if r.score is not None][0]
    window.browser.select(blob.id)
    v = window.viewer
    assert v.row.id == blob.id and v.amap is not None
    assert not v.overlay.pixmap().isNull() and v.overlay.isVisible()
    assert v.verdict.text() in ("ANOMALOUS", "NORMAL")
    v.set_threshold(blob.score * 0.5)
    assert v.current_verdict == "anomalous" and v.verdict.text() == "ANOMALOUS"
    qtbot.waitUntil(lambda: not v.outline.path().isEmpty())
    v.threshold_slider.setValue(v.threshold_slider.maximum())
    assert v.current_verdict == "normal" and v.verdict.text() == "NORMAL"
    v.show_overlay.setChecked(False)
    assert not v.overlay.isVisible()
    v.show_overlay.setChecked(True)
    z = v.view.zoom
    v.view.zoom_by(1.25)
    assert v.view.zoom == pytest.approx(z * 1.25)
    v.view.fit()

    # review: the flagged parts, highest score first; A, N, arrows, Ctrl+Z
    window.tabs.setCurrentWidget(window.review)
    r = window.review
    p.set_image_threshold(mid, min(s for s, _ in p.scores(mid)))  # flag every inspected part
    r.reload()
    n = len(r.rows)
    assert n >= 4
    scores = [row.score for row in r.rows]
    assert scores == sorted(scores, reverse=True)
    assert r.queue.currentRow() == 0 and f"{n} of {n}" in r.left.text()
    first, second = r.rows[0].id, r.rows[1].id
    r.setFocus()
    qtbot.keyClick(r, Qt.Key_A)
    assert p.label(first) == ("anomalous", "operator")
    assert r.queue.currentRow() == 1
    qtbot.keyClick(r, Qt.Key_N)
    assert p.label(second) == ("good", "operator")
    assert f"{n - 2} of {n}" in r.left.text()
    qtbot.keyClick(r, Qt.Key_Z, Qt.ControlModifier)
    assert p.label(second)[1] == "dataset"          # back to what the dataset said
    assert r.queue.currentRow() == 1
    qtbot.keyClick(r, Qt.Key_Right)
    assert r.queue.currentRow() == 2
    qtbot.keyClick(r, Qt.Key_Left)
    qtbot.keyClick(r, Qt.Key_N)
    assert p.label(second) == ("good", "operator")
    labels = {row.id: p.label(row.id) for row in p.images()}

    # export, close, reopen: the same labels and results
    assert window.export(tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().startswith("path,score,verdict,label,model,threshold,time")
    assert window.act_report.isEnabled()
    job = window.export_report(tmp_path / "report.pdf")       # in a worker process, like training
    assert job is not None and not window.act_report.isEnabled()
    qtbot.waitUntil(lambda: window.job is None, timeout=60000)
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "Wrote the report" in window.statusBar().currentMessage()
    folder = p.folder
    window.close_project()
    assert window.open_path(folder)
    p2 = window.project
    assert {row.id: p2.label(row.id) for row in p2.images()} == labels
    assert p2.current_model_id == mid
    window.tabs.setCurrentWidget(window.review)
    assert f"{n - 2} of {n}" in window.review.left.text()
    window.browser.select(blob.id)
    assert window.viewer.amap is not None and not window.viewer.overlay.pixmap().isNull()


def test_wizard_asks_for_enough_good_images(window, qtbot, tmp_path):
    from inspector.project.demo import make_folder

    window.new_project(tmp_path / "p")
    window.add_images(make_folder(tmp_path / "few", n=4, n_bad=0), "train")
    wiz = window.open_wizard()
    page = wiz.data_page
    assert not page.isComplete() and "at least 5 good images" in page.summary.text()
    window.add_images(make_folder(tmp_path / "more", n=1, n_bad=0, seed=7), "train")
    wiz.reject()
    qtbot.waitUntil(lambda: window.wizard is None)
    wiz = window.open_wizard()
    text = wiz.data_page.summary.text()
    assert wiz.data_page.isComplete() and "at least" not in text
    assert "Only 5 good images" in text and "uncertain" in text     # it trains, with a caveat
    wiz.reject()
    qtbot.waitUntil(lambda: window.wizard is None)
    window.add_images(make_folder(tmp_path / "many", n=15, n_bad=0, seed=8), "train")
    wiz = window.open_wizard()
    assert wiz.data_page.isComplete() and "uncertain" not in wiz.data_page.summary.text()
    wiz.reject()
    qtbot.waitUntil(lambda: window.wizard is None)


def test_cancel_training_keeps_the_old_model(window, dataset, qtbot, tmp_path):
    window.new_project(tmp_path / "p")
    window.add_images(dataset, "mvtec")
    p = window.project
    old = train_project_model(p, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                  "resize": 64}, name="old", inspect_test=False)
    window._model_changed()
    old_file = p.model_file(p.model(old.model_id))
    before = sha(old_file)
    files_before = sorted(x.name for x in (p.folder / "models").iterdir())

    wiz = start_wizard(window, qtbot, name="new")
    run = wiz.run_page
    wiz.next()
    qtbot.waitUntil(lambda: run.bar.maximum() > 0 or run.state != "running", timeout=60000)
    run.cancel_button.click()
    # The worker asks the job to stop and kills the process after 2 s; the bound here is generous
    # because the test asserts behaviour (cancelled, not finished; nothing written), not speed.
    qtbot.waitUntil(lambda: run.state != "running", timeout=15000)
    assert run.state == "cancelled"
    assert "previous model" in run.stage.text()
    assert [m.id for m in p.models()] == [old.model_id]
    assert p.current_model_id == old.model_id
    assert sha(old_file) == before
    assert sorted(x.name for x in (p.folder / "models").iterdir()) == files_before
    wiz.reject()
    qtbot.waitUntil(lambda: window.wizard is None)


def test_inspect_folder_in_a_worker(window, dataset, qtbot, tmp_path):
    from inspector.project.demo import make_folder

    window.new_project(tmp_path / "p")
    window.add_images(dataset, "mvtec")
    train_project_model(window.project, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                         "resize": 64}, name="m", inspect_test=False)
    window._model_changed()
    folder = make_folder(tmp_path / "line", n=5, n_bad=2, size=96)
    job = window.inspect_folder(folder)
    assert job is not None and window.job_status.isVisible()
    qtbot.waitUntil(lambda: window.job is None, timeout=60000)
    mid = window.project.current_model_id
    rows = [r for r in window.project.images(mid) if "line" in r.path]
    assert len(rows) == 5 and all(r.score is not None for r in rows)
    assert "Inspected 5 images" in window.message.text.text()
    assert window.project.load_map(rows[0]) is not None


def _double(x, job=None):
    return 2 * x


def test_a_jobs_result_reaches_the_window_on_the_window_thread(window, qtbot):
    # PySide6 runs a lambda connected to a worker's signal on the worker's thread; the window
    # must hand results to on_done on its own thread, where widgets may be touched.
    from PySide6.QtCore import QThread
    seen = []
    window.run_job("Doubling", _double, 21,
                   on_done=lambda r: seen.append((r, QThread.currentThread() is window.thread())))
    qtbot.waitUntil(lambda: window.job is None, timeout=60000)
    assert seen == [(42, True)]


def test_export_dialogs_propose_a_file_in_the_project_and_pass_the_choice_on(window, tmp_path, monkeypatch):
    from inspector.gui import main_window as mw
    window.new_project(tmp_path / "p")
    asked, done = [], []

    def fake_dialog(parent, title, default, file_filter):
        asked.append((title, default, file_filter))
        return str(tmp_path / "chosen"), file_filter

    monkeypatch.setattr(mw.QFileDialog, "getSaveFileName", staticmethod(fake_dialog))
    monkeypatch.setattr(window, "export", lambda path: done.append(("csv", path)))
    monkeypatch.setattr(window, "export_report", lambda path, line=None, lot=None: done.append(("pdf", path)))

    def details(dialog):                      # the report's line and lot, asked first
        dialog.line.setText("L3")
        return mw.QDialog.Accepted

    monkeypatch.setattr(mw.ReportDetails, "exec", details)
    window.ask_export()
    window.ask_report()
    name = window.project.name
    assert [a[1] for a in asked] == [str(tmp_path / "p" / f"{name}-results.csv"),
                                     str(tmp_path / "p" / f"{name}-report.pdf")]
    assert done == [("csv", str(tmp_path / "chosen")), ("pdf", str(tmp_path / "chosen"))]

"""Issue #16, the viewer's part: no state carried from one project to the next, what the viewer
says about masks and counts, its drawing (ground truth outlined, no tint where nothing is
anomalous, a brush outline), Fill's feedback, and the layouts that clipped or overlapped."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from inspector.project.training_run import train_project_model

TINY = {"method": "patchcore", "backbone": "resnet18", "random_weights": True, "resize": 64}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
    """A project with a model, built once: tests copy it."""
    from inspector.project import Project
    folder = tmp_path_factory.mktemp("trained") / "a"
    p = Project.create(folder)
    p.add_mvtec(dataset)
    train_project_model(p, TINY, name="tiny-a v12 for line 3, night shift")    # a long name (the dropdown)
    p.close()
    return folder


def copy_project(src, dst):
    import shutil
    shutil.copytree(src, dst)
    (dst / "inspector.lock").unlink(missing_ok=True)
    return dst


def test_nothing_of_project_a_is_left_in_project_b(window, trained, qtbot, tmp_path):
    a = copy_project(trained, tmp_path / "a")
    assert window.open_path(a)
    p = window.project
    mid = p.current_model_id
    row = [r for r in p.images(mid, split="test") if r.score is not None][0]
    window.browser.select(row.id)
    v = window.viewer
    assert v.row.id == row.id and v.model is not None
    v.set_tool("brush")
    v.painter.paint([(10, 10), (30, 30)])
    assert "Mask:" in v.mask_info.text()
    assert v.threshold_title.text().startswith("Threshold: ")
    window.close_project()
    assert window.new_project(tmp_path / "b")
    for viewer in (window.viewer, window.review.viewer):
        assert viewer.row is None and viewer.model is None and viewer.threshold is None
        assert viewer.mask_info.text() == ""
        assert viewer.model_label.text() in ("–", "no model yet")
        assert viewer.thresholds.text() == "–" and viewer.threshold_title.text() == "Threshold"
        assert viewer.score.text() == "–" and viewer.label.text() == "–" and viewer.name.text() == ""
        assert viewer.base.pixmap().isNull() and viewer.overlay.pixmap().isNull()
        assert viewer.painter.mask is None
    assert window.model_combo.currentData() is None
    assert window.browser.model.rowCount() == 0


def _buttons_fit(widget):
    from PySide6.QtWidgets import QAbstractButton
    clipped = [(b.text(), b.width(), b.sizeHint().width()) for b in widget.findChildren(QAbstractButton)
               if b.isVisible() and b.text() and b.width() < b.sizeHint().width()]
    return clipped


def test_layouts_do_not_clip_or_overlap(window, trained, qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication
    window.resize(1280, 800)
    # the start page: the tip below the recent projects, not over them
    window.settings.add_recent(str(tmp_path / "somewhere"))
    window.start_page.set_recent(window.settings.recent_projects())
    QApplication.processEvents()
    sp = window.start_page
    assert sp.hint.isVisible()
    assert sp.hint.geometry().top() >= sp.recent.geometry().bottom(), "the tip overlaps the recent projects"
    assert sp.card.geometry().bottom() >= sp.hint.geometry().bottom()
    # the message bar's close button shows its ✕ whole
    window.show_info("something to say")
    QApplication.processEvents()
    close = window.message.close_button
    assert close.isVisible() and close.text()
    assert close.sizeHint().width() <= close.width() and close.sizeHint().height() <= close.height()

    # a project without a model first: the dropdown is first shown with "no model yet", and must
    # still grow for the model names that come later
    assert window.new_project(tmp_path / "empty")
    QApplication.processEvents()
    p = window.open_path(copy_project(trained, tmp_path / "a")) and window.project
    mid = p.current_model_id
    QApplication.processEvents()
    # the model's whole name in the dropdown
    combo = window.model_combo
    assert combo.width() >= combo.sizeHint().width()
    assert combo.fontMetrics().horizontalAdvance(combo.currentText()) < combo.width() - 20
    assert combo.itemData(combo.currentIndex(), Qt.ToolTipRole) == combo.currentText()
    # the viewer: no clipped button ("Eraser"), and the image gets the space
    row = [r for r in p.images(mid, split="test") if r.score is not None][0]
    window.browser.select(row.id)
    QApplication.processEvents()
    assert _buttons_fit(window.viewer) == []
    assert window.viewer.view.width() >= 500, f"the image gets {window.viewer.view.width()} px of 1280"
    # the review queue: no horizontal scroll bar, the operator's mark in view
    window.tabs.setCurrentWidget(window.review)
    r = window.review
    p.set_image_threshold(mid, min(s for s, _ in p.scores(mid)))
    r.reload()
    r.mark("good")
    QApplication.processEvents()
    q = r.queue
    assert not q.horizontalScrollBar().isVisible()
    text = q.item(0).text()
    assert "✘ false alarm" in q.fontMetrics().elidedText(text, Qt.ElideMiddle, q.viewport().width() - 8)
    from inspector.gui.review import item_text
    t = item_text(5.45, "contamination/013.png", "✘ false alarm")        # a real MVTec name, whole
    assert q.fontMetrics().horizontalAdvance(t) < q.viewport().width() - 8


def test_thumbnail_names_tell_defect_types_apart():
    from PySide6.QtGui import QFontMetrics, QFont
    from inspector.gui.browser import CELL, elided_lines
    from inspector.project.store import ImageRow

    def row(path):
        return ImageRow(1, path, "test", None, True, None, None, None, None)

    fm = QFontMetrics(QFont())
    width = CELL.width() - 14
    large = elided_lines(row("/d/bottle/test/broken_large/004.png"), fm, width)
    small = elided_lines(row("/d/bottle/test/broken_small/004.png"), fm, width)
    assert large != small
    assert large[1] == small[1] == "004.png"
    long = elided_lines(row("/d/test/a_very_long_defect_type_name_here/000123456789.png"), fm, width)
    assert "…" in long[0] and long[0].startswith("a_v") and long[0].endswith("re")      # elided in the middle


def test_histogram_threshold_label_stays_in_the_plot():
    from PySide6.QtCore import QRectF
    from inspector.gui.charts import threshold_label_rect
    plot = QRectF(40, 12, 300, 140)
    for x in (40, 200, 330, 340):
        box, _ = threshold_label_rect(plot, x, 60, 14)
        assert plot.left() <= box.left() and box.right() <= plot.right() + 0.01, x


def test_viewer_colour_brush_fill_mask_text_and_counts(window, trained, qtbot, tmp_path):
    from PySide6.QtGui import QImage
    assert window.open_path(copy_project(trained, tmp_path / "a"))
    p = window.project
    mid = p.current_model_id
    v = window.viewer
    # counts: "not inspected" counts the images to inspect, not the training images
    c = p.counts(mid)
    pending = len(p.images(mid, split="test", verdict="none"))
    assert c["not_inspected"] > pending
    assert f"test not inspected {pending}" in window.browser.counts.text()
    assert f"not inspected {c['not_inspected']}" not in window.browser.counts.text()

    # colour only near and above the pixel threshold: a normal area shows no tint
    row = [r for r in p.images(mid, split="test") if r.score is not None][0]
    window.browser.select(row.id)
    amap = v.amap
    assert amap is not None
    v.amap = np.zeros_like(amap)
    v._redraw_map()
    img = v.overlay.pixmap().toImage().convertToFormat(QImage.Format_RGBA8888)
    assert img.hasAlphaChannel() and img.pixelColor(img.width() // 2, img.height() // 2).alpha() == 0
    v.amap = np.full_like(amap, 3.0 * v.pixel_threshold)
    v._redraw_map()
    img = v.overlay.pixmap().toImage().convertToFormat(QImage.Format_RGBA8888)
    c0 = img.pixelColor(img.width() // 2, img.height() // 2)
    assert c0.alpha() == 255 and c0.red() > 120 and c0.blue() < 60          # red, the scale kept
    v.amap = np.zeros_like(amap)
    v.colour_all.setChecked(True)                                           # the whole map, on request
    img = v.overlay.pixmap().toImage().convertToFormat(QImage.Format_RGBA8888)
    c0 = img.pixelColor(img.width() // 2, img.height() // 2)
    assert c0.alpha() == 255 and c0.blue() > 100
    v.colour_all.setChecked(False)

    # the brush's outline follows the mouse, with its size
    v.set_tool("brush")
    v.brush_size.setValue(10)
    vp = v.view.viewport()
    qtbot.mouseMove(vp, vp.rect().center())
    qtbot.waitUntil(lambda: v.painter.cursor.isVisible())
    assert v.painter.cursor.rect().width() == pytest.approx(20)
    v.brush_size.setValue(5)
    assert v.painter.cursor.rect().width() == pytest.approx(10)
    v.set_tool("pan")
    assert not v.painter.cursor.isVisible()

    # Fill on a painted pixel: fills the inside of the outline clicked on, or says why not
    said = []
    window.statusBar().messageChanged.connect(lambda t: said.append(t))
    v.set_tool("brush")
    v.brush_size.setValue(1)
    square = [(10, 10), (40, 10), (40, 40), (10, 40), (10, 10)]
    v.painter.paint(square)
    before = int(v.mask.sum())
    v.set_tool("fill")
    assert v.painter.fill_at(10, 25) > 0                                    # on the outline: inside filled
    assert v.mask[25, 25] and int(v.mask.sum()) > before
    assert said and said[-1].startswith("Filled")
    assert v.painter.fill_at(25, 25) == 0                                   # solid now: nothing to fill
    assert "no hole" in window.statusBar().currentMessage()
    v.painter.clear()
    v.set_tool("brush")
    v.painter.paint([(5, 5), (20, 5)])
    v.set_tool("fill")
    assert v.painter.fill_at(50, 50) == 0                                   # not closed: says so
    assert "not closed" in window.statusBar().currentMessage()

    # a painted mask reads "painted by operator", also on an image the dataset gave a mask
    bad = [r for r in p.labelled_anomalies() if r.mask_path and r.label_source == "dataset" and r.id != row.id][0]
    window.browser.select(bad.id)
    qtbot.waitUntil(lambda: v.row is not None and v.row.id == bad.id)
    assert "mask from dataset" in v.label.text()
    v.set_tool("brush")
    v.brush_size.setValue(4)
    v.painter.paint([(3, 3), (12, 12)])
    assert v.row.label_source == "operator"
    assert "mask painted by operator" in v.label.text() and "dataset" not in v.label.text()


def test_pdf_report_export_asks_line_and_lot_and_keeps_them(window, trained, tmp_path, monkeypatch):
    from inspector.gui import main_window as mw
    from inspector.reports.pdf_report import SETTING_LINE, SETTING_LOT
    assert window.open_path(copy_project(trained, tmp_path / "a"))
    p = window.project
    p.set_setting(SETTING_LINE, "L2")
    jobs = []
    monkeypatch.setattr(window, "run_job", lambda title, job, on_done=None: jobs.append(job) or job)
    monkeypatch.setattr(mw.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a: (str(tmp_path / "r.pdf"), "PDF files (*.pdf)")))
    seen = []

    def details(dialog):
        seen.append((dialog.line.text(), dialog.lot.text()))    # the project's defaults proposed
        dialog.line.setText("L3 ")
        dialog.lot.setText("2026-48-A")
        return mw.QDialog.Accepted

    monkeypatch.setattr(mw.ReportDetails, "exec", details)
    window.ask_report()
    assert seen == [("L2", "")]
    (job,) = jobs
    assert (job.line, job.lot, job.path) == ("L3", "2026-48-A", str(tmp_path / "r.pdf"))
    assert (p.setting(SETTING_LINE), p.setting(SETTING_LOT)) == ("L3", "2026-48-A")
    data, _ = job.prepare()
    assert (data.line, data.lot) == ("L3", "2026-48-A")
    monkeypatch.setattr(mw.ReportDetails, "exec", lambda dialog: mw.QDialog.Rejected)
    window.ask_report()                                           # cancelled: no report
    assert len(jobs) == 1


def test_message_bar_colours_follow_its_kind(window):
    window.show_error("no")
    red = window.message.text.palette().color(window.message.text.foregroundRole()).name()
    window.show_info("yes")
    blue = window.message.text.palette().color(window.message.text.foregroundRole()).name()
    assert (red, blue) == ("#611a15", "#0d3c61")

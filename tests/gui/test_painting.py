"""Mask painting: the numpy canvas, and the viewer's brush, eraser, fill, undo and redo on a real window."""

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from inspector.gui.painting import MaskCanvas, iter_line


# -- the canvas (no Qt) ---------------------------------------------------------------------------

def test_canvas_stroke_erase_fill_clear():
    c = MaskCanvas((40, 60))
    assert c.empty
    assert c.stroke([(10, 10), (30, 10)], radius=2)
    assert c.mask[10, 10:31].all() and c.mask[8:13, 20].all() and not c.mask[14, 20]
    assert not c.mask[10, 33]
    assert c.erase([(20, 10)], radius=3)
    assert not c.mask[10, 18:23].any() and c.mask[10, 12] and c.mask[10, 28]
    assert not c.erase([(50, 30)], radius=3)          # nothing there: no change
    assert c.clear() and c.empty and not c.clear()


def test_canvas_fill_closed_region_only():
    c = MaskCanvas((50, 50))
    ring = [(10, 10), (40, 10), (40, 40), (10, 40), (10, 10)]
    c.stroke(ring, radius=1)
    inside = c.fill(25, 25)
    assert inside == 27 * 27                          # the inside of the square ring
    assert c.mask[11:40, 11:40].all() and not c.mask[5, 5]
    assert c.fill(25, 25) == 0                        # already painted
    assert c.fill(99, 99) == 0                        # outside the image
    assert c.fill(2, 2) == 0                          # the open background around it: left alone
    assert not c.mask[5, 5]
    c.clear()
    c.stroke([(0, 10), (49, 10)], radius=0)           # a line across the top: a closed strip
    assert c.fill(5, 3) == 10 * 50 and c.mask[:10].all()


def test_canvas_takes_masks_of_another_size():
    m = np.zeros((10, 10), np.uint8)
    m[:5] = 255
    c = MaskCanvas((20, 20), m)
    assert c.mask.dtype == bool and c.mask[:10].all() and not c.mask[10:].any()


# -- the viewer in the main window ----------------------------------------------------------------

@pytest.fixture
def opened(window, tmp_path, dataset):
    assert window.new_project(tmp_path / "proj")
    assert window.add_images(dataset, "mvtec")
    return window


def _drag(qtbot, viewer, points):
    view = viewer.view
    vp = view.viewport()
    pts = [view.mapFromScene(QPointF(x, y)) for x, y in points]
    qtbot.mousePress(vp, Qt.LeftButton, pos=pts[0])
    for p in pts[1:]:
        qtbot.mouseMove(vp, p)
    qtbot.mouseRelease(vp, Qt.LeftButton, pos=pts[-1])


def _good_test_row(w):
    return next(r for r in w.project.images(split="test", label="good") if r.readable is not False)


def test_paint_erase_fill_undo_redo_and_reopen(qtbot, opened, tmp_path):
    w, v = opened, opened.viewer
    row = _good_test_row(w)
    w.browser.select(row.id)
    qtbot.waitUntil(lambda: v.row is not None and v.row.id == row.id)
    assert v.mask is not None and not v.mask.any()

    v.set_tool("brush")
    v.brush_size.setValue(3)
    _drag(qtbot, v, list(iter_line((20, 20), (70, 20), 5)))
    m = v.mask.copy()
    assert m[20, 25:65].all() and not m[40, 40]
    r = w.project.image(row.id)
    assert (r.label, r.label_source) == ("anomalous", "operator")        # painting labels the image
    saved = w.project.load_mask(r)
    np.testing.assert_array_equal(saved, m)                             # saved as soon as the stroke ends
    assert "mask painted by operator" in v.label.text()

    v.set_tool("eraser")
    _drag(qtbot, v, [(45, 20), (46, 20)])
    assert not v.mask[20, 45] and v.mask[20, 25]
    assert w.project.load_mask(w.project.image(row.id))[20, 45] == False  # noqa: E712

    v.set_tool("brush")                                                 # a closed ring, then fill it
    ring = [(20, 40), (70, 40), (70, 80), (20, 80), (20, 40)]
    _drag(qtbot, v, [p for a, b in zip(ring, ring[1:]) for p in iter_line(a, b, 4)])
    v.set_tool("fill")
    _drag(qtbot, v, [(45, 60)])
    assert v.mask[45:75, 25:65].all()
    filled = v.mask.copy()
    assert v.painter.undo_stack.count() == 4

    qtbot.keyClick(v, Qt.Key_Z, Qt.ControlModifier)                    # undo the fill
    assert not v.mask[60, 45] and v.mask[40, 45]
    qtbot.keyClick(v, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)  # redo it
    np.testing.assert_array_equal(v.mask, filled)
    np.testing.assert_array_equal(w.project.load_mask(w.project.image(row.id)), filled)

    v.clear_button.click()
    assert not v.mask.any() and w.project.image(row.id).mask_path is None
    v.undo_button.click()
    np.testing.assert_array_equal(v.mask, filled)

    folder = w.project.folder                                           # close and reopen the project
    w.close_project()
    assert w.open_path(folder)
    w.browser.select(row.id)
    qtbot.waitUntil(lambda: v.row is not None and v.row.id == row.id)
    np.testing.assert_array_equal(v.mask, filled)
    assert w.project.image(row.id).label == "anomalous"


def test_undoing_every_stroke_puts_the_label_back(qtbot, opened):
    w, v = opened, opened.viewer
    row = _good_test_row(w)
    w.browser.select(row.id)
    qtbot.waitUntil(lambda: v.row is not None and v.row.id == row.id)
    v.set_tool("brush")
    _drag(qtbot, v, [(30, 30), (40, 40)])
    assert w.project.image(row.id).label_source == "operator"
    v.painter.undo()
    r = w.project.image(row.id)
    assert (r.label, r.label_source, r.mask_path) == ("good", "dataset", None)
    assert not v.mask.any()


def test_mvtec_masks_show_in_the_viewer(qtbot, opened):
    w, v = opened, opened.viewer
    bad = [r for r in w.project.labelled_anomalies() if r.mask_path]
    assert bad
    w.browser.select(bad[0].id)
    qtbot.waitUntil(lambda: v.row is not None and v.row.id == bad[0].id)
    assert v.mask is not None and 0 < v.mask.sum() < v.mask.size
    # the dataset's mask is outlined, not filled: the heat map under it stays readable (issue #16)
    assert v.painter.outline.isVisible() and not v.painter.outline.path().isEmpty()
    assert not v.painter.item.isVisible() and not v.painter.item.pixmap().isNull()
    assert "mask from dataset" in v.label.text()
    v.fill_mask.setChecked(True)
    assert v.painter.item.isVisible()
    v.show_mask.setChecked(False)
    assert not v.painter.item.isVisible() and not v.painter.outline.isVisible()

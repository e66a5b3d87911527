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
    train_project_model(p, TINY, name="tiny-a")
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

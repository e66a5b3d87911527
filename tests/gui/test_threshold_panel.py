"""The threshold panel: live confusion matrix on the confirmed labels, suggestions, "Keep"."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from inspector.core.confusion import confusion_at
from inspector.gui.threshold_panel import SLIDER_STEPS, ThresholdPanel
from inspector.project import Project
from inspector.project.demo import make_mvtec
from inspector.project.training_run import train_project_model

TINY = {"method": "patchcore", "backbone": "resnet18", "random_weights": True, "resize": 64}


@pytest.fixture(scope="module")
def scored_project(tmp_path_factory):
    """A project whose model scored 5 good and 5 defective labelled test parts."""
    root = tmp_path_factory.mktemp("thr")
    data = make_mvtec(root / "weave", n_train=10, n_good=5, n_bad=5, size=96)
    p = Project.create(root / "proj")
    p.add_mvtec(data)
    outcome = train_project_model(p, dict(TINY))
    p.close()
    return root / "proj", outcome.model_id


def _cells(panel):
    return {k: int(lab.text().split("</b>")[0].rsplit(">", 1)[-1]) for k, lab in panel.cells.items()}


def test_moving_the_threshold_changes_the_matrix_live(qtbot, scored_project):
    folder, mid = scored_project
    p = Project.open(folder)
    try:
        panel = ThresholdPanel()
        qtbot.addWidget(panel)
        panel.set_project(p, mid)
        scores = [(s, lab) for s, lab in p.scores(mid)]
        s = np.array([x for x, _ in scores])
        y = np.array([1 if lab == "anomalous" else 0 for _, lab in scores])
        # at the model's own threshold: the engine's count of the labelled results
        c = confusion_at(s, y, p.model(mid).image_threshold)
        assert _cells(panel) == {"caught": c.caught, "missed": c.missed, "false_alarms": c.false_alarms,
                                 "passed": c.passed}
        # the slider at its lowest flags everything, at its highest nothing: the cells follow it
        panel.slider.setFocus()
        qtbot.keyClick(panel.slider, Qt.Key_Home)
        assert panel.slider.value() == 0
        assert _cells(panel) == {"caught": 5, "missed": 0, "false_alarms": 5, "passed": 0}
        assert "Precision 50.0%" in panel.scores_line.text() and "Recall 100.0%" in panel.scores_line.text()
        qtbot.keyClick(panel.slider, Qt.Key_End)
        assert panel.slider.value() == SLIDER_STEPS
        assert _cells(panel) == {"caught": 0, "missed": 5, "false_alarms": 0, "passed": 5}
        assert panel.histogram.threshold == pytest.approx(panel.value)
        # somewhere in between, the matrix is the engine's count at the slider's value
        panel.slider.setValue(SLIDER_STEPS // 2)
        c = confusion_at(s, y, panel.value)
        assert _cells(panel) == {"caught": c.caught, "missed": c.missed, "false_alarms": c.false_alarms,
                                 "passed": c.passed}
        assert panel.rule == "manual" and panel.keep.isEnabled()
        # suggestions: miss no confirmed defect leaves no defect passed; best F1 is the best count
        panel.rule_buttons["miss no confirmed defect"].click()
        assert _cells(panel)["missed"] == 0 and panel.value == pytest.approx(s[y == 1].min())
        normal = p.model(mid).meta["calibration"]["image_scores"]
        panel.rule_buttons["normals only"].click()
        assert panel.value == pytest.approx(np.mean(normal) + 3 * np.std(normal))
        assert panel.value == pytest.approx(p.model(mid).image_threshold)    # the rule training used:
        assert not panel.keep.isEnabled()                                    # nothing new to keep
        panel.rule_buttons["best F1"].click()
        best = max(confusion_at(s, y, t).f1 for t in s)
        assert confusion_at(s, y, panel.value).f1 == pytest.approx(best)
        # Keep asks for a new version with the value and the rule
        with qtbot.waitSignal(panel.keepRequested) as sig:
            panel.keep.click()
        model_id, value, rule, detail = sig.args
        assert (model_id, rule) == (mid, "best F1") and value == pytest.approx(panel.value)
        assert "false alarms" in detail
        panel.reset.click()
        assert panel.value == pytest.approx(p.model(mid).image_threshold) and not panel.keep.isEnabled()
    finally:
        p.close()


def test_without_labelled_scores_the_panel_says_what_to_do(qtbot, tmp_path):
    p = Project.create(tmp_path / "empty")
    try:
        panel = ThresholdPanel()
        qtbot.addWidget(panel)
        panel.set_project(p, None)
        assert "train one first" in panel.heading.text() and not panel.keep.isEnabled()
    finally:
        p.close()

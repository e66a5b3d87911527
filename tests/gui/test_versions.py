"""Model versions in a project and in the window: good images added from Review, a threshold kept,
the versions list and "Use this version"; the parent always stays."""

import math

import numpy as np
import pytest

from inspector.core.modelfile import load_model, read_metadata
from inspector.gui.versions import VersionsPanel
from inspector.project import Project
from inspector.project.demo import make_mvtec
from inspector.project.training_run import train_project_model
from inspector.project.versions import keep_threshold, update_project_model, version_rows

TINY = {"method": "patchcore", "backbone": "resnet18", "random_weights": True, "resize": 64}


def _data(tmp_path):
    """Generated parts, and among the good test parts two of a brighter kind training never showed:
    false alarms that the model can learn."""
    import cv2
    data = make_mvtec(tmp_path / "weave", n_train=10, n_good=4, n_bad=4, size=96)
    for i in range(2):
        img = cv2.imread(str(data / "train" / "good" / f"{i:03d}.png"))
        cv2.imwrite(str(data / "test" / "good" / f"new-{i}.png"), cv2.add(img, 70)[:, ::-1])
    return data


@pytest.fixture
def project(tmp_path):
    data = _data(tmp_path)
    p = Project.create(tmp_path / "proj")
    p.add_mvtec(data)
    yield p
    if not p.closed:
        p.close()


def test_versions_in_the_project_keep_their_parent(project):
    p = project
    v1 = train_project_model(p, dict(TINY)).model_id
    parent_file = p.model_file(p.model(v1))
    parent_bytes = parent_file.read_bytes()
    good = [r for r in p.images(v1, split="test", order="score") if r.label == "good"]   # new kind first
    assert "new-" in good[0].path and "new-" in good[1].path

    # good parts added: a new version, inspected, current; the parent file and row stay
    out = update_project_model(p, v1, image_ids=[good[0].id, good[1].id])
    v2 = out.model_id
    assert p.current_model_id == v2 and out.change == "added 2 normal images"
    assert p.model_versions()[v2] == (v1, "added 2 normal images")
    assert parent_file.read_bytes() == parent_bytes and p.model(v1).path != p.model(v2).path
    assert len(p.scores(v2)) == len(p.scores(v1))                    # it inspected the test images
    lin = read_metadata(p.model_file(p.model(v2)))["lineage"]
    assert lin["version"] == 2 and sorted(lin["history"][0]["images"]) == sorted([good[0].path, good[1].path])
    before = {r.id: r.score for r in p.images(v1)}
    after = {r.id: r.score for r in p.images(v2)}
    assert after[good[0].id] < before[good[0].id] and after[good[1].id] < before[good[1].id]
    assert p.model(v2).image_threshold != p.model(v1).image_threshold      # set again, with their scores

    # a part labelled defect is never learnt
    bad = next(r for r in p.images(v2) if r.label == "anomalous")
    with pytest.raises(Exception, match="only good parts"):
        update_project_model(p, v2, image_ids=[bad.id])

    # a threshold kept: a new version with the same scores, verdicts at the new value, an audit line
    t = float(np.median([s for s, _ in p.scores(v2)]))
    out3 = keep_threshold(p, v2, t, "best F1", "best F1 0.9 on 8 labelled images")
    assert p.model(v2).image_threshold != t
    v3 = out3.model_id
    assert p.current_model_id == v3 and p.model(v3).image_threshold == pytest.approx(t)
    s2 = {r.id: r.score for r in p.images(v2) if r.score is not None}
    rows3 = [r for r in p.images(v3) if r.score is not None]
    assert {r.id: r.score for r in rows3} == pytest.approx(s2)
    assert all(r.verdict == ("anomalous" if r.score >= t else "normal") for r in rows3)
    assert all(r.map_path and (p.folder / r.map_path).is_file() for r in rows3)
    m3 = load_model(p.model_file(p.model(v3)))
    assert m3.image_threshold.value == pytest.approx(t) and m3.image_threshold.method == "f1-optimal"
    hist = m3.meta["lineage"]["history"]
    assert [h["version"] for h in hist] == [2, 3] and hist[-1]["rule"] == "best F1" and hist[-1]["who"]

    rows = {v.model.id: v for v in version_rows(p)}
    assert rows[v1].parent is None and rows[v1].change == "trained"
    assert rows[v3].parent.id == v2 and rows[v3].version == 3 and rows[v3].change.startswith("threshold set")
    assert set(rows[v3].metrics) >= {"image_auroc", "f1"}

    # the PDF report of the version has its history page: who added what, who set the threshold
    from inspector.reports.pdf_report import export_pdf, history_lines
    lines = history_lines(p.model(v3))
    assert lines[0].startswith("v2 ") and "added 2 normal images" in lines[0]
    assert any("images: new-" in line for line in lines)
    assert any(line.startswith("v3 ") and "threshold set to" in line for line in lines)
    assert any("rule: best F1" in line for line in lines)
    pages_v3 = export_pdf(p, p.folder / "v3.pdf", v3)
    pages_v1 = export_pdf(p, p.folder / "v1.pdf", v1)
    flagged = lambda m: sum(r.verdict == "anomalous" for r in p.images(m))          # noqa: E731
    assert pages_v3 - pages_v1 == 1 + (math.ceil(flagged(v3) / 6) - math.ceil(flagged(v1) / 6)) \
        + (math.ceil(flagged(v3) / 40) - math.ceil(flagged(v1) / 40))

    # the parent can go: the versions made from it keep their results and maps
    p.delete_model(v2)
    assert p.model_versions()[v3] == (None, p.model_versions()[v3][1])
    assert all((p.folder / r.map_path).is_file() for r in p.images(v3) if r.map_path)


def test_versions_panel_lists_and_switches(qtbot, project):
    p = project
    v1 = train_project_model(p, dict(TINY)).model_id
    v2 = keep_threshold(p, v1, 0.5, "manual").model_id
    panel = VersionsPanel()
    qtbot.addWidget(panel)
    panel.set_project(p)
    assert panel.table.rowCount() == 2
    texts = [[panel.table.item(r, c).text() for c in range(panel.table.columnCount())] for r in range(2)]
    assert texts[0][0].endswith("(in use)") and texts[0][2] == p.model(v1).name
    assert texts[0][3] == "threshold set to 0.5" and texts[1][3] == "trained"
    assert "rule: manual" in panel.history.text()
    panel.table.selectRow(1)
    assert panel.use.isEnabled()
    with qtbot.waitSignal(panel.modelAdopted) as sig:
        panel.use.click()
    assert sig.args == [v1]


def test_review_adds_false_alarms_and_the_threshold_tab_keeps_one(window, qtbot, tmp_path):
    data = _data(tmp_path)
    window.new_project(tmp_path / "proj")
    window.add_images(data, "mvtec")
    p = window.project
    v1 = train_project_model(p, dict(TINY)).model_id
    p.set_image_threshold(v1, min(s for s, _ in p.scores(v1)))        # flag every part: a full queue
    window._model_changed()
    review = window.review
    window.tabs.setCurrentWidget(review)
    assert not review.add_button.isEnabled()
    good = [i for i, r in enumerate(review.rows) if r.label == "good"]
    review.queue.setCurrentRow(good[0])
    review.mark("good")                                               # N: a false alarm
    assert review.add_button.isEnabled() and review.add_button.text() == "Add 1 false alarm to model"
    review.add_button.click()
    qtbot.waitUntil(lambda: window.job is None, timeout=180000)
    v2 = p.current_model_id
    assert v2 != v1 and p.model_versions()[v2][0] == v1
    assert "added 1 normal image" in window.message.text.text()
    assert any(m.id == v1 for m in p.models())                        # the old version stays
    # the operator moved the threshold in the viewer; the new version kept their value
    assert p.model(v2).image_threshold == pytest.approx(p.model(v1).image_threshold)

    window.tabs.setCurrentWidget(window.threshold_panel)
    panel = window.threshold_panel
    assert panel.model_id == v2 and panel.sweep is not None
    panel.rule_buttons["miss no confirmed defect"].click()
    value = panel.value
    panel.keep.click()
    qtbot.waitUntil(lambda: window.job is None, timeout=60000)
    v3 = p.current_model_id
    assert v3 not in (v1, v2) and p.model(v3).image_threshold == pytest.approx(value)
    assert p.model_versions()[v3][0] == v2
    window.tabs.setCurrentWidget(window.versions)
    assert window.versions.table.rowCount() == 3
    assert "(in use)" in window.versions.table.item(0, 0).text()
    window.versions.table.selectRow(2)
    window.versions.use.click()                                        # back to the first version
    assert p.current_model_id == v1 and math.isfinite(p.model(v1).image_threshold)

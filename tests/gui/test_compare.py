"""APC in the wizard (offered only with labelled anomalies) and the comparison of two models."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from inspector.core.pipeline.training import TrainSettings
from inspector.gui.compare import ComparePanel
from inspector.project.compare import better, compare_models
from inspector.gui.wizard import TrainWizard, anomalies_text
from inspector.project import Project
from inspector.project.demo import make_folder, make_mvtec
from inspector.project.training_run import train_project_model

TINY = dict(backbone="resnet18", random_weights=True, resize=32)    # the smallest frame: plumbing, not accuracy


# -- the wizard ---------------------------------------------------------------------------------

def _methods(wiz):
    return [wiz.method_page.method.itemData(i) for i in range(wiz.method_page.method.count())]


def test_wizard_offers_apc_only_with_labelled_anomalies(qtbot, tmp_path):
    from inspector.gui.app import create_app
    from inspector.gui.settings import Settings

    create_app()
    make_folder(tmp_path / "good", n=6, n_bad=0)
    make_folder(tmp_path / "parts", n=5, n_bad=0, seed=3)
    p = Project.create(tmp_path / "proj")
    try:
        p.add_folder(tmp_path / "good", "train")
        p.add_folder(tmp_path / "parts", "test")
        wiz = TrainWizard(p, Settings())
        qtbot.addWidget(wiz)
        assert "apc" not in _methods(wiz)
        assert "appears here once images are labelled anomalous" in wiz.method_page.anomalies.text()

        parts = p.images(split="test")
        m = np.zeros((96, 96), bool)
        m[10:30, 10:30] = True
        p.save_mask(parts[0].id, m)                      # painted: anomalous with a mask
        p.save_mask(parts[1].id, m)
        p.set_label(parts[2].id, "anomalous")            # marked in the review: no mask
        wiz = TrainWizard(p, Settings())
        qtbot.addWidget(wiz)
        assert "apc" in _methods(wiz)
        mp = wiz.method_page
        mp.method.setCurrentIndex(mp.method.findData("apc"))
        text = mp.anomalies.text()
        assert "3 anomalous images labelled, 2 with masks" in text
        assert "the 1 without masks still help the classification head" in text
        assert mp.uses_anomalies
        # the split: 3 labelled defects are all kept for judging by default, so APC cannot go on
        assert mp.judged.value() == 3 and mp.judged.maximum() == 3
        assert "<b>0</b> for training, <b>3</b> for judging" in mp.split_text.text()
        mp.random.setChecked(True)                       # no weights here: the plumbing only
        wiz.show()
        wiz.data_page.name.setText("apc-1")
        wiz.next()
        wiz.next()
        assert wiz.currentPage() is mp and "all are kept for judging" in mp.split_error.text()
        mp.judged.setValue(1)                            # the operator trains on 2, judges on 1
        assert "<b>2</b> for training, <b>1</b> for judging" in mp.split_text.text()
        assert "the metrics will say little" in mp.split_text.text()
        wiz.next()
        assert wiz.currentPage() is wiz.options_page
        from inspector.project.splits import anomaly_split
        assert len(anomaly_split(p).train) == 2 and p.setting("anomaly_split_judged") == "1"
        op = wiz.options_page
        epochs = op.fields["epochs"]
        assert epochs.isVisibleTo(op) and epochs.value() == 3      # APCOptions' default
        epochs.setValue(1)
        d = wiz.run_page.settings_dict()
        assert d["method"] == "apc" and d["options"] == {"epochs": 1, "coreset_ratio": pytest.approx(0.1)}
        wiz.back()
        assert wiz.currentPage() is mp
        mp.method.setCurrentIndex(mp.method.findData("patchcore"))
        assert not mp.uses_anomalies and "choose APC" in mp.anomalies.text()
        wiz.next()
        assert not epochs.isVisibleTo(op) and list(wiz.run_page.settings_dict()["options"]) == ["coreset_ratio"]
        wiz.close()
    finally:
        p.close()


def test_anomalies_text_counts():
    assert anomalies_text(12, 9).startswith("12 anomalous images labelled, 9 with masks; the 3 without masks "
                                            "still help the classification head")
    assert "only the classification head" in anomalies_text(2, 0)
    assert "without masks" not in anomalies_text(4, 4)


# -- two real models ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """PatchCore (inspected) and APC fine-tuned on the labelled anomalies (not inspected yet)."""
    root = tmp_path_factory.mktemp("cmp")
    data = make_mvtec(root / "cat", n_train=10, n_good=3, n_bad=4, size=64)
    p = Project.create(root / "proj")
    p.add_mvtec(data)
    pc = train_project_model(p, TrainSettings(method="patchcore", **TINY), name="pc")
    apc = train_project_model(p, TrainSettings(method="apc", options={"epochs": 1}, **TINY), name="apc",
                              inspect_test=False, use_labelled_anomalies=True)
    folder = p.folder
    p.close()
    return folder, pc.model_id, apc.model_id


def test_apc_training_uses_the_labelled_anomalies(two_models):
    folder, pc_id, apc_id = two_models
    p = Project.open(folder)
    try:
        meta = p.model(apc_id).meta
        from inspector.project.splits import anomaly_split
        anomalous = {r.id for r in p.labelled_anomalies()}
        split = anomaly_split(p)                     # 4 labelled: 1 for training, 3 kept for judging
        assert len(anomalous) == 4 and (len(split.train), len(split.judge)) == (1, 3)
        assert set(meta["trained_on_anomalies"]) == split.train_set
        assert meta["n_train"] <= 10                # good train images only (less the held-out ones)
        assert "trained_on_anomalies" not in p.model(pc_id).meta
    finally:
        p.close()


def test_compare_models_function(two_models, tmp_path):
    folder, pc_id, apc_id = two_models
    p = Project.open(folder)
    try:
        c = compare_models(p, pc_id, apc_id)
        assert len(c.rows) == 7 and not c.missing_a and len(c.missing_b) == 7
        assert c.excluded == set(p.model(apc_id).meta["trained_on_anomalies"])
        assert c.metrics_a == {} and c.n_compared == 0     # B has not scored anything yet
    finally:
        p.close()


def test_compare_panel_inspects_missing_then_shows_metrics_and_adopts(qtbot, window, two_models, tmp_path):
    import shutil

    folder, pc_id, apc_id = two_models
    mine = tmp_path / "proj"
    shutil.copytree(folder, mine)
    w = window
    assert w.open_path(mine)
    # an extra, unseen defect labelled by painting a mask (of the 4 dataset defects 1 trained APC,
    # 3 are kept for judging; 5 labelled keep 3 for judging, so the new one is for training)
    extra = make_folder(tmp_path / "extra", n=1, n_bad=1, size=64, seed=9)
    w.add_images(extra, "test")
    new = next(r for r in w.project.images(split="test") if "extra" in r.path)
    w.project.save_mask(new.id, np.ones((64, 64), bool))

    w.tabs.setCurrentWidget(w.compare)
    cp: ComparePanel = w.compare
    assert cp.combo_a.currentData() == pc_id and cp.combo_b.currentData() == apc_id
    assert cp.table.rowCount() == 8
    assert [cp.table.item(i, 4).text() for i in range(8)] == ["–"] * 8       # B has not scored any
    assert len(cp.comparison.missing_a) == 1 and len(cp.comparison.missing_b) == 8
    assert cp.inspect_button.isEnabled()
    cp.inspect_button.click()                 # the inspection worker, for A then for B
    assert w.job is not None
    qtbot.waitUntil(lambda: w.job is None and not cp.comparison.missing_a and not cp.comparison.missing_b,
                    timeout=120_000)
    c = cp.comparison
    assert all(ra[0] is not None and rb[0] is not None for _, ra, rb in c.rows)
    shown = sorted(float(cp.table.item(i, 4).text()) for i in range(8))
    assert shown == pytest.approx(sorted(float(f"{rb[0]:.4g}") for _, _, rb in c.rows))
    # metrics on the labelled images kept for judging, neither model was fine-tuned on: 3 good + 3 defects
    assert c.split.judge_set.isdisjoint(c.trained_on) and new.id in c.split.train_set
    assert c.n_compared == 6 and "left out of the metrics" in cp.note.text()
    assert "held back for judging (3 scored by both" in cp.note.text()
    labels = {cp.table.item(i, 0).data(Qt.UserRole): cp.table.item(i, 1).text() for i in range(8)}
    assert labels[new.id] == "anomalous (for training)"
    assert all(labels[i] == "anomalous (trained on)" for i in c.trained_on)
    assert all(labels[i] == "anomalous (for judging)" for i in c.split.judge)
    m_a, m_b = c.metrics_a, c.metrics_b
    assert m_a["n_labelled"] == m_b["n_labelled"] == 6
    assert 0.0 <= m_a["image_auroc"] <= 1.0 and 0.0 <= m_b["image_auroc"] <= 1.0
    assert cp.metric_labels[("a", "image_auroc")].text() == f"{m_a['image_auroc']:.3f}"
    assert cp.metric_labels[("b", "f1")].text() == f"{m_b['f1']:.3f}"
    for key in ("image_auroc", "missed"):        # the better figure is in bold, by the project's rule
        for side, v, other in (("a", m_a[key], m_b[key]), ("b", m_b[key], m_a[key])):
            assert ("bold" in cp.metric_labels[(side, key)].styleSheet()) == better(key, v, other)

    current = w.project.current_model_id
    other = pc_id if current == apc_id else apc_id
    button = cp.use_a if cp.combo_a.currentData() == other else cp.use_b
    button.click()
    assert w.project.current_model_id == other
    assert w.model_combo.currentData() == other

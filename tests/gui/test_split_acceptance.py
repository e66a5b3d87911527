"""Issue #16's acceptance check of the labelled-defect split, for real: a project made from
../shared's MVTec bottle (63 labelled defects), APC trained in the wizard with the MobileNetV2
ImageNet weights fine-tunes on the 31 defects for training, and its result page and Compare show
image AUROC on the 32 held back for judging (with the 20 good test images).  Renders both to PNGs
(``INSPECTOR_SHOTS`` or the test's tmp folder).  Skipped when ../shared is absent."""

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from helpers import SHARED, SHARED_WEIGHTS
from inspector.project.splits import anomaly_split

pytestmark = [pytest.mark.shared, pytest.mark.slow]

BOTTLE = SHARED / "data" / "mvtec_ad" / "bottle"


def _train(window, qtbot, name, method, options):
    wiz = window.open_wizard()
    wiz.data_page.name.setText(name)
    wiz.next()
    mp = wiz.method_page
    mp.method.setCurrentIndex(mp.method.findData(method))
    mp.backbone.setCurrentIndex(mp.backbone.findData("mobilenet_v2"))
    mp.random.setChecked(False)
    mp.weights.setText(str(SHARED_WEIGHTS))
    wiz.next()
    op = wiz.options_page
    assert wiz.currentPage() is op
    op.size.setValue(128)                      # small frames, 1 epoch: the check is about which defects
    op.crop.setValue(0)
    for key, value in options.items():
        op.fields[key].setValue(value)
    wiz.next()
    run = wiz.run_page
    qtbot.waitUntil(lambda: run.state != "running", timeout=1_500_000)
    assert run.state == "done", run.error.text()
    assert wiz.currentPage() is wiz.result_page
    return wiz, run.outcome


def test_apc_in_the_wizard_is_judged_on_the_held_back_bottle_defects(window, qtbot, tmp_path):
    if not BOTTLE.is_dir() or not SHARED_WEIGHTS.is_file():
        pytest.skip(f"../shared's bottle or MobileNetV2 weights are absent ({SHARED})")
    shots = Path(os.environ.get("INSPECTOR_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    window.resize(1280, 860)
    window.new_project(tmp_path / "bottle")
    assert window.add_images(BOTTLE, "mvtec")
    p = window.project
    split = anomaly_split(p)
    assert split.n == 63 and (len(split.train), len(split.judge)) == (31, 32)

    wiz, apc = _train(window, qtbot, "apc", "apc", {"epochs": 1, "coreset_ratio": 0.1})
    assert wiz.method_page.judged.value() == 32
    meta = p.model(apc.model_id).meta
    assert set(meta["trained_on_anomalies"]) == split.train_set          # fine-tuned on those only
    m = apc.metrics
    assert m["n_labelled"] == 20 + 32 and 0.0 <= m["image_auroc"] <= 1.0
    text = wiz.result_page.summary.text()
    assert f"image AUROC <b>{m['image_auroc']:.3f}</b>" in text
    assert "<b>32</b> labelled defects held back for judging and 20 good" in text
    assert "31 labelled defects are for training (fine-tuned on 31 of them)" in text
    wiz.resize(820, 640)
    wiz.grab().save(str(shots / "result-apc.png"))
    wiz.accept()

    wiz, pc = _train(window, qtbot, "patchcore", "patchcore", {"coreset_ratio": 0.1})
    assert pc.metrics["n_labelled"] == 52 and pc.defects_for_training == 31 and pc.trained_on_defects == 0
    wiz.accept()

    window.tabs.setCurrentWidget(window.compare)
    cp = window.compare
    cp.select(pc.model_id, apc.model_id)
    c = cp.comparison
    assert c.metrics_a["n_labelled"] == c.metrics_b["n_labelled"] == 52 and c.n_compared == 52
    assert c.metrics_b["image_auroc"] == pytest.approx(m["image_auroc"])
    assert cp.metric_labels[("b", "image_auroc")].text() == f"{m['image_auroc']:.3f}"
    assert "held back for judging (32 scored by both of the 32" in cp.note.text()
    labels = {cp.table.item(i, 0).data(Qt.UserRole): cp.table.item(i, 1).text() for i in range(cp.table.rowCount())}
    assert sum(v == "anomalous (for judging)" for v in labels.values()) == 32
    assert sum(v == "anomalous (trained on)" for v in labels.values()) == 31
    cp.table.sortItems(1, Qt.AscendingOrder)        # the defects first: "(for judging)", then "(trained on)"
    window.grab().save(str(shots / "compare.png"))
    print(f"APC image AUROC on the 32 held back: {m['image_auroc']:.3f}; PatchCore: {pc.metrics['image_auroc']:.3f}")

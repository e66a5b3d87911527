"""The training wizard reads the method catalog: each method's own options, trained through the real
wizard (in its worker process) and shown in the viewer; a method registered in a test appears too.

PatchCore through the wizard, with its overlay in the viewer: test_main_window.test_train_view_review_reopen.
"""

from dataclasses import dataclass

import pytest

from inspector.core.methods import catalog
from inspector.core.methods.catalog import IMAGE_SIZE, THRESHOLD, MethodInfo, option
from inspector.gui.wizard import TrainWizard
from inspector.gui.settings import Settings

# tiny and fast: what each method lets the operator set on the options page
FAST = {"npad": {"k_channels": 16, "shifts": 0}, "apc": {"epochs": 1, "coreset_ratio": 0.5}}


def _shown_options(op):
    """The option fields the options page shows now, by option name."""
    return {name for fields in op.option_fields.values() for name, w in fields.items() if w.isVisibleTo(op)}


@pytest.mark.parametrize("method", ["npad", "apc"])
def test_the_wizard_trains_each_method_and_the_viewer_shows_its_overlay(window, dataset, qtbot, tmp_path, method):
    window.new_project(tmp_path / "p")
    window.add_images(dataset, "mvtec")         # its test defects are labelled anomalous: APC is offered
    wiz = window.open_wizard()
    wiz.data_page.name.setText(method)
    wiz.next()
    mp = wiz.method_page
    mp.method.setCurrentIndex(mp.method.findData(method))
    assert mp.method.currentData() == method and mp.uses_anomalies == (method == "apc")
    mp.backbone.setCurrentIndex(mp.backbone.findData("resnet18"))
    mp.random.setChecked(True)                  # tests only: explicitly random weights
    if method == "apc":                         # 3 labelled defects are all kept for judging by default:
        mp.judged.setValue(0)                   # here APC learns from all of them (no metrics)
    wiz.next()
    op = wiz.options_page
    op.size.setValue(32)                        # the smallest frame: these tests are about the plumbing
    info = catalog.get(method)
    assert _shown_options(op) == set(info.main_options) == set(FAST[method])
    for name, value in FAST[method].items():
        assert op.fields[name].value() == pytest.approx(info.option(name).default)
        op.fields[name].setValue(value)
    assert wiz.run_page.settings_dict()["options"] == FAST[method]      # its own options only
    wiz.next()
    run = wiz.run_page
    qtbot.waitUntil(lambda: run.state != "running", timeout=300_000)
    assert run.state == "done", run.error.text()
    wiz.accept()

    p = window.project
    mid = p.current_model_id
    assert p.model(mid).method == method and window.model_combo.currentData() == mid
    if method == "apc":                         # the readable images labelled anomalous (not the broken one)
        trained_on = set(p.model(mid).meta["trained_on_anomalies"])
        assert trained_on == {r.id for r in p.labelled_anomalies()} and len(trained_on) == 3
    row = next(r for r in p.images(mid, split="test") if r.score is not None)
    window.browser.select(row.id)
    v = window.viewer
    assert v.row.id == row.id and v.amap is not None
    assert not v.overlay.pixmap().isNull() and v.overlay.isVisible()
    assert v.verdict.text() in ("ANOMALOUS", "NORMAL")
    v.grab().save(str(tmp_path / f"viewer-{method}.png"))


@dataclass
class DummyOptions:
    radius: int = option(2, "how far the dummy looks", minimum=1, maximum=9, label="Look radius")
    smooth: bool = option(True, "smooth the map", label="Smooth")


DUMMY = MethodInfo(name="dummy", label="Dummy", description="a test's own method", options=DummyOptions,
                   implementation="nowhere", main_options=("radius", "smooth"), settings=(IMAGE_SIZE, THRESHOLD))


@pytest.fixture
def dummy_method():
    catalog.register(DUMMY)
    yield DUMMY
    catalog.unregister(DUMMY.name)


def test_a_method_registered_in_the_catalog_appears_in_the_wizard(qtbot, tmp_path, dummy_method):
    from inspector.gui.app import create_app
    from inspector.project import Project
    from inspector.project.demo import make_folder

    create_app()
    make_folder(tmp_path / "good", n=6, n_bad=0)
    p = Project.create(tmp_path / "proj")
    try:
        p.add_folder(tmp_path / "good", "train")
        wiz = TrainWizard(p, Settings())
        qtbot.addWidget(wiz)
        mp = wiz.method_page
        methods = {mp.method.itemData(i): mp.method.itemText(i) for i in range(mp.method.count())}
        assert methods == {"patchcore": "PatchCore: memory bank of good patches",
                           "npad": "N-pad: neighbourhood-aware patch distances",
                           "dummy": "Dummy: a test's own method"}          # APC: no labelled anomalies
        wiz.show()
        wiz.data_page.name.setText("d")
        wiz.next()
        mp.method.setCurrentIndex(mp.method.findData("dummy"))
        assert not mp.backbone.isVisibleTo(mp)       # no backbone among its settings
        wiz.next()
        op = wiz.options_page
        assert _shown_options(op) == {"radius", "smooth"}
        radius = op.fields["radius"]
        assert (radius.minimum(), radius.maximum(), radius.value()) == (1, 9, 2)
        assert radius.toolTip().startswith("How far the dummy looks")
        radius.setValue(5)
        op.fields["smooth"].setChecked(False)
        assert wiz.run_page.settings_dict()["options"] == {"radius": 5, "smooth": False}
        op.validatePage()                                # remembered for the next wizard
        wiz.close()
        again = TrainWizard(p, Settings())
        qtbot.addWidget(again)
        assert again.options_page.option_fields["dummy"]["radius"].value() == 5
        assert again.options_page.option_fields["dummy"]["smooth"].isChecked() is False
        again.close()
    finally:
        p.close()

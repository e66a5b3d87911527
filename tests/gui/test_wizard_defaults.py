"""The wizard's defaults (issue #16): it starts on a backbone whose weights are on this computer,
says in the window's words what to do when they are not, checks a chosen weights file at once,
and keeps its choices per project: a new project starts from the recommended settings, not from
the last experiment in another project."""

import pytest
import torch
import torchvision

from inspector.gui.settings import Settings
from inspector.gui.wizard import CHOICES_KEY, TrainWizard
from inspector.project import Project
from inspector.project.demo import make_folder


@pytest.fixture(autouse=True)
def no_weights_here(tmp_path, monkeypatch):
    """An empty torchvision cache and no INSPECTOR_WEIGHTS: only what a test puts there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("INSPECTOR_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    torch.save(torchvision.models.mobilenet_v2().state_dict(), d / "mobilenet.pth")
    torch.save(torchvision.models.resnet18().state_dict(), d / "resnet18.pth")
    (d / "notes.pth").write_text("these are not weights\n" * 100)
    return d


@pytest.fixture
def make_project(tmp_path):
    from inspector.gui.app import create_app

    create_app()
    opened = []

    def make(name):
        make_folder(tmp_path / f"{name}-good", n=6, n_bad=0, size=32)
        p = Project.create(tmp_path / name)
        p.add_folder(tmp_path / f"{name}-good", "train")
        opened.append(p)
        return p

    yield make
    for p in opened:
        p.close()


def _wizard(qtbot, project):
    wiz = TrainWizard(project, Settings())
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.data_page.name.setText("m")
    wiz.next()
    assert wiz.currentPage() is wiz.method_page
    return wiz


def test_without_weights_anywhere_the_wizard_says_what_to_do_in_its_own_words(qtbot, make_project):
    wiz = _wizard(qtbot, make_project("p"))
    mp = wiz.method_page
    assert mp.backbone.currentData() == "wide_resnet50_2"       # none has weights: the best one
    assert mp.browse.text() == "Choose a weights file…"
    hint = mp.hint.text()
    assert "are not on this computer" in hint and "Choose a weights file" in hint
    assert "--weights" not in hint and "--random-weights" not in hint
    assert mp.download.isVisibleTo(mp)
    wiz.next()
    assert wiz.currentPage() is mp                              # refused at once, not after training starts
    mp.download.setChecked(True)                                # or: fetch them when training starts
    wiz.next()
    assert wiz.currentPage() is wiz.options_page


def test_the_wizard_starts_on_a_backbone_whose_weights_are_here(qtbot, make_project, weight_files):
    Settings().set_weights_file("mobilenet_v2", str(weight_files / "mobilenet.pth"))
    wiz = _wizard(qtbot, make_project("p"))
    mp = wiz.method_page
    assert mp.backbone.currentData() == "mobilenet_v2"
    assert mp.backbone.currentText().endswith("weights on this computer")
    assert mp.weights.text() == str(weight_files / "mobilenet.pth")
    assert "✓" in mp.hint.text() and "weights for MobileNet V2" in mp.hint.text()
    assert not mp.download.isVisibleTo(mp)
    # Wide ResNet-50-2 has none: the page says so and names the backbone that has them
    mp.backbone.setCurrentIndex(mp.backbone.findData("wide_resnet50_2"))
    assert "not on this computer" in mp.hint.text() and "MobileNet V2" in mp.hint.text()
    mp.backbone.setCurrentIndex(mp.backbone.findData("mobilenet_v2"))
    wiz.next()
    assert wiz.currentPage() is wiz.options_page


def test_weights_in_torchvisions_cache_count_as_here(qtbot, make_project, tmp_path):
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "wide_resnet50_2-9ba9bcbe.pth").write_bytes(b"")
    wiz = _wizard(qtbot, make_project("p"))
    mp = wiz.method_page
    assert mp.backbone.currentData() == "wide_resnet50_2" and "are on this computer" in mp.hint.text()
    assert mp.weights.placeholderText().startswith("found: ") and not mp.download.isVisibleTo(mp)


def test_a_chosen_weights_file_is_checked_at_once(qtbot, make_project, weight_files):
    wiz = _wizard(qtbot, make_project("p"))
    mp = wiz.method_page
    mp.backbone.setCurrentIndex(mp.backbone.findData("mobilenet_v2"))
    mp.weights.setText(str(weight_files / "notes.pth"))         # typed or chosen: judged as it is set
    assert "notes.pth is not a weights file" in mp.hint.text() and not mp.weights_ok
    wiz.next()
    assert wiz.currentPage() is mp
    mp.weights.setText(str(weight_files / "resnet18.pth"))
    assert "holds weights for ResNet-18, not MobileNet V2" in mp.hint.text()
    wiz.next()
    assert wiz.currentPage() is mp
    mp.weights.setText(str(weight_files / "mobilenet.pth"))
    assert mp.weights_ok and "✓ mobilenet.pth: weights for MobileNet V2" in mp.hint.text()
    wiz.next()
    assert wiz.currentPage() is wiz.options_page
    assert Settings().weights_file("mobilenet_v2") == str(weight_files / "mobilenet.pth")   # remembered


def test_choices_are_kept_per_project_and_a_new_project_starts_from_the_recommended_ones(
        qtbot, make_project, weight_files):
    Settings().set_weights_file("resnet18", str(weight_files / "resnet18.pth"))
    a = make_project("a")
    wiz = _wizard(qtbot, a)
    mp = wiz.method_page
    assert mp.method.currentData() == "patchcore" and mp.backbone.currentData() == "resnet18"
    mp.method.setCurrentIndex(mp.method.findData("npad"))
    mp.align.setCurrentIndex(mp.align.findData("translation"))
    wiz.next()
    op = wiz.options_page
    assert op.size.value() == 256 and op.threshold.currentData() == "mean+3std"
    op.size.setValue(128)
    op.threshold.setCurrentIndex(op.threshold.findData("f1-optimal") if op.threshold.findData("f1-optimal") >= 0
                                 else 1)
    chosen_threshold = op.threshold.currentData()
    op.fields["k_channels"].setValue(32)
    assert op.validatePage()
    wiz.close()
    assert a.setting(CHOICES_KEY)                               # in the project's database

    again = _wizard(qtbot, a)                                   # the same project: its own choices
    assert again.method_page.method.currentData() == "npad"
    assert again.method_page.align.currentData() == "translation"
    again.next()
    op = again.options_page
    assert op.size.value() == 128 and op.threshold.currentData() == chosen_threshold
    assert op.fields["k_channels"].value() == 32
    again.close()

    fresh = _wizard(qtbot, make_project("b"))                   # a new project: the recommended settings
    mp = fresh.method_page
    assert mp.method.currentData() == "patchcore" and mp.align.currentData() == "none"
    assert mp.backbone.currentData() == "resnet18"              # the one whose weights are here
    fresh.next()
    op = fresh.options_page
    assert op.size.value() == 256 and op.crop.value() == 0 and op.threshold.currentData() == "mean+3std"
    assert op.option_fields["npad"]["k_channels"].value() != 32
    fresh.close()


def test_missing_weights_after_a_failed_download_reads_in_the_windows_words(tmp_path, monkeypatch):
    import pickle

    from inspector.core import backbones
    from inspector.core.errors import InspectorError, WeightsMissingError
    from inspector.gui.workers import describe_error

    def offline(self, *a, **k):
        raise OSError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))             # an empty cache
    monkeypatch.delenv("INSPECTOR_WEIGHTS", raising=False)
    monkeypatch.setattr(type(backbones.REGISTRY["wide_resnet50_2"].weights), "get_state_dict", offline)
    with pytest.raises(WeightsMissingError) as err:
        backbones.load_backbone_module("wide_resnet50_2")
    assert "--weights" in str(err.value) and "no network" in str(err.value)   # the CLI's wording
    shown = describe_error(pickle.loads(pickle.dumps(err.value)))              # as from the worker process
    assert "--" not in shown and "Choose a weights file" in shown
    assert "wide_resnet50_2" in shown and "checkpoints" in shown and "no network" in shown
    assert describe_error(InspectorError("disk full")) == "disk full"          # other messages unchanged

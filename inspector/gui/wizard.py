"""The training wizard: data → method and backbone → options → training (in a worker) → result."""

from __future__ import annotations

import json
import time
from typing import Dict, List, Optional, Tuple

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget,
                               QWizard, QWizardPage)

from ..core.backbone_specs import DEFAULT_BACKBONE, REGISTRY
from ..core.methods import catalog
from ..core.methods.catalog import BACKBONE, MethodInfo, OptionSpec
from ..core.pipeline.holdout import MIN_IMAGES_FOR_THRESHOLDS, threshold_caveat
from ..core.progress import ProgressMeter
from ..core.thresholds import STRATEGIES, STRATEGY_LABELS
from ..core.weights_check import check_weights_file, find_weights
from ..project import Project
from ..project.splits import MIN_JUDGED, anomaly_split, preview, set_judged
from ..project.training_run import TrainOutcome, TrainingJob
from .charts import ScoreHistogram
from .progress import show_on_bar, stage_detail, stage_title
from .settings import Settings
from .workers import JobWorker, ProcessJobWorker

BACKBONES = [(name, spec.label or name) for name, spec in REGISTRY.items()]
ALIGNMENTS = [("none", "None: parts sit in a fixture"),
              ("translation", "Translation: parts shift"),
              ("rigid", "Rigid: parts shift and turn")]
THRESHOLDS = [(name, STRATEGY_LABELS.get(name, name)) for name in STRATEGIES]
CHOICES_KEY = "wizard_choices"      # the project's settings table: what the wizard was last set to here


def backbone_weights(settings: Settings, backbone: str) -> Optional[str]:
    """Where the backbone's ImageNet weights are on this computer (the file remembered for it, the
    environment, torchvision's cache), or None."""
    return find_weights(backbone, settings.weights_file(backbone))[0]


def recommended_backbone(settings: Settings) -> str:
    """The default backbone when its weights are here, else the first one whose weights are."""
    for name in [DEFAULT_BACKBONE] + [n for n in REGISTRY if n != DEFAULT_BACKBONE]:
        if backbone_weights(settings, name):
            return name
    return DEFAULT_BACKBONE


def recommended_choices(settings: Settings) -> dict:
    """What the wizard starts from in a project where it was never used: the recommended settings
    (never another project's last experiment)."""
    return {"method": catalog.DEFAULT_METHOD, "backbone": recommended_backbone(settings), "align": "none",
            "size": 256, "crop": 0, "threshold": "mean+3std", "options": {}}


def project_choices(project: Optional[Project], settings: Settings) -> dict:
    """The wizard's choices kept in this project, over the recommended ones."""
    out = recommended_choices(settings)
    if project is not None:
        try:
            kept = json.loads(project.setting(CHOICES_KEY) or "{}")
        except ValueError:
            kept = {}
        if isinstance(kept, dict):
            out.update({k: v for k, v in kept.items() if v is not None})
    return out


def keep_choices(project: Optional[Project], **changes) -> None:
    """Remember the wizard's choices in the project (nothing for a read-only view)."""
    if project is None or project.read_only:
        return
    try:
        kept = json.loads(project.setting(CHOICES_KEY) or "{}")
    except ValueError:
        kept = {}
    if not isinstance(kept, dict):
        kept = {}
    options = changes.pop("options", None)
    kept.update(changes)
    if options:
        kept.setdefault("options", {}).update(options)
    project.set_setting(CHOICES_KEY, json.dumps(kept, sort_keys=True))


def available_methods(n_anomalies: int = 0) -> List[MethodInfo]:
    """The catalog's methods; those that learn from labelled anomalous images only when the project
    has some (read without importing torch)."""
    return [m for m in catalog.methods() if n_anomalies > 0 or not m.needs_anomalies]


def _anomaly_methods() -> str:
    return " or ".join(m.label for m in catalog.methods() if m.needs_anomalies)


def anomaly_counts(project: Project) -> Tuple[int, int]:
    """(labelled anomalous images, of which with a mask file)."""
    pairs = project.anomaly_pairs()
    return len(pairs), sum(1 for _, m in pairs if m is not None)


def anomalies_text(n: int, with_mask: int) -> str:
    """What APC will use, and what is missing."""
    if n == 0:
        users = _anomaly_methods()
        return (f"{users} (learning from labelled defects too) appears here once images are labelled "
                "anomalous: mark defects in the review queue, or paint them in the viewer." if users else "")
    text = f"{n} anomalous image{'s' if n != 1 else ''} labelled, {with_mask} with masks"
    without = n - with_mask
    if without and with_mask:
        text += (f"; the {without} without masks still help the classification head "
                 "(paint their defects in the viewer to train the segmentation head on them too)")
    elif without:
        text += ("; without masks they train only the classification head: paint the defects in the "
                 "viewer to train the segmentation head too")
    text += (". Only those for training are used for fine-tuning (never as good images); those kept "
             "for judging measure the models.")
    if n < 10:
        text += " The APC paper uses about 10 per part type."
    return text


def advise_on(paths, n_anomalies: int, job=None):
    """The engine's method advisor (run in a worker thread: it reads and registers the images)."""
    from ..core.methods.advisor import advise
    return advise(paths, n_anomalies, job=job)


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class DataPage(QWizardPage):
    def __init__(self, project: Project):
        super().__init__()
        self.project = project
        self.setTitle("Training data")
        self.setSubTitle("The model learns what good parts look like from the images in the train split.")
        lay = QFormLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        lay.addRow(self.summary)
        self.name = QLineEdit()
        lay.addRow("Model name", self.name)
        self.registerField("name*", self.name)
        self._good = 0          # good training images, counted when the page is shown

    def initializePage(self) -> None:
        c = self.project.counts()
        good, bad = self.train_counts()
        self._good = good
        text = (f"<b>{good}</b> good images to learn from"
                + (f" ({bad} unreadable will be skipped)" if bad else "") + ".<br>"
                f"<b>{c['test']}</b> test images will be inspected after training")
        if c["anomalous"]:
            text += f"; {c['anomalous']} are labelled anomalous, so you will see how well the model finds them"
        text += "."
        caveat = threshold_caveat(good)
        if good < MIN_IMAGES_FOR_THRESHOLDS:
            text += (f"<br><span style='color:#c62828'>Training needs at least {MIN_IMAGES_FOR_THRESHOLDS} good "
                     "images: the threshold is set from good images the model did not learn from. "
                     "Add good images to the train split.</span>")
        elif caveat:
            text += f"<br><span style='color:#b26a00'>{caveat[0].upper() + caveat[1:]}.</span>"
        self.summary.setText(text)
        if not self.name.text():
            self.name.setText(f"model-{len(self.project.models()) + 1}")

    def train_counts(self) -> Tuple[int, int]:
        """(good, unreadable) among the training images not labelled anomalous."""
        train = [r for r in self.project.images(split="train") if r.label != "anomalous"]
        bad = sum(1 for r in train if r.readable is False)
        return len(train) - bad, bad

    def isComplete(self) -> bool:
        # called on every keystroke in the name field: uses the count taken by initializePage
        return bool(self.name.text().strip()) and self._good >= MIN_IMAGES_FOR_THRESHOLDS


class MethodPage(QWizardPage):
    def __init__(self, settings: Settings, project: Optional[Project] = None):
        super().__init__()
        self.settings = settings
        self.project = project
        self.n_anomalies, self.n_masks = anomaly_counts(project) if project is not None else (0, 0)
        self.setTitle("Method and backbone")
        self.setSubTitle("The defaults work well for most parts. The backbone needs its ImageNet weights.")
        outer = QVBoxLayout(self)       # the form, then the advisor's sentence (word-wrapped labels whose
        lay = QFormLayout()             # text changes after showing get their height only outside a form)
        outer.addLayout(lay)
        self.method = QComboBox()
        for info in available_methods(self.n_anomalies):
            self.method.addItem(f"{info.label}: {info.description}", info.name)
        lay.addRow("Method", self.method)
        self.anomalies = QLabel(objectName="counts")
        self.anomalies.setWordWrap(True)
        lay.addRow(self.anomalies)
        # the project's split of its labelled defects: for training / kept for judging (project/splits.py)
        self.split = anomaly_split(project) if project is not None and self.n_anomalies else None
        self.judged = QSpinBox()
        self.judged.setObjectName("judged")
        self.judged.setToolTip("How many labelled defects are held back to measure the models (image AUROC); "
                               "the others are for training. The split is kept in the project.")
        self.split_row = QWidget()
        srow = QHBoxLayout(self.split_row)
        srow.setContentsMargins(0, 0, 0, 0)
        srow.addWidget(self.judged)
        self.split_text = QLabel(objectName="counts")
        self.split_text.setWordWrap(True)
        srow.addWidget(self.split_text, 1)
        lay.addRow("Defects kept for judging", self.split_row)
        if self.split is not None:
            self.judged.setRange(0, self.split.n)
            self.judged.setValue(len(self.split.judge))
        self.judged.valueChanged.connect(self._split_changed)
        self.split_error = QLabel()
        self.split_error.setWordWrap(True)
        self.split_error.setStyleSheet("color: #c62828;")
        lay.addRow(self.split_error)
        self.backbone = QComboBox()
        for key, text in BACKBONES:
            here = backbone_weights(settings, key) is not None
            self.backbone.addItem(text + (" · weights on this computer" if here else ""), key)
        lay.addRow("Backbone", self.backbone)
        self.weights_row = QWidget()
        row = QHBoxLayout(self.weights_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.weights = QLineEdit()
        self.browse = QPushButton("Choose a weights file…")
        self.browse.clicked.connect(self._browse)
        row.addWidget(self.weights, 1)
        row.addWidget(self.browse)
        lay.addRow("Weights file", self.weights_row)
        self.download = QCheckBox("Download the ImageNet weights when training starts (needs an internet "
                                  "connection)")
        lay.addRow(self.download)
        self.random = QCheckBox("Random weights (for testing only: the results mean nothing)")
        lay.addRow(self.random)
        self.hint = QLabel(objectName="counts")     # what the weights are: checked at once, never at training
        self.hint.setWordWrap(True)
        self.hint.setTextFormat(Qt.RichText)
        lay.addRow(self.hint)
        self.weights_ok = True
        self.layout_ = lay
        self.align = QComboBox()
        for key, text in ALIGNMENTS:
            self.align.addItem(text, key)
        self.align.setToolTip("Align each image to a reference built from the good images before inspecting it")
        lay.addRow("Alignment", self.align)
        self.advice = QLabel(objectName="counts")
        self.advice.setWordWrap(True)
        self.use_advice = QPushButton("Use this recommendation")
        self.use_advice.clicked.connect(self._use_advice)
        self.use_advice.setEnabled(False)
        outer.addWidget(self.advice)
        outer.addWidget(self.use_advice, 0, Qt.AlignLeft)
        outer.addStretch(1)
        self.advisor: Optional[JobWorker] = None
        self.advised = None
        # this project's choices, else the recommended ones (never another project's last experiment)
        self.choices = project_choices(project, settings)
        self.method.setCurrentIndex(max(0, self.method.findData(self.choices["method"])))
        self.align.setCurrentIndex(max(0, self.align.findData(self.choices["align"])))
        self.backbone.setCurrentIndex(max(0, self.backbone.findData(self.choices["backbone"])))
        self.backbone.currentIndexChanged.connect(self._backbone_changed)
        self.random.toggled.connect(self.weights.setDisabled)
        self.random.toggled.connect(self._check_weights)
        self.download.toggled.connect(self._check_weights)
        self.weights.textChanged.connect(self._check_weights)
        self.method.currentIndexChanged.connect(self._method_changed)
        self._backbone_changed()
        self._method_changed()
        self.layout_.setRowVisible(self.split_row, self.split is not None)
        self._split_changed()

    def split_preview(self):
        """The split the spin box's count gives (nothing stored until Next)."""
        if self.split is None:
            return None
        return preview(self.project, self.judged.value())

    def _split_changed(self) -> None:
        sp = self.split_preview()
        self.split_error.setText("")
        self.layout_.setRowVisible(self.split_error, False)
        if sp is None:
            self.split_text.setText("")
            return
        text = f"of {sp.n}: <b>{len(sp.train)}</b> for training, <b>{len(sp.judge)}</b> for judging."
        if not sp.judge:
            text += " <span style='color:#b26a00'>None kept for judging: there will be no metrics.</span>"
        elif len(sp.judge) < MIN_JUDGED:
            text += f" <span style='color:#b26a00'>Under {MIN_JUDGED} judged: the metrics will say little.</span>"
        self.split_text.setText(text)

    def _check_split(self) -> bool:
        """A method that learns from labelled defects needs some for training."""
        sp = self.split_preview()
        if self.uses_anomalies and (sp is None or not sp.train):
            self.split_error.setText(f"{self.method_info.label} learns from labelled defects, but all are kept "
                                     "for judging: keep fewer for judging, or label more defects.")
            self.layout_.setRowVisible(self.split_error, True)
            return False
        return True

    def _store_split(self) -> None:
        """Keep the operator's count in the project (left to the default while unchanged)."""
        if self.split is None or self.project is None or self.project.read_only:
            return
        if self.split.chosen is not None or self.judged.value() != len(self.split.judge):
            self.split = set_judged(self.project, self.judged.value())

    def initializePage(self) -> None:
        if self.project is None or self.advisor is not None or self.advised is not None:
            return
        train = [r.path for r in self.project.images(split="train") if r.label != "anomalous" and r.readable is not False]
        self.advice.setText("Measuring how much the good images move, to recommend a method…")
        self.advisor = JobWorker(advise_on, train, self.n_anomalies)
        self.advisor.finished.connect(self._advised)
        self.advisor.failed.connect(self._advice_failed)
        self.advisor.start()

    def stop_advisor(self) -> None:
        if self.advisor is not None and self.advisor.is_running():
            self.advisor.cancel()
            self.advisor.wait(5000)

    def _advised(self, advice) -> None:
        self.advised = advice
        self._show_advice(f"<b>Recommended:</b> {advice.sentence}")
        self.use_advice.setEnabled(self.method.findData(advice.method) >= 0)

    def _advice_failed(self, message: str) -> None:
        self._show_advice(f"No recommendation: {message}")

    def _show_advice(self, text: str) -> None:
        self.advice.setText(text)

    def _use_advice(self) -> None:
        if self.advised is not None:
            self.method.setCurrentIndex(max(0, self.method.findData(self.advised.method)))
            self.align.setCurrentIndex(max(0, self.align.findData(self.advised.align)))

    @property
    def method_info(self) -> MethodInfo:
        return catalog.get(self.method.currentData())

    @property
    def uses_anomalies(self) -> bool:
        return self.method_info.needs_anomalies

    def _method_changed(self) -> None:
        text = anomalies_text(self.n_anomalies, self.n_masks)
        users = _anomaly_methods()
        if self.n_anomalies and not self.uses_anomalies and users:
            text = f"{self.n_anomalies} images are labelled anomalous: choose {users} to learn from them too."
        self.anomalies.setText(text)
        backbone = BACKBONE in self.method_info.shared_settings
        for w in (self.backbone, self.weights_row, self.random, self.hint):
            self.layout_.setRowVisible(w, backbone)
        self._check_weights()

    @property
    def needs_weights(self) -> bool:
        return BACKBONE in self.method_info.shared_settings and not self.random.isChecked()

    def _backbone_changed(self) -> None:
        self.weights.blockSignals(True)
        self.weights.setText(self.settings.weights_file(self.backbone.currentData()))
        self.weights.blockSignals(False)
        self._check_weights()

    def _check_weights(self) -> None:
        """Say at once whether the backbone has its weights: the file chosen (its header and key
        names read, in milliseconds), else those found on this computer, else what to do."""
        key = self.backbone.currentData()
        label = REGISTRY[key].label.split(" (")[0] if key in REGISTRY else key
        path = self.weights.text().strip()
        found = find_weights(key)[0] if not path else None       # environment or torchvision cache
        self.weights.setPlaceholderText(f"found: {found}" if found else "none on this computer")
        missing = not path and not found and self.needs_weights
        self.layout_.setRowVisible(self.download, missing and BACKBONE in self.method_info.shared_settings)
        if not self.needs_weights:
            self.weights_ok = True
            self.hint.setText("Random weights: the model's results mean nothing (for testing only)."
                              if self.random.isChecked() else "")
            return
        if path:
            check = check_weights_file(path, key)
            self.weights_ok = check.ok
            color = "#2e7d32" if check.ok else "#c62828"
            self.hint.setText(f"<span style='color:{color}'>{'✓ ' if check.ok else ''}{check.message}</span>")
            return
        if found:
            self.weights_ok = True
            self.hint.setText(f"<span style='color:#2e7d32'>✓ The ImageNet weights of {label} are on this "
                              "computer.</span>")
            return
        here = [REGISTRY[n].label.split(" (")[0] for n in REGISTRY if n != key and backbone_weights(self.settings, n)]
        self.weights_ok = self.download.isChecked()
        text = (f"<span style='color:#c62828'>The ImageNet weights of {label} are not on this computer.</span> "
                "Press <i>Choose a weights file…</i> to pick the .pth file (it is remembered), ")
        text += (f"choose a backbone whose weights are here ({', '.join(here)}), " if here else "")
        text += "or tick <i>Download</i> to fetch them when training starts."
        self.hint.setText(text)

    def _browse(self) -> None:
        start = self.weights.text() or self.settings.last_dir()
        path, _ = QFileDialog.getOpenFileName(self, "Choose the backbone's weights file", start,
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.weights.setText(path)

    def values(self) -> dict:
        return {"method": self.method.currentData(), "backbone": self.backbone.currentData(),
                "weights": None if self.random.isChecked() else (self.weights.text().strip() or None),
                "random_weights": self.random.isChecked(), "align": self.align.currentData()}

    def validatePage(self) -> bool:
        self._check_weights()
        split_ok = self._check_split()
        if not (self.weights_ok and split_ok):
            return False
        self._store_split()
        v = self.values()
        # the choices are this project's (the next wizard here opens on them; a new project on the
        # recommended ones); a weights file belongs to this computer, remembered per backbone
        keep_choices(self.project, method=v["method"], backbone=v["backbone"], align=v["align"])
        if not v["random_weights"]:
            self.settings.set_weights_file(v["backbone"], v["weights"] or "")
        return True


def option_widget(spec: OptionSpec, value):
    """An input field for one of a method's options, bounded by the catalog's range."""
    tip = spec.help
    if spec.kind is bool:
        w = QCheckBox()
        w.setChecked(bool(value))
    elif spec.kind in (int, float):
        w = QSpinBox() if spec.kind is int else QDoubleSpinBox()
        if spec.kind is float:
            step = spec.step or 0.1
            decimals = max(2, len(f"{step:.10f}".rstrip("0").split(".")[1]) + 1)
            w.setDecimals(decimals)
            tiny = 10 ** -decimals
        else:
            step, tiny = spec.step or 1, 1
        lo = spec.minimum if spec.minimum is not None else (spec.above + tiny if spec.above is not None else 0)
        hi = spec.maximum if spec.maximum is not None else (spec.below - tiny if spec.below is not None else 10**6)
        if spec.kind is int:
            lo, hi = int(lo), int(hi)
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setValue(value)
        rng = spec.describe_range()
        tip += f" ({rng})" if rng else ""
    elif spec.allowed() is not None:
        w = QComboBox()
        for v in spec.allowed():
            w.addItem(str(v), v)
        w.setCurrentIndex(max(0, w.findData(value)))
    else:
        w = QLineEdit(",".join(map(str, value)) if isinstance(value, tuple) else str(value))
    w.setToolTip(f"{tip[:1].upper()}{tip[1:]}")
    return w


def widget_value(w):
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        return w.value()
    if isinstance(w, QComboBox):
        return w.currentData()
    return w.text().strip()


class OptionsPage(QWizardPage):
    """Image size, threshold and the chosen method's main options (from the method catalog)."""

    def __init__(self, settings: Settings, project: Optional[Project] = None):
        super().__init__()
        self.settings = settings
        self.project = project
        choices = project_choices(project, settings)
        kept_options = choices.get("options") or {}
        self.setTitle("Image size, threshold and method options")
        self.setSubTitle("Larger images find smaller defects but train more slowly.")
        lay = QFormLayout(self)
        self.layout_ = lay
        self.size = QSpinBox()
        self.size.setRange(32, 1024)
        self.size.setSingleStep(32)
        self.size.setSuffix(" px")
        self.size.setValue(int(choices["size"]))
        lay.addRow("Image size", self.size)
        self.crop = QSpinBox()
        self.crop.setRange(0, 1024)
        self.crop.setSingleStep(32)
        self.crop.setSpecialValueText("no crop (whole image)")
        self.crop.setValue(int(choices["crop"] or 0))
        lay.addRow("Center crop", self.crop)
        # each method's main options, shown for the method chosen on the previous page
        self.option_fields: Dict[str, Dict[str, QWidget]] = {}
        for info in catalog.methods():
            fields = self.option_fields[info.name] = {}
            for spec in info.main_specs():
                value = (kept_options.get(info.name) or {}).get(spec.name, spec.default)
                try:
                    value = spec.coerce(value, info.label)
                except Exception:           # a remembered value the catalog no longer accepts
                    value = spec.default
                fields[spec.name] = option_widget(spec, value)
                lay.addRow(spec.title, fields[spec.name])
        self.threshold = QComboBox()
        for key, text in THRESHOLDS:
            self.threshold.addItem(text, key)
        self.threshold.setCurrentIndex(max(0, self.threshold.findData(choices["threshold"])))
        lay.addRow("Threshold", self.threshold)
        self.inspect = QCheckBox("Inspect the project's test images with the new model")
        self.inspect.setChecked(True)
        lay.addRow(self.inspect)

    def method_info(self) -> Optional[MethodInfo]:
        w = self.wizard()
        return w.method_page.method_info if w is not None else None

    @property
    def fields(self) -> Dict[str, QWidget]:
        """The chosen method's main options: name → input field."""
        info = self.method_info()
        return self.option_fields.get(info.name, {}) if info is not None else {}

    def initializePage(self) -> None:
        info = self.method_info()
        for name, fields in self.option_fields.items():
            for w in fields.values():
                self.layout_.setRowVisible(w, info is not None and name == info.name)

    def values(self) -> dict:
        crop = self.crop.value() or None
        return {"resize": self.size.value(), "crop": crop if crop and crop <= self.size.value() else None,
                "threshold": self.threshold.currentData(),
                "options": {name: widget_value(w) for name, w in self.fields.items()}}

    def validatePage(self) -> bool:
        info = self.method_info()
        options = {}
        if info is not None:
            options[info.name] = {spec.name: widget_value(self.fields[spec.name]) for spec in info.main_specs()}
        keep_choices(self.project, size=self.size.value(), crop=self.crop.value(),
                     threshold=self.threshold.currentData(), options=options)
        return True


class RunPage(QWizardPage):
    """Runs the training in a :class:`JobWorker`: one overall bar over all its stages (weighted by
    their measured costs, :mod:`inspector.core.progress`), elapsed time and, once it means
    something, the time left; the current stage below it; Cancel."""

    trained = Signal(object)

    def __init__(self, project: Project):
        super().__init__()
        self.project = project
        self.setTitle("Training")
        self.setSubTitle("Training runs in the background: you can keep working in the main window. "
                         "Cancel stops it within seconds and keeps the previous model.")
        lay = QVBoxLayout(self)
        self.stage = QLabel("starting…", objectName="heading")
        self.stage.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.times = QLabel(objectName="counts")
        self.detail = QLabel(objectName="counts")       # the current stage: step, count, rate
        self.detail.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828;")
        self.error.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel training", objectName="danger")
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button = QPushButton("Try again")
        self.retry_button.clicked.connect(self.start)
        self.retry_button.hide()
        for w in (self.stage, self.detail, self.bar, self.times, self.error):
            lay.addWidget(w)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addWidget(self.retry_button)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addStretch(1)
        self.worker: Optional[ProcessJobWorker] = None
        self.outcome: Optional[TrainOutcome] = None
        self.state = "idle"          # idle, running, done, failed, cancelled
        self.clock = time.monotonic           # the meter's clock (tests inject their own)
        self.meter = ProgressMeter(clock=self.clock)
        self.ticker = QTimer(self, interval=500, timeout=self._tick)

    def initializePage(self) -> None:
        self.start()

    def cleanupPage(self) -> None:   # Back while training: stop it
        self.cancel()

    def settings_dict(self) -> dict:
        w = self.wizard()
        d = {**w.method_page.values(), **w.options_page.values()}
        return d

    def start(self) -> None:
        if self.state == "running":
            return
        w = self.wizard()
        self.outcome = None
        self.error.setText("")
        self.retry_button.hide()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.stage.setText("Starting the engine…")
        self.detail.setText("")
        self.bar.setRange(0, 0)
        self.bar.setFormat("%p%")
        self.state = "running"
        self.meter = ProgressMeter(clock=self.clock)
        self.worker = ProcessJobWorker(TrainingJob(self.project, self.settings_dict(), name=w.field("name").strip(),
                                                   inspect_test=w.options_page.inspect.isChecked(),
                                                   use_labelled_anomalies=w.method_page.uses_anomalies))
        self.worker.planned.connect(self._planned)
        self.worker.progress.connect(self._progress)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)
        self.worker.cancelled.connect(self._cancelled)
        self.ticker.start()
        self.worker.start()
        self._tick()
        self.completeChanged.emit()

    def cancel(self) -> None:
        if self.state == "running" and self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.stage.setText("Cancelling…")
            self.detail.setText("")
            self._tick()

    @property
    def cancelling(self) -> bool:
        return self.worker is not None and self.worker.is_cancelling

    def _planned(self, plan) -> None:
        if self.state == "running":
            self.meter.set_plan(plan)
            self.bar.setFormat("%p% of the whole training")

    def _progress(self, stage: str, done: int, total: int) -> None:
        if self.state != "running" or self.worker is None or self.cancelling:
            return
        self.meter.update(stage, done, total)
        m = self.meter
        self.stage.setText(stage_title(m))
        self.detail.setText(stage_detail(m))
        show_on_bar(self.bar, m)
        self._tick()

    def _tick(self) -> None:
        if self.state == "running" and self.cancelling:
            self.times.setText(f"Elapsed {fmt_seconds(self.meter.elapsed())}")    # no time left: it stops
        else:
            self.times.setText(self.meter.times_text())

    def _end(self, state: str) -> None:
        self.state = state
        self.ticker.stop()
        self.detail.setText("")
        self._tick()
        self.cancel_button.hide()
        self.completeChanged.emit()

    def _finished(self, outcome: TrainOutcome) -> None:
        self.outcome = outcome
        self.meter.finish()
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.stage.setText("Done")
        self._end("done")
        self.trained.emit(outcome)
        if self.wizard() is not None and self.wizard().currentPage() is self:
            self.wizard().next()

    def _failed(self, message: str) -> None:
        self.meter.fail()
        self.stage.setText("Training failed")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.error.setText(message + "\n\nGo Back to change the settings (for example choose a weights "
                                     "file), or try again.")
        self.retry_button.show()
        self._end("failed")

    def _cancelled(self) -> None:
        self.meter.cancel()
        self.stage.setText("Cancelled: nothing was changed, the previous model is still in use.")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.retry_button.show()
        self._end("cancelled")

    def isComplete(self) -> bool:
        return self.state == "done"


class ResultPage(QWizardPage):
    def __init__(self):
        super().__init__()
        self.setTitle("Result")
        self.setSubTitle("The new model is now the current one; its results are in the browser and the review queue.")
        lay = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.summary)
        self.histogram = ScoreHistogram()
        lay.addWidget(self.histogram, 1)

    def show_outcome(self, o: TrainOutcome) -> None:
        lines = [f"<b>{o.name}</b> trained on {o.n_train} good images in {fmt_seconds(o.seconds)}.",
                 f"Threshold: <b>{o.image_threshold:.4g}</b> ({o.threshold_detail}); "
                 f"pixel threshold {o.pixel_threshold:.4g}."]
        if o.skipped:
            lines.append(f"<span style='color:#c62828'>{len(o.skipped)} unreadable images were skipped.</span>")
        m = o.metrics
        judged = sum(1 for _, lab in o.test_scores if lab == "anomalous")
        good = sum(1 for _, lab in o.test_scores if lab == "good")
        if m:
            lines.append(f"On the <b>{judged}</b> labelled defects held back for judging and {good} good test "
                         f"images (none of them trained on): image AUROC <b>{m['image_auroc']:.3f}</b>, "
                         f"F1 {m['f1']:.3f} at the threshold; {m['true_positives']} defects found, "
                         f"{m['missed']} missed, {m['false_alarms']} false alarms.")
        elif o.test_scores:
            lines.append(f"{len(o.test_scores)} test images inspected (no labelled defects held back for "
                         "judging: no metrics).")
        if o.defects_for_training:
            used = (f"fine-tuned on {o.trained_on_defects} of them" if o.trained_on_defects
                    else "not used by this method")
            lines.append(f"{o.defects_for_training} labelled defects are for training ({used}); they are left "
                         "out of the metrics.")
        self.summary.setText("<br>".join(lines))
        series = {"held-out normal": o.holdout_scores}
        if o.test_scores:
            series["test good"] = [s for s, lab in o.test_scores if lab == "good"]
            series["test anomalous"] = [s for s, lab in o.test_scores if lab == "anomalous"]
        self.histogram.set_data(series, o.image_threshold)

    def initializePage(self) -> None:
        o = self.wizard().run_page.outcome
        if o is not None:
            self.show_outcome(o)


class TrainWizard(QWizard):
    """Emits ``trained(outcome)`` as soon as a new model is registered in the project."""

    trained = Signal(object)

    def __init__(self, project: Project, settings: Settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.setWizardStyle(QWizard.ModernStyle)
        self.setOption(QWizard.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.NoCancelButtonOnLastPage, True)
        self.resize(720, 560)
        self.data_page = DataPage(project)
        self.method_page = MethodPage(settings, project)
        self.options_page = OptionsPage(settings, project)
        self.run_page = RunPage(project)
        self.result_page = ResultPage()
        for p in (self.data_page, self.method_page, self.options_page, self.run_page, self.result_page):
            self.addPage(p)
        self.run_page.trained.connect(self.trained)
        self._closing = False

    def done(self, result: int) -> None:
        self.method_page.stop_advisor()
        super().done(result)

    def reject(self) -> None:
        """Cancel while training: stop the job first, close when it has stopped."""
        if self.run_page.state == "running":
            self._closing = True
            self.run_page.worker.ended.connect(self._close_after_stop)
            self.run_page.cancel()
            return
        super().reject()

    def _close_after_stop(self) -> None:
        if self._closing:
            self._closing = False
            super().reject()

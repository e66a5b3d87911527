"""The threshold against what the operator confirmed: move it and see, live, what it would catch
and miss on the labelled parts the model scored (the confusion matrix, precision and recall, both
classes' score histograms with the threshold line).  Suggestions: miss no confirmed defect, best
F1, the normals-only rule (mean + 3 std of the normal scores the model keeps).  "Keep this
threshold" asks for a new model version (``keepRequested``): the main window writes it with who,
when and which rule.  The counting is the engine's (:mod:`inspector.core.confusion`).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDoubleSpinBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSlider,
                               QVBoxLayout, QWidget)

from ..core.confusion import Confusion, ThresholdSweep, threshold_rules
from ..core.thresholds import Threshold
from ..project import Project
from ..project.versions import labelled_scores
from .charts import ScoreHistogram

SLIDER_STEPS = 1000
CELL_STYLE = {   # (background, text) of the four cells: right answers green, wrong ones red/orange
    "caught": ("#e3f2e5", "#1b5e20"), "missed": ("#fdecea", "#b71c1c"),
    "false_alarms": ("#fff3e0", "#e65100"), "passed": ("#e3f2e5", "#1b5e20")}
RULE_BUTTONS = (("miss no confirmed defect", "Miss no confirmed defect",
                 "The highest threshold that still flags every part confirmed as a defect"),
                ("best F1", "Best F1", "The threshold with the best F1 on the labelled parts"),
                ("normals only", "Normals only (mean + 3σ)",
                 "Mean + 3 standard deviations of the scores of good images the model had not learnt "
                 "(the rule training uses)"))


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


class ThresholdPanel(QWidget):
    """``keepRequested(model_id, value, rule, detail)``: keep the threshold as a new version."""

    keepRequested = Signal(int, float, str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Optional[Project] = None
        self.model_id: Optional[int] = None
        self.sweep: Optional[ThresholdSweep] = None
        self.rules: Dict[str, Threshold] = {}
        self.value = float("nan")
        self.rule = "manual"
        self.lo, self.hi = 0.0, 1.0
        self._series: Dict[str, list] = {}

        self.heading = QLabel(objectName="heading")
        self.heading.setWordWrap(True)
        self.info = QLabel(objectName="counts")
        self.info.setWordWrap(True)

        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(5)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self._spin_changed)
        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)

        # the confusion matrix: rows = what the operator confirmed, columns = what the threshold does
        box = QFrame(objectName="card")
        grid = QGridLayout(box)
        grid.addWidget(QLabel("<b>Confirmed</b> \\ <b>at this threshold</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Flagged</b>"), 0, 1, Qt.AlignCenter)
        grid.addWidget(QLabel("<b>Passed</b>"), 0, 2, Qt.AlignCenter)
        grid.addWidget(QLabel("<b>Defect</b>"), 1, 0)
        grid.addWidget(QLabel("<b>Good</b>"), 2, 0)
        self.cells: Dict[str, QLabel] = {}
        for key, r, c in (("caught", 1, 1), ("missed", 1, 2), ("false_alarms", 2, 1), ("passed", 2, 2)):
            lab = QLabel()
            lab.setAlignment(Qt.AlignCenter)
            lab.setMinimumSize(150, 58)
            bg, fg = CELL_STYLE[key]
            lab.setStyleSheet(f"background: {bg}; color: {fg}; border-radius: 4px; padding: 4px;")
            self.cells[key] = lab
            grid.addWidget(lab, r, c)
        self.scores_line = QLabel()
        grid.addWidget(self.scores_line, 3, 0, 1, 3)

        buttons = QHBoxLayout()
        self.rule_buttons: Dict[str, QPushButton] = {}
        for key, text, tip in RULE_BUTTONS:
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _=False, k=key: self.apply_rule(k))
            self.rule_buttons[key] = b
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.rule_label = QLabel(objectName="counts")
        self.rule_label.setWordWrap(True)
        keep_row = QHBoxLayout()
        self.keep = QPushButton("Keep this threshold (new version)", objectName="primary")
        self.keep.setToolTip("Write a new version of the model with this threshold; the audit trail records "
                             "who, when and which rule. The current version stays and can be used again.")
        self.keep.clicked.connect(self.request_keep)
        self.reset = QPushButton("Back to the model's")
        self.reset.clicked.connect(self.reset_to_model)
        keep_row.addWidget(self.keep)
        keep_row.addWidget(self.reset)
        keep_row.addStretch(1)

        self.histogram = ScoreHistogram()
        self.histogram.setMinimumSize(420, 240)

        left = QVBoxLayout()
        left.addLayout(row)
        left.addWidget(box)
        left.addWidget(QLabel("Suggestions"))
        left.addLayout(buttons)
        left.addWidget(self.rule_label)
        left.addLayout(keep_row)
        left.addStretch(1)
        body = QHBoxLayout()
        body.addLayout(left, 3)
        body.addWidget(self.histogram, 4)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.heading)
        lay.addWidget(self.info)
        lay.addLayout(body, 1)
        self.reload()

    # -- data ------------------------------------------------------------------------------------
    def set_project(self, project: Optional[Project], model_id: Optional[int]) -> None:
        changed = (project, model_id) != (self.project, self.model_id)
        self.project, self.model_id = project, model_id
        self.reload(keep_value=not changed)

    def reload(self, keep_value: bool = False) -> None:
        """Re-read the labelled scores (after an inspection, a label, a new version)."""
        model = None
        if self.project is not None and not self.project.closed and self.model_id is not None:
            model = self.project.model(self.model_id)
        self.sweep, self.rules = None, {}
        self.histogram.set_data({}, None)
        if model is None:
            self.heading.setText("No model yet: train one first.")
            self.info.setText("")
            self._enable(False)
            return
        pairs = [(s, 1 if lab == "anomalous" else 0) for s, lab in labelled_scores(self.project, model, judged_only=False)
                 if lab in ("good", "anomalous")]
        self.heading.setText(f"Threshold of {model.name} ({model.method})")
        scores = [s for s, _ in pairs]
        labels = [y for _, y in pairs]
        self.sweep = ThresholdSweep(scores, labels) if pairs else None
        normal = (model.meta.get("calibration") or {}).get("image_scores") or None
        self.rules = threshold_rules(scores, labels, normal) if pairs else {}
        n_def, n_good = sum(labels), len(labels) - sum(labels)
        if not pairs:
            self.info.setText("No labelled part has a score from this model yet. Inspect images, then mark "
                              "parts in Review (A = defect, N = false alarm): this panel then shows what a "
                              "threshold would catch and miss.")
            self._enable(False)
            return
        self.info.setText(f"On {len(pairs)} labelled parts this model scored and did not learn from: {n_def} "
                          f"confirmed defect{'s' if n_def != 1 else ''}, {n_good} confirmed good. Flagged means "
                          "score ≥ threshold.")
        lo, hi = min(scores), max(scores)
        if math.isfinite(model.image_threshold):
            lo, hi = min(lo, model.image_threshold), max(hi, model.image_threshold)
        for t in self.rules.values():
            lo, hi = min(lo, t.value), max(hi, t.value)
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        self.lo, self.hi = lo - pad, hi + pad
        self.spin.blockSignals(True)
        self.spin.setRange(self.lo, self.hi)
        self.spin.setSingleStep((self.hi - self.lo) / 100)
        self.spin.blockSignals(False)
        self._enable(True)
        for key, b in self.rule_buttons.items():
            b.setEnabled(key in self.rules)
            t = self.rules.get(key)
            b.setToolTip(dict((k, tip) for k, _, tip in RULE_BUTTONS)[key] + (f": {t.value:.4g}" if t else
                         " (needs " + ("a confirmed defect" if key != "normals only" else
                                       "the model's kept normal scores") + ")"))
        self._series = {"confirmed good": [s for s, y in pairs if not y],
                        "confirmed defect": [s for s, y in pairs if y]}
        if keep_value and math.isfinite(self.value):
            self.set_value(self.value, self.rule)
        else:
            self.reset_to_model()

    def _enable(self, on: bool) -> None:
        for w in (self.slider, self.spin, self.keep, self.reset, *self.rule_buttons.values()):
            w.setEnabled(on)
        if not on:
            for lab in self.cells.values():
                lab.setText("–")
            self.scores_line.setText("")
            self.rule_label.setText("")

    # -- the threshold ---------------------------------------------------------------------------
    def model_threshold(self) -> float:
        if self.project is None or self.model_id is None:
            return float("nan")
        return float(self.project.model(self.model_id).image_threshold)

    def reset_to_model(self) -> None:
        t = self.model_threshold()
        if not math.isfinite(t):
            t = self.rules["best F1"].value if "best F1" in self.rules else (self.lo + self.hi) / 2
        self.set_value(t, "the model's")

    def apply_rule(self, key: str) -> None:
        if key in self.rules:
            self.set_value(self.rules[key].value, key)

    def set_value(self, value: float, rule: str = "manual") -> None:
        """Show ``value`` (slider, box, matrix, histogram) as chosen by ``rule``."""
        self.value, self.rule = float(value), rule
        pos = round((value - self.lo) / (self.hi - self.lo) * SLIDER_STEPS) if self.hi > self.lo else 0
        self.slider.blockSignals(True)
        self.slider.setValue(int(min(SLIDER_STEPS, max(0, pos))))
        self.slider.blockSignals(False)
        self.spin.blockSignals(True)
        self.spin.setValue(value)
        self.spin.blockSignals(False)
        self._show()

    def _slider_moved(self, pos: int) -> None:
        self.value, self.rule = self.lo + (self.hi - self.lo) * pos / SLIDER_STEPS, "manual"
        self.spin.blockSignals(True)
        self.spin.setValue(self.value)
        self.spin.blockSignals(False)
        self._show()

    def _spin_changed(self, value: float) -> None:
        self.set_value(value, "manual")

    def confusion(self) -> Optional[Confusion]:
        return None if self.sweep is None else self.sweep.at(self.value)

    def _show(self) -> None:
        c = self.confusion()
        if c is None:
            return
        n_def, n_good = c.caught + c.missed, c.false_alarms + c.passed
        texts = {"caught": f"<b style='font-size:20px'>{c.caught}</b><br>defects caught",
                 "missed": f"<b style='font-size:20px'>{c.missed}</b><br>defects missed",
                 "false_alarms": f"<b style='font-size:20px'>{c.false_alarms}</b><br>false alarms",
                 "passed": f"<b style='font-size:20px'>{c.passed}</b><br>correct passes"}
        for key, lab in self.cells.items():
            lab.setText(texts[key])
        self.scores_line.setText(f"Precision {_pct(c.precision)} (flagged parts that are defects) · "
                                 f"Recall {_pct(c.recall)} (defects flagged, of {n_def}) · "
                                 f"F1 {'–' if c.f1 is None else f'{c.f1:.3f}'} · {n_good} good parts")
        model_t = self.model_threshold()
        if self.rule in self.rules:
            said = f"Rule: {self.rule} ({self.rules[self.rule].detail})."
        elif self.rule == "the model's":
            said = "The model's threshold now."
        else:
            said = "Set by hand."
        if math.isfinite(model_t) and not math.isclose(model_t, self.value, rel_tol=1e-9):
            now = self.sweep.at(model_t)
            said += (f" The model's threshold ({model_t:.4g}) catches {now.caught}, misses {now.missed}, "
                     f"gives {now.false_alarms} false alarm{'s' if now.false_alarms != 1 else ''}.")
        self.rule_label.setText(said)
        self.keep.setEnabled(not (math.isfinite(model_t) and math.isclose(model_t, self.value, rel_tol=1e-9)))
        self.histogram.set_data(self._series, self.value)

    def request_keep(self) -> None:
        if self.model_id is None or not math.isfinite(self.value):
            return
        rule = self.rule if self.rule in self.rules else "manual"
        c = self.confusion()
        detail = (self.rules[rule].detail if rule in self.rules else "set by hand in the threshold panel")
        if c is not None:
            detail += (f"; on {c.caught + c.missed + c.false_alarms + c.passed} labelled parts: {c.caught} caught, "
                       f"{c.missed} missed, {c.false_alarms} false alarms")
        self.keepRequested.emit(int(self.model_id), float(self.value), rule, detail)

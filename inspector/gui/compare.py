"""The Compare tab: two models' scores, verdicts and metrics side by side, and "Use this model".

The comparison itself (which images, which metrics, which is better) is computed by
:mod:`inspector.project.compare`; this panel shows it.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGridLayout, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..project import Project
from ..project.compare import Comparison, agrees, better, compare_models

METRIC_ROWS = [("image_auroc", "Image AUROC", "{:.3f}"), ("f1", "F1 at the model's threshold", "{:.3f}"),
               ("true_positives", "Defects found", "{:d}"), ("missed", "Defects missed", "{:d}"),
               ("false_alarms", "False alarms", "{:d}"), ("n_labelled", "Labelled images", "{:d}")]
COLUMNS = ["Image", "Label", "Score A", "Verdict A", "Score B", "Verdict B"]


class ComparePanel(QWidget):
    """``modelAdopted(model_id)``: "Use this model"; ``inspectRequested([(model_id, image_ids), ...])``."""

    modelAdopted = Signal(int)
    inspectRequested = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Optional[Project] = None
        self.comparison: Optional[Comparison] = None

        top = QHBoxLayout()
        self.combo_a = QComboBox()
        self.combo_b = QComboBox()
        for c in (self.combo_a, self.combo_b):
            c.setMinimumWidth(260)
            c.activated.connect(lambda _i: self.refresh())
        top.addWidget(QLabel("Model A"))
        top.addWidget(self.combo_a, 1)
        top.addWidget(QLabel("Model B"))
        top.addWidget(self.combo_b, 1)
        self.inspect_button = QPushButton("Inspect missing images")
        self.inspect_button.setToolTip("Run both models on the test images they have not scored yet")
        self.inspect_button.clicked.connect(self.request_inspection)
        top.addWidget(self.inspect_button)

        self.heading = QLabel(objectName="heading")
        self.heading.setWordWrap(True)
        self.metrics = QGridLayout()
        self.metric_labels: Dict[Tuple[str, str], QLabel] = {}
        self.metrics.addWidget(QLabel("<b>On the held-back labelled test images</b>"), 0, 0)
        self.title_a, self.title_b = QLabel(), QLabel()
        for t in (self.title_a, self.title_b):
            t.setWordWrap(True)
        self.metrics.addWidget(self.title_a, 0, 1)
        self.metrics.addWidget(self.title_b, 0, 2)
        for i, (key, text, _) in enumerate(METRIC_ROWS, start=1):
            self.metrics.addWidget(QLabel(text), i, 0)
            for j, side in enumerate("ab", start=1):
                lab = QLabel("–")
                lab.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.metric_labels[(side, key)] = lab
                self.metrics.addWidget(lab, i, j)
        n = len(METRIC_ROWS) + 1
        self.metrics.addWidget(QLabel("Threshold"), n, 0)
        for j, side in enumerate("ab", start=1):
            lab = QLabel("–")
            lab.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            self.metric_labels[(side, "threshold")] = lab
            self.metrics.addWidget(lab, n, j)
        self.use_a = QPushButton("Use this model")
        self.use_b = QPushButton("Use this model")
        self.use_a.clicked.connect(lambda: self._adopt(self.combo_a))
        self.use_b.clicked.connect(lambda: self._adopt(self.combo_b))
        self.metrics.addWidget(self.use_a, n + 1, 1)
        self.metrics.addWidget(self.use_b, n + 1, 2)
        self.note = QLabel(objectName="counts")
        self.note.setWordWrap(True)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)   # "(for judging)"
        self.table.setSortingEnabled(True)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(top)
        lay.addWidget(self.heading)
        lay.addLayout(self.metrics)
        lay.addWidget(self.note)
        lay.addWidget(self.table, 1)

    # -- data ------------------------------------------------------------------------------------
    def set_project(self, project: Optional[Project]) -> None:
        self.project = project
        self.reload_models()

    def reload_models(self) -> None:
        """Fill the two lists; keep the choice, else A = the current model (or the one before the
        newest), B = the newest."""
        keep_a, keep_b = self.combo_a.currentData(), self.combo_b.currentData()
        models = [] if self.project is None or self.project.closed else self.project.models()
        ids = [m.id for m in models]
        cur = self.project.current_model_id if models else None
        for c in (self.combo_a, self.combo_b):
            c.clear()
            for m in reversed(models):
                c.addItem(f"{m.name} · {m.method} · {m.backbone}" + (" (current)" if m.id == cur else ""), m.id)
        if len(models) >= 2:
            b = keep_b if keep_b in ids else ids[-1]
            a = keep_a if keep_a in ids and keep_a != b else (cur if cur is not None and cur != b else
                                                              next(i for i in reversed(ids) if i != b))
            self.select(a, b)
        else:
            self.refresh()

    def select(self, a_id: int, b_id: int) -> None:
        self.combo_a.setCurrentIndex(max(0, self.combo_a.findData(a_id)))
        self.combo_b.setCurrentIndex(max(0, self.combo_b.findData(b_id)))
        self.refresh()

    def refresh(self) -> None:
        """Re-read both models' results from the project."""
        a, b = self.combo_a.currentData(), self.combo_b.currentData()
        if self.project is None or self.project.closed or a is None or b is None:
            self.comparison = None
            self.heading.setText("Train at least two models to compare them (for example PatchCore, then APC "
                                 "after labelling some defects).")
        elif a == b:
            self.comparison = None
            self.heading.setText("Choose two different models.")
        else:
            self.comparison = compare_models(self.project, a, b)
        self._show()

    def _show(self) -> None:
        c = self.comparison
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        for w in (self.use_a, self.use_b, self.inspect_button):
            w.setEnabled(c is not None)
        if c is None:
            for lab in self.metric_labels.values():
                lab.setText("–")
            self.title_a.setText("A")
            self.title_b.setText("B")
            self.note.setText("")
            return
        cur = self.project.current_model_id
        self.title_a.setText(f"<b>A</b>: {c.a.name} ({c.a.method})")
        self.title_b.setText(f"<b>B</b>: {c.b.name} ({c.b.method})")
        self.use_a.setEnabled(c.a.id != cur)
        self.use_b.setEnabled(c.b.id != cur)
        self.use_a.setText("In use" if c.a.id == cur else "Use this model")
        self.use_b.setText("In use" if c.b.id == cur else "Use this model")
        for key, _, fmt in METRIC_ROWS:
            va, vb = c.metrics_a.get(key), c.metrics_b.get(key)
            for side, v, other in (("a", va, vb), ("b", vb, va)):
                lab = self.metric_labels[(side, key)]
                lab.setText("–" if v is None else fmt.format(v))
                lab.setStyleSheet("color: #2e7d32; font-weight: bold;" if better(key, v, other) else "")
        self.metric_labels[("a", "threshold")].setText(f"{c.a.image_threshold:.4g}")
        self.metric_labels[("b", "threshold")].setText(f"{c.b.image_threshold:.4g}")
        missing = len(c.missing_a) + len(c.missing_b)
        self.inspect_button.setEnabled(missing > 0)
        self.heading.setText(
            f"{len(c.rows)} test images · metrics on {c.n_compared} labelled images both models scored"
            + (f" · {len(c.missing_a)} not inspected by A, {len(c.missing_b)} by B: Inspect missing images"
               if missing else ""))
        notes = []
        if not c.metrics_a:
            notes.append("No metrics: they need labelled good and labelled anomalous images scored by both models.")
        sp = c.split
        if sp is not None and sp.n:
            judged = sum(1 for r, ra, rb in c.rows if r.label == "anomalous" and ra[0] is not None
                         and rb[0] is not None and c.judged(r))
            notes.append(f"Metrics on the labelled defects held back for judging ({judged} scored by both of the "
                         f"{len(sp.judge)} kept for judging) and the labelled good images.")
        if c.excluded:
            notes.append(f"{len(c.excluded)} labelled anomalous image{'s' if len(c.excluded) != 1 else ''} "
                         "for training (or that a model was fine-tuned on) are left out of the metrics of both.")
        self.note.setText(" ".join(notes))
        self.table.setRowCount(len(c.rows))
        for i, (r, (sa, va), (sb, vb)) in enumerate(c.rows):
            mark = (" (trained on)" if r.id in c.trained_on else " (for training)" if r.id in c.excluded
                    else " (for judging)" if r.label == "anomalous" else "")
            items = [QTableWidgetItem(r.name), QTableWidgetItem((r.label or "–") + mark),
                     _score_item(sa), QTableWidgetItem(va or "–"), _score_item(sb), QTableWidgetItem(vb or "–")]
            items[0].setData(Qt.UserRole, r.id)
            items[0].setToolTip(r.path)
            for col, verdict in ((3, va), (5, vb)):
                right = agrees(verdict, r.label)
                if right is not None:
                    items[col].setForeground(QColor("#2e7d32" if right else "#c62828"))
            for j, it in enumerate(items):
                self.table.setItem(i, j, it)
        self.table.setSortingEnabled(True)

    # -- actions ---------------------------------------------------------------------------------
    def _adopt(self, combo: QComboBox) -> None:
        mid = combo.currentData()
        if self.project is not None and mid is not None:
            self.modelAdopted.emit(int(mid))

    def request_inspection(self) -> None:
        c = self.comparison
        if c is None:
            return
        jobs = [(m.id, ids) for m, ids in ((c.a, c.missing_a), (c.b, c.missing_b)) if ids]
        if jobs:
            self.inspectRequested.emit(jobs)


def _score_item(score: Optional[float]) -> QTableWidgetItem:
    it = QTableWidgetItem()
    if score is None:
        it.setText("–")
    else:
        it.setData(Qt.DisplayRole, float(f"{score:.4g}"))
    it.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return it

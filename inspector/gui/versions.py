"""The model versions of a project: each model with the one it was made from, what changed (normal
images added, a threshold kept: who and when), its metrics on the images the operator labelled, and
"Use this version".  The rows come from :func:`inspector.project.versions.version_rows` (Qt-free)."""

from __future__ import annotations

from typing import List, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..project import Project
from ..project.versions import VersionRow, version_rows

COLUMNS = ["Version", "Method", "Made from", "What changed", "When / who", "Threshold", "Image AUROC",
           "F1 at threshold", "Caught / missed / false alarms"]


def _when_who(row: VersionRow) -> str:
    hist = (row.model.meta.get("lineage") or {}).get("history") or []
    if row.parent is not None and hist:
        last = hist[-1]
        return f"{str(last.get('when', ''))[:16].replace('T', ' ')} · {last.get('who', '?')}"
    return str(row.model.meta.get("created") or row.model.created)[:16].replace("T", " ")


class VersionsPanel(QWidget):
    """``modelAdopted(model_id)``: "Use this version"."""

    modelAdopted = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Optional[Project] = None
        self.rows: List[VersionRow] = []
        self.heading = QLabel(objectName="heading")
        self.heading.setWordWrap(True)
        self.note = QLabel("Metrics are on the parts labelled good or defect that each version scored, at its own "
                           "threshold, leaving out the parts it learnt (good images added to it, defects APC was "
                           "fine-tuned on).", objectName="counts")
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda _item: self.use_selected())
        self.use = QPushButton("Use this version", objectName="primary")
        self.use.setToolTip("Make the selected version the one whose results the application shows and uses")
        self.use.clicked.connect(self.use_selected)
        self.history = QLabel(objectName="counts")
        self.history.setWordWrap(True)
        self.history.setTextInteractionFlags(Qt.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.use)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.heading)
        lay.addWidget(self.note)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.history)
        lay.addLayout(buttons)
        self.reload()

    def set_project(self, project: Optional[Project]) -> None:
        self.project = project
        self.reload()

    def reload(self) -> None:
        keep = self.selected_id()
        ok = self.project is not None and not self.project.closed
        self.rows = version_rows(self.project) if ok else []
        cur = self.project.current_model_id if ok else None
        n = len(self.rows)
        self.heading.setText("No model yet: train one first." if not n else
                             f"{n} model version{'s' if n != 1 else ''}; the one in use is in bold.")
        self.table.setRowCount(n)
        bold = QFont()
        bold.setBold(True)
        for i, v in enumerate(self.rows):
            m = v.model
            met = v.metrics
            cells = [f"{m.name}" + ("  (in use)" if m.id == cur else ""), m.method,
                     v.parent.name if v.parent is not None else "–", v.change or "–", _when_who(v),
                     f"{m.image_threshold:.4g}",
                     f"{met['image_auroc']:.3f}" if "image_auroc" in met else "–",
                     f"{met['f1']:.3f}" if "f1" in met else "–",
                     (f"{met['true_positives']} / {met['missed']} / {met['false_alarms']}" if met else "–")]
            for j, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if j >= 5:
                    it.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if m.id == cur:
                    it.setFont(bold)
                if j == 0:
                    it.setData(Qt.UserRole, m.id)
                    it.setToolTip(str(self.project.model_file(m)))
                if j == 3 and v.parent is not None:
                    it.setForeground(QColor("#1e63c6"))
                self.table.setItem(i, j, it)
        row = next((i for i, v in enumerate(self.rows) if v.model.id == keep), None)
        if row is None:
            row = next((i for i, v in enumerate(self.rows) if v.model.id == cur), 0 if n else None)
        if row is not None:
            self.table.selectRow(row)
        self._selection_changed()

    def selected_id(self) -> Optional[int]:
        items = self.table.selectedItems()
        if not items:
            return None
        it = self.table.item(items[0].row(), 0)
        return None if it is None else it.data(Qt.UserRole)

    def _selection_changed(self) -> None:
        mid = self.selected_id()
        cur = self.project.current_model_id if self.project is not None and not self.project.closed else None
        self.use.setEnabled(mid is not None and mid != cur)
        self.use.setText("In use" if mid is not None and mid == cur else "Use this version")
        v = next((v for v in self.rows if v.model.id == mid), None)
        hist = ((v.model.meta.get("lineage") or {}).get("history") or []) if v else []
        if not hist:
            self.history.setText("")
            return
        lines = []
        for h in hist:
            images = h.get("images") or []
            what = str(h.get("what", ""))
            if images:
                names = ", ".join(str(p).replace("\\", "/").rsplit("/", 1)[-1] for p in images[:4])
                what += f" ({names}{' …' if len(images) > 4 else ''})"
            lines.append(f"v{h.get('version', '?')} · {str(h.get('when', ''))[:16].replace('T', ' ')} · "
                         f"{h.get('who', '?')} · {what}" + (f" · rule: {h['rule']}" if h.get("rule") else ""))
        self.history.setText("<b>History of this version</b><br>" + "<br>".join(lines))

    def use_selected(self) -> None:
        mid = self.selected_id()
        if mid is not None and self.project is not None and mid != self.project.current_model_id:
            self.modelAdopted.emit(int(mid))

"""Review: the flagged parts, highest score first. A = defect, N = false alarm, arrows move, Ctrl+Z undoes."""

from __future__ import annotations

from typing import List, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSplitter,
                               QVBoxLayout, QWidget)

from ..core.errors import InspectorError
from ..core.lineage import already_learnt
from ..project import ImageRow, Project
from .viewer import ImageViewer


def item_text(score: float, name: str, mark: Optional[str]) -> str:
    """A queue line: score, the operator's mark (when reviewed), the part's name (elided when long)."""
    return f"{score:.3f}   " + (f"{mark}   " if mark else "") + name


class LabelCommand(QUndoCommand):
    """Set one image's label in the project (committed at once); undo puts the old one back."""

    def __init__(self, panel: "ReviewPanel", image_id: int, label: str):
        super().__init__(f"mark {label}")
        self.panel, self.image_id, self.label = panel, image_id, label
        self.previous = None

    def redo(self) -> None:
        try:
            self.previous = self.panel.project.set_label(self.image_id, self.label, "operator")
        except InspectorError as exc:        # not saved (a full disk, a read-only view): say so
            self.setObsolete(True)           # and the undo stack drops this command
            self.panel.failed.emit(str(exc))
            return
        self.panel.label_changed(self.image_id)

    def undo(self) -> None:
        try:
            self.panel.project.set_label(self.image_id, *self.previous)
        except InspectorError as exc:
            self.setObsolete(True)
            self.panel.failed.emit(str(exc))
            return
        self.panel.label_changed(self.image_id, focus=True)


class ReviewPanel(QWidget):
    labelsChanged = Signal()
    failed = Signal(str)            # a label could not be saved: the message for the window
    addToModelRequested = Signal(object)    # ids of the false alarms to teach the model (a new version)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Optional[Project] = None
        self.model_id: Optional[int] = None
        self.rows: List[ImageRow] = []
        self.undo_stack = QUndoStack(self)

        self.queue = QListWidget()
        self.queue.setMinimumWidth(260)
        # long names are elided in the middle, never behind a horizontal scroll bar; the mark comes
        # before the name so that it always shows
        self.queue.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.queue.setTextElideMode(Qt.ElideMiddle)
        self.queue.currentRowChanged.connect(self._show_current)
        self.left = QLabel(objectName="heading")
        self.help = QLabel("<b>A</b> defect (anomalous) · <b>N</b> false alarm (normal) · "
                           "<b>← →</b> move · <b>Ctrl+Z</b> undo", objectName="counts")
        self.viewer = ImageViewer()
        self.viewer.view.setFocusPolicy(Qt.NoFocus)

        buttons = QHBoxLayout()
        self.mark_a = QPushButton("Defect (A)", objectName="danger")
        self.mark_a.clicked.connect(lambda: self.mark("anomalous"))
        self.mark_n = QPushButton("False alarm (N)")
        self.mark_n.clicked.connect(lambda: self.mark("good"))
        self.undo_button = QPushButton("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo_stack.undo)
        self.undo_stack.canUndoChanged.connect(self.undo_button.setEnabled)
        self.undo_button.setEnabled(False)
        self.add_button = QPushButton("Add false alarms to model")
        self.add_button.setToolTip("Teach the model the parts marked N (false alarm) here, without retraining: "
                                   "the result is a new version of the model, the current one stays")
        self.add_button.clicked.connect(self.request_add_to_model)
        for b in (self.mark_a, self.mark_n, self.undo_button):
            b.setFocusPolicy(Qt.NoFocus)
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.add_button.setFocusPolicy(Qt.NoFocus)
        buttons.addWidget(self.add_button)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(6, 6, 6, 6)
        ll.addWidget(self.left)
        ll.addWidget(self.queue, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(6, 6, 6, 6)
        rl.addWidget(self.help)
        rl.addLayout(buttons)
        rl.addWidget(self.viewer, 1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([330, 950])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        self.keys = {"A": lambda: self.mark("anomalous"), "N": lambda: self.mark("good"),
                     "Right": self.next, "Down": self.next, "Left": self.previous, "Up": self.previous,
                     QKeySequence(QKeySequence.Undo).toString(): self.undo_stack.undo,
                     QKeySequence(QKeySequence.Redo).toString(): self.undo_stack.redo}
        for key, fn in self.keys.items():
            QShortcut(QKeySequence(key), self, fn, context=Qt.WidgetWithChildrenShortcut)
        self.queue.setFocusPolicy(Qt.NoFocus)
        self.setFocusPolicy(Qt.StrongFocus)

    def keyPressEvent(self, event) -> None:
        """The same keys when the shortcuts do not fire (e.g. the window is not the active one)."""
        seq = QKeySequence(event.keyCombination()).toString()
        fn = self.keys.get(seq)
        if fn is not None:
            fn()
            event.accept()
        else:
            super().keyPressEvent(event)

    # -- data ------------------------------------------------------------------------------------
    def set_project(self, project: Optional[Project], model_id: Optional[int]) -> None:
        if project is not self.project or model_id != self.model_id:
            self.viewer.reset()              # nothing of another project (or model) stays shown
        self.project, self.model_id = project, model_id
        self.undo_stack.clear()
        self.reload()

    def reload(self) -> None:
        """Re-read the queue from the project (after an inspection or a threshold change)."""
        current = self.current_id()
        if self.project is None or self.project.closed or self.model_id is None:
            self.rows = []
        else:
            self.rows = self.project.review_queue(self.model_id)
        model = self.project.model(self.model_id) if self.rows else None
        if model is not None:
            scores = [s for s, _ in self.project.scores(self.model_id)]
            self.viewer.set_model(model, (min(scores), max(scores)) if scores else None)
        self.queue.blockSignals(True)
        self.queue.clear()
        for r in self.rows:
            self.queue.addItem(QListWidgetItem())
        self.queue.blockSignals(False)
        for i in range(len(self.rows)):
            self._paint_item(i)
        row = next((i for i, r in enumerate(self.rows) if r.id == current), None)
        if row is None:
            row = self.first_unreviewed()
        self.queue.setCurrentRow(row if row is not None else (0 if self.rows else -1))
        if not self.rows:
            self.viewer.show_row(None)
        self._update_left()

    def _paint_item(self, i: int) -> None:
        r = self.rows[i]
        item = self.queue.item(i)
        mark = {"anomalous": "✔ defect", "good": "✘ false alarm"}.get(r.label) if r.label_source == "operator" else None
        item.setText(item_text(r.score, r.name, mark))
        item.setToolTip(r.path)
        item.setForeground(QColor("#8a929c") if mark else QColor("#1c2733"))

    def label_changed(self, image_id: int, focus: bool = False) -> None:
        i = next((k for k, r in enumerate(self.rows) if r.id == image_id), None)
        if i is None:
            return
        self.rows[i] = self.project.image(image_id, self.model_id)
        self._paint_item(i)
        if focus:
            self.queue.setCurrentRow(i)
        elif self.queue.currentRow() == i:
            self.viewer.row = self.rows[i]
            self.viewer._update_info()
        self._update_left()
        self.labelsChanged.emit()

    def reviewed(self, r: ImageRow) -> bool:
        return r.label_source == "operator"

    def left_count(self) -> int:
        return sum(1 for r in self.rows if not self.reviewed(r))

    def first_unreviewed(self, start: int = 0) -> Optional[int]:
        n = len(self.rows)
        for k in range(n):
            i = (start + k) % n
            if not self.reviewed(self.rows[i]):
                return i
        return None

    def _update_left(self) -> None:
        n, left = len(self.rows), self.left_count()
        if self.model_id is None:
            self.left.setText("No model yet: train one first.")
        elif n == 0:
            self.left.setText("Nothing flagged. Inspect images to fill the queue.")
        elif left == 0:
            self.left.setText(f"All {n} flagged parts reviewed ✔")
        else:
            self.left.setText(f"{left} of {n} flagged parts left to review")
        for b in (self.mark_a, self.mark_n):
            b.setEnabled(n > 0)
        k = len(self.addable_ids())
        self.add_button.setEnabled(k > 0)
        self.add_button.setText(f"Add {k} false alarm{'s' if k != 1 else ''} to model" if k else
                                "Add false alarms to model")

    def addable_ids(self) -> List[int]:
        """False alarms the operator marked N that the model has not learnt yet."""
        if self.project is None or self.project.closed or self.model_id is None or not self.rows:
            return []
        learnt = already_learnt(self.project.model(self.model_id).meta)
        return [r.id for r in self.rows if r.label == "good" and r.label_source == "operator" and r.path not in learnt]

    def request_add_to_model(self) -> None:
        ids = self.addable_ids()
        if ids:
            self.addToModelRequested.emit(ids)

    # -- actions ---------------------------------------------------------------------------------
    def current_id(self) -> Optional[int]:
        i = self.queue.currentRow()
        return self.rows[i].id if 0 <= i < len(self.rows) else None

    def mark(self, label: str) -> None:
        i = self.queue.currentRow()
        if self.project is None or not (0 <= i < len(self.rows)):
            return
        command = LabelCommand(self, self.rows[i].id, label)
        self.undo_stack.push(command)
        if command.previous is None:       # not saved: stay on this part
            return
        nxt = self.first_unreviewed(i + 1)
        self.queue.setCurrentRow(nxt if nxt is not None else min(i + 1, len(self.rows) - 1))

    def next(self) -> None:
        self.queue.setCurrentRow(min(self.queue.currentRow() + 1, len(self.rows) - 1))

    def previous(self) -> None:
        self.queue.setCurrentRow(max(self.queue.currentRow() - 1, 0))

    def _show_current(self, i: int) -> None:
        if self.project is None or not (0 <= i < len(self.rows)):
            return
        r = self.rows[i]
        self.viewer.reset_threshold()
        mask = self.project.load_mask(r) if r.mask_path else None      # outlined: is the red on the defect?
        self.viewer.show_row(r, self.project.load_map(r), mask)

"""The dataset browser: a thumbnail grid with filters, sorting and counts per group."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QListView, QStyle, QStyledItemDelegate,
                               QVBoxLayout, QWidget)

from ..project import ImageRow, Project
from .thumbnails import THUMB, ThumbnailCache

RowRole = Qt.UserRole + 1
CELL = QSize(THUMB + 20, THUMB + 58)


def thumb_lines(r: ImageRow):
    """(folder, file name) under a thumbnail: the folder is the defect type in a dataset's layout
    (``broken_large`` / ``004.png``), so parts with the same file name can be told apart."""
    p = Path(r.path)
    return p.parent.name, p.name
RED, BLUE, GREY = QColor("#d32f2f"), QColor("#1e63c6"), QColor("#8a929c")


class ImageListModel(QAbstractListModel):
    def __init__(self, thumbs: ThumbnailCache, parent=None):
        super().__init__(parent)
        self.rows: List[ImageRow] = []
        self._index: Dict[int, int] = {}
        self.thumbs = thumbs
        thumbs.ready.connect(self._thumb_ready)

    def set_rows(self, rows: List[ImageRow]) -> None:
        if rows and len(rows) == len(self.rows) and all(a.id == b.id for a, b in zip(rows, self.rows)):
            self.rows = rows                      # same images in the same order: repaint, keep the view
            self.dataChanged.emit(self.index(0), self.index(len(rows) - 1))
            return
        self.beginResetModel()
        self.rows = rows
        self._index = {r.id: i for i, r in enumerate(rows)}
        self.endResetModel()

    def row_of(self, image_id: int) -> Optional[int]:
        return self._index.get(image_id)

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        if role == Qt.DisplayRole:
            return r.name
        if role == RowRole:
            return r
        if role == Qt.DecorationRole:
            return self.thumbs.get(r.id, r.path)
        if role == Qt.ToolTipRole:
            lines = [r.path, f"split: {r.split}", f"label: {r.label or 'none'}"
                     + (f" ({r.label_source})" if r.label_source else "")]
            if r.score is not None:
                lines.append(f"score: {r.score:.4g}  →  {r.verdict}")
            err = r.error or self.thumbs.errors.get(r.id)
            if r.readable is False or err:
                lines.append(f"cannot be read: {err}")
            return "\n".join(lines)
        return None

    def _thumb_ready(self, image_id: int) -> None:
        row = self._index.get(image_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.DecorationRole])


class ThumbDelegate(QStyledItemDelegate):
    """Thumbnail, name, score and a coloured verdict strip; a red cross on unreadable images."""

    def __init__(self, thumbs: ThumbnailCache, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs

    def sizeHint(self, option, index) -> QSize:
        return CELL

    def paint(self, p: QPainter, option, index) -> None:
        r: ImageRow = index.data(RowRole)
        rect = option.rect.adjusted(3, 3, -3, -3)
        p.save()
        p.setRenderHint(QPainter.Antialiasing)
        selected = bool(option.state & QStyle.State_Selected)
        p.setPen(QPen(QColor("#2962ff"), 2) if selected else QPen(QColor("#d9dce1"), 1))
        p.setBrush(QColor("#e8eef9") if selected else QColor("#ffffff"))
        p.drawRoundedRect(rect, 5, 5)
        img_rect = QRect(rect.left() + (rect.width() - THUMB) // 2, rect.top() + 6, THUMB, THUMB)
        err = r.error or self.thumbs.errors.get(r.id)
        pm = index.data(Qt.DecorationRole)
        if r.readable is False or err:
            p.fillRect(img_rect, QColor("#fdecea"))
            p.setPen(QPen(RED, 3))
            m = img_rect.adjusted(30, 30, -30, -30)
            p.drawLine(m.topLeft(), m.bottomRight())
            p.drawLine(m.topRight(), m.bottomLeft())
            p.setPen(RED)
            p.drawText(img_rect.adjusted(0, 0, 0, -4), Qt.AlignHCenter | Qt.AlignBottom, "unreadable")
        elif pm is not None:
            x = img_rect.left() + (THUMB - pm.width()) // 2
            y = img_rect.top() + (THUMB - pm.height()) // 2
            p.drawPixmap(x, y, pm)
        else:
            p.fillRect(img_rect, QColor("#eceef2"))
            p.setPen(GREY)
            p.drawText(img_rect, Qt.AlignCenter, "…")
        # verdict strip and badges
        if r.verdict:
            p.fillRect(QRect(img_rect.left(), img_rect.bottom() - 4, THUMB, 5),
                       RED if r.verdict == "anomalous" else BLUE)
        if r.label:
            badge = QRect(img_rect.left() + 3, img_rect.top() + 3, 18, 18)
            color = QColor("#c62828") if r.label == "anomalous" else QColor("#2e7d32")
            operator = r.label_source == "operator"   # filled: the operator's; outlined: the dataset's
            p.setPen(QPen(color, 2))
            p.setBrush(color if operator else QColor(255, 255, 255, 220))
            p.drawEllipse(badge)
            p.setPen(Qt.white if operator else color)
            f = QFont(p.font())
            f.setBold(True)
            p.setFont(f)
            p.drawText(badge, Qt.AlignCenter, "A" if r.label == "anomalous" else "N")
            p.setFont(option.font)
        text_rect = QRect(rect.left() + 4, img_rect.bottom() + 4, rect.width() - 8, 15)
        folder, name = elided_lines(r, p.fontMetrics(), text_rect.width())
        p.setPen(GREY)
        p.drawText(text_rect, Qt.AlignHCenter | Qt.AlignVCenter, folder)
        p.setPen(QColor("#1c2733"))
        p.drawText(text_rect.translated(0, 15), Qt.AlignHCenter | Qt.AlignVCenter, name)
        if r.score is not None:
            p.setPen(RED if r.verdict == "anomalous" else BLUE)
            p.drawText(text_rect.translated(0, 30), Qt.AlignHCenter | Qt.AlignVCenter, f"{r.score:.3g}")
        p.restore()


def elided_lines(r: ImageRow, metrics, width: int):
    """The two text lines under a thumbnail, elided in the middle to ``width`` pixels."""
    return tuple(metrics.elidedText(t, Qt.ElideMiddle, width) for t in thumb_lines(r))


def _combo(items) -> QComboBox:
    c = QComboBox()
    for text, data in items:
        c.addItem(text, data)
    # narrow enough that the browser leaves the viewer the room (its text is elided when needed)
    c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    c.setMinimumContentsLength(11)
    return c


class BrowserPanel(QWidget):
    """Filters and counts above a thumbnail grid. Emits ``imageSelected(image_id)``."""

    imageSelected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Optional[Project] = None
        self.model_id: Optional[int] = None
        self._quiet = False
        self.thumbs = ThumbnailCache(parent=self)
        self.thumbs.unreadable.connect(self._mark_unreadable)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        bar = QGridLayout()
        bar.setHorizontalSpacing(6)
        bar.setVerticalSpacing(4)
        self.split = _combo([("All splits", None), ("Train (good images)", "train"), ("Test / inspect", "test")])
        self.label = _combo([("Any label", None), ("Labelled good", "good"),
                             ("Labelled anomalous", "anomalous"), ("Unlabelled", "none")])
        self.verdict = _combo([("Any verdict", None), ("Verdict: anomalous", "anomalous"),
                               ("Verdict: normal", "normal"), ("Not inspected", "none")])
        self.sort = _combo([("Sort by name", "path"), ("Highest score first", "score"),
                            ("Lowest score first", "score_asc")])
        for k, c in enumerate((self.split, self.label, self.verdict, self.sort)):
            c.currentIndexChanged.connect(self.refresh)
            c.setToolTip(c.itemText(0))
            bar.addWidget(c, k // 2, k % 2)
        lay.addLayout(bar)
        self.counts = QLabel(objectName="counts")
        self.counts.setWordWrap(True)
        lay.addWidget(self.counts)

        self.model = ImageListModel(self.thumbs, self)
        self.view = QListView()
        self.view.setViewMode(QListView.IconMode)
        self.view.setResizeMode(QListView.Adjust)
        self.view.setMovement(QListView.Static)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.Batched)
        self.view.setBatchSize(200)
        self.view.setGridSize(CELL + QSize(4, 4))
        self.view.setSpacing(0)
        self.view.setItemDelegate(ThumbDelegate(self.thumbs, self.view))
        self.view.setModel(self.model)
        self.view.setSelectionMode(QListView.SingleSelection)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        lay.addWidget(self.view, 1)

    def set_project(self, project: Optional[Project], model_id: Optional[int]) -> None:
        self.thumbs.shutdown()
        self.thumbs.errors.clear()
        self.thumbs._pixmaps.clear()
        self.thumbs._pending.clear()
        self.thumbs.cache_dir = project.folder / "cache" / "thumbs" if project else None
        self.project, self.model_id = project, model_id
        self.refresh()

    def set_model(self, model_id: Optional[int]) -> None:
        self.model_id = model_id
        self.refresh()

    def refresh(self) -> None:
        if self.project is None or self.project.closed:
            self.model.set_rows([])
            self.counts.setText("")
            return
        current = self.current_id()
        scroll = self.view.verticalScrollBar().value()
        rows = self.project.images(self.model_id, split=self.split.currentData(), label=self.label.currentData(),
                                   verdict=self.verdict.currentData(), order=self.sort.currentData())
        self.model.set_rows(rows)
        c = self.project.counts(self.model_id)
        parts = [f"<b>{len(rows)}</b> shown of {c['total']}",
                 f"train {c['train']}", f"test {c['test']}",
                 f"labelled good {c['good']}", f"labelled anomalous {c['anomalous']}",
                 f"unlabelled {c['unlabelled']}"]
        if self.model_id is not None:
            # only the images to inspect count as "not inspected": training images never get a verdict
            pending = len(self.project.images(self.model_id, split="test", verdict="none"))
            parts += [f"<span style='color:#d32f2f'>verdict anomalous {c['verdict_anomalous']}</span>",
                      f"<span style='color:#1e63c6'>normal {c['verdict_normal']}</span>",
                      f"test not inspected {pending}"]
        if c["unreadable"]:
            parts.append(f"<span style='color:#d32f2f'><b>unreadable {c['unreadable']}</b></span>")
        self.counts.setText(" · ".join(parts))
        if current is not None:
            self.select(current, notify=False)
        self.view.verticalScrollBar().setValue(scroll)

    def current_id(self) -> Optional[int]:
        idx = self.view.currentIndex()
        return self.model.rows[idx.row()].id if idx.isValid() and idx.row() < len(self.model.rows) else None

    def select(self, image_id: int, notify: bool = True) -> bool:
        row = self.model.row_of(image_id)
        if row is None:
            return False
        self._quiet = not notify
        try:
            self.view.setCurrentIndex(self.model.index(row))
        finally:
            self._quiet = False
        return True

    def _current_changed(self, current, previous) -> None:
        if current.isValid() and not self._quiet:
            self.imageSelected.emit(self.model.rows[current.row()].id)

    def _mark_unreadable(self, image_id: int, reason: str) -> None:
        if self.project is not None and not self.project.closed and not self.project.read_only:
            self.project.set_readable(image_id, False, reason)

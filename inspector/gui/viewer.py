"""The viewer: an image with its anomaly map overlaid, threshold and opacity sliders, zoom and pan.

Colours and contours come from the engine (:mod:`inspector.core.overlay`): blue is normal, red is
anomalous, the pixel threshold sits in the middle of the scale.  The threshold slider moves the
image threshold (the verdict) and, by the same amount, the pixel threshold (the contours), live.

The colour is shown only where the map comes near the pixel threshold (from 3/4 of it; the
scale stays blue-to-red), so a normal part is not tinted blue all over; *Colour the whole part*
shows the full map.  The defect mask is outlined in magenta (filled while painting, or with *Fill
mask*), so that the heat map under it stays readable; an editable viewer (the main
window's) paints it with brush, eraser and fill (:mod:`.painting`), Ctrl+Z / Ctrl+Shift+Z undo and
redo whole strokes, and every change is announced with ``maskEdited`` so that it is saved at once.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPainterPath, QPen, QPixmap, QPolygonF, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QFormLayout, QFrame, QGraphicsPathItem,
                               QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QHBoxLayout, QLabel,
                               QPushButton, QSlider, QVBoxLayout, QWidget)

from ..core.errors import ImageReadError
from ..core.images import read_image
from ..core.overlay import COLOUR_FLOOR, colorize_rgba, contours
from ..core import thresholds
from ..project import ImageRow, ModelRow
from .painting import MaskPainter, to_qimage_rgba

SLIDER_STEPS = 1000


def to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def mask_painted(r: ImageRow) -> bool:
    """Whether the row's mask is the operator's (painted here), not the dataset's ground truth."""
    return bool(r.mask_path) and r.mask_path != r.dataset_mask


def label_text(r: Optional[ImageRow]) -> str:
    """The label line: the label, who gave it, and where its mask comes from."""
    if r is None or not r.label:
        return "–"
    text = f"{r.label} ({'operator' if r.label_source == 'operator' else 'from dataset'})"
    if r.label == "anomalous" and r.mask_path:
        text += ", mask painted by operator" if mask_painted(r) else ", mask from dataset"
    return text


class ZoomView(QGraphicsView):
    """Wheel zooms around the cursor, dragging pans, ``fit()`` shows the whole image."""

    def __init__(self, scene, parent=None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.Antialiasing | QPainter.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setBackgroundBrush(QColor("#2b2f36"))
        self.setFrameShape(QFrame.NoFrame)
        self.fitting = True

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self.fitting = True
        rect = self.scene().itemsBoundingRect()
        if not rect.isEmpty():
            self.fitInView(rect, Qt.KeepAspectRatio)

    def zoom_by(self, factor: float) -> None:
        new = self.zoom * factor
        if 0.02 <= new <= 64:
            self.fitting = False
            self.scale(factor, factor)

    def actual_size(self) -> None:
        self.fitting = False
        self.resetTransform()

    def wheelEvent(self, event) -> None:
        dy = event.angleDelta().y()
        if dy:
            self.zoom_by(1.25 if dy > 0 else 0.8)
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.fitting:
            self.fit()


class ImageViewer(QWidget):
    """Shows one image row; ``thresholdApplied(value)`` when the operator keeps a new threshold."""

    thresholdApplied = Signal(float)
    # image id, mask (bool H×W), and the image's label as it was when shown ((label, source,
    # mask_path)) when every stroke has been undone, else None
    maskEdited = Signal(int, object, object)
    statusMessage = Signal(str)     # what a painting tool did, or why it did nothing (for the status bar)

    def __init__(self, parent=None, editable: bool = False):
        super().__init__(parent)
        self.editable = editable
        self._original_label = None
        self.row: Optional[ImageRow] = None
        self.model: Optional[ModelRow] = None
        self.image: Optional[np.ndarray] = None
        self.amap: Optional[np.ndarray] = None
        self.range: Tuple[float, float] = (0.0, 1.0)
        self.threshold: Optional[float] = None

        self.scene = QGraphicsScene(self)
        self.base = QGraphicsPixmapItem()
        self.base.setTransformationMode(Qt.SmoothTransformation)
        self.overlay = QGraphicsPixmapItem()
        self.overlay.setTransformationMode(Qt.SmoothTransformation)
        self.outline = QGraphicsPathItem()
        pen = QPen(QColor("#ffeb3b"), 2)
        pen.setCosmetic(True)
        self.outline.setPen(pen)
        for z, item in enumerate((self.base, self.overlay, self.outline)):
            item.setZValue(z)
            self.scene.addItem(item)
        self.view = ZoomView(self.scene)
        self.message = QLabel("Select an image to see it here.", objectName="counts")
        self.message.setAlignment(Qt.AlignCenter)
        self.message.setWordWrap(True)

        side = QWidget()
        side.setFixedWidth(300)
        form = QVBoxLayout(side)
        form.setContentsMargins(8, 4, 8, 4)
        self.name = QLabel(objectName="heading")
        self.name.setWordWrap(True)
        self.verdict = QLabel("not inspected", objectName="verdict_none")
        self.verdict.setAlignment(Qt.AlignCenter)
        info = QFormLayout()
        self.score = QLabel("–")
        self.label = QLabel("–")
        self.label.setWordWrap(True)
        self.model_label = QLabel("–")
        self.model_label.setWordWrap(True)
        self.thresholds = QLabel("–")
        self.thresholds.setWordWrap(True)
        for text, w in (("Score", self.score), ("Label", self.label), ("Model", self.model_label),
                        ("Thresholds", self.thresholds)):
            info.addRow(text, w)
        form.addWidget(self.name)
        form.addWidget(self.verdict)
        form.addLayout(info)

        self.show_overlay = QCheckBox("Show anomaly map (O)")
        self.show_overlay.setChecked(True)
        self.show_overlay.toggled.connect(self._update_visibility)
        form.addWidget(self.show_overlay)
        self.colour_all = QCheckBox("Colour the whole part")
        self.colour_all.setToolTip("Off: colour only where the map comes near the pixel threshold (from 3/4 "
                                   "of it), so normal areas show the part itself. On: the whole blue-to-red map.")
        self.colour_all.toggled.connect(lambda on: self._redraw_map())
        form.addWidget(self.colour_all)
        form.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100))
        form.addWidget(self.opacity)
        self.threshold_title = QLabel("Threshold")
        form.addWidget(self.threshold_title)
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(0, SLIDER_STEPS)
        self.threshold_slider.setToolTip("Move to see which parts would be flagged at another threshold; "
                                         "the contours follow.")
        self.threshold_slider.valueChanged.connect(self._slider_moved)
        form.addWidget(self.threshold_slider)
        row = QHBoxLayout()
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset_threshold)
        self.apply_button = QPushButton("Use for model")
        self.apply_button.setToolTip("Keep this threshold for the model: verdicts of all its results are redone")
        self.apply_button.clicked.connect(lambda: self.threshold is not None and
                                          self.thresholdApplied.emit(self.threshold))
        row.addWidget(self.reset_button)
        row.addWidget(self.apply_button)
        form.addLayout(row)
        zoom = QHBoxLayout()
        for text, fn in (("Fit", self.view.fit), ("100%", self.view.actual_size),
                         ("+", lambda: self.view.zoom_by(1.25)), ("−", lambda: self.view.zoom_by(0.8))):
            b = QPushButton(text, objectName="tool")
            b.clicked.connect(fn)
            zoom.addWidget(b)
        form.addLayout(zoom)

        self.painter = MaskPainter(self.view, z=3)
        self.painter.maskChanged.connect(self._mask_changed)
        self.painter.message.connect(self.statusMessage)
        masks = QHBoxLayout()
        self.show_mask = QCheckBox("Show defect mask (M)")
        self.show_mask.setChecked(True)
        self.show_mask.setToolTip("The defect mask, outlined in magenta")
        self.show_mask.toggled.connect(self.painter.set_visible)
        self.fill_mask = QCheckBox("Fill mask")
        self.fill_mask.setToolTip("Fill the mask also when not painting (it hides the heat map under it)")
        self.fill_mask.toggled.connect(self.painter.set_filled)
        masks.addWidget(self.show_mask)
        masks.addWidget(self.fill_mask)
        masks.addStretch(1)
        form.addLayout(masks)
        self.mask_box = QWidget()
        mb = QVBoxLayout(self.mask_box)
        mb.setContentsMargins(0, 0, 0, 0)
        tools = QHBoxLayout()
        self.tool_buttons = {}
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        for key, text, tip in (("pan", "Pan", "Drag to move the image (Esc)"),
                               ("brush", "Brush", "Paint the defect (B); painting marks the image anomalous"),
                               ("eraser", "Eraser", "Erase painted pixels (E)"),
                               ("fill", "Fill", "Fill a closed painted outline (G)")):
            b = QPushButton(text, objectName="tool")
            b.setCheckable(True)
            b.setToolTip(tip)
            b.clicked.connect(lambda checked=False, k=key: self.set_tool(k))
            self.tool_group.addButton(b)
            self.tool_buttons[key] = b
            tools.addWidget(b)
        self.tool_buttons["pan"].setChecked(True)
        mb.addLayout(tools)
        self.size_title = QLabel()
        mb.addWidget(self.size_title)
        self.brush_size = QSlider(Qt.Horizontal)
        self.brush_size.setRange(1, 100)
        self.brush_size.setToolTip("Brush and eraser radius in image pixels ([ and ])")
        self.brush_size.valueChanged.connect(self._size_changed)
        self.brush_size.setValue(8)
        mb.addWidget(self.brush_size)
        edit = QHBoxLayout()
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last stroke (Ctrl+Z)")
        self.undo_button.clicked.connect(self.painter.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.redo_button.clicked.connect(self.painter.redo)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove the whole mask (can be undone)")
        self.clear_button.clicked.connect(self.painter.clear)
        self.painter.undo_stack.canUndoChanged.connect(self.undo_button.setEnabled)
        self.painter.undo_stack.canRedoChanged.connect(self.redo_button.setEnabled)
        self.undo_button.setEnabled(False)
        self.redo_button.setEnabled(False)
        for b in (self.undo_button, self.redo_button, self.clear_button):
            b.setObjectName("tool")
            edit.addWidget(b)
        mb.addLayout(edit)
        self.mask_info = QLabel(objectName="counts")
        self.mask_info.setWordWrap(True)
        mb.addWidget(self.mask_info)
        form.addWidget(self.mask_box)
        self.mask_box.setVisible(editable)
        form.addStretch(1)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        left = QVBoxLayout()
        left.addWidget(self.view, 1)
        left.addWidget(self.message)
        lay.addLayout(left, 1)
        lay.addWidget(side)

        QShortcut(QKeySequence("O"), self, self.show_overlay.toggle, context=Qt.WidgetWithChildrenShortcut)
        QShortcut(QKeySequence("F"), self, self.view.fit, context=Qt.WidgetWithChildrenShortcut)
        QShortcut(QKeySequence("M"), self, self.show_mask.toggle, context=Qt.WidgetWithChildrenShortcut)
        if editable:
            self.keys = {"Ctrl+Z": self.painter.undo, "Ctrl+Shift+Z": self.painter.redo,
                         "Ctrl+Y": self.painter.redo, "B": lambda: self.set_tool("brush"),
                         "E": lambda: self.set_tool("eraser"), "G": lambda: self.set_tool("fill"),
                         "Esc": lambda: self.set_tool("pan"),
                         "[": lambda: self.brush_size.setValue(max(1, int(self.brush_size.value() / 1.25))),
                         "]": lambda: self.brush_size.setValue(int(self.brush_size.value() * 1.25) + 1)}
            for key, fn in self.keys.items():
                QShortcut(QKeySequence(key), self, fn, context=Qt.WidgetWithChildrenShortcut)
        else:
            self.keys = {}
        self._redraw_timer = QTimer(self, singleShot=True, interval=0, timeout=self._redraw_map)
        self._set_controls_enabled(False)

    # -- the mask --------------------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:
        """The painting keys also when the shortcuts do not fire (the window is not active)."""
        fn = self.keys.get(QKeySequence(event.keyCombination()).toString())
        if fn is not None:
            fn()
            event.accept()
        else:
            super().keyPressEvent(event)

    def set_tool(self, tool: str) -> None:
        if not self.editable and tool != "pan":
            return
        self.painter.set_tool(tool)
        self.tool_buttons[tool].setChecked(True)
        if tool != "pan":
            self.show_mask.setChecked(True)

    def _size_changed(self, v: int) -> None:
        self.painter.set_radius(v)
        self.size_title.setText(f"Brush size: {v} px")

    @property
    def mask(self) -> Optional[np.ndarray]:
        return self.painter.mask

    def _mask_changed(self, mask: np.ndarray, at_start: bool) -> None:
        if self.row is None:
            return
        self._update_mask_info()
        self.maskEdited.emit(self.row.id, mask, self._original_label if at_start else None)

    def _update_mask_info(self) -> None:
        m = self.painter.mask
        if m is None:
            self.mask_info.setText("")
            return
        n = int(m.sum())
        self.mask_info.setText(f"Mask: {n} px ({100 * n / m.size:.2g}% of the image)" if n else
                               "No mask. Choose Brush (B) and paint the defect: the image is then "
                               "labelled anomalous and the mask is saved with the project.")

    # -- what is shown -------------------------------------------------------------------------
    def set_model(self, model: Optional[ModelRow], score_range: Optional[Tuple[float, float]] = None) -> None:
        """The model whose results are shown; ``score_range`` bounds the threshold slider."""
        self.model = model
        if model is not None and not (math.isfinite(model.image_threshold) and math.isfinite(model.pixel_threshold)):
            self.model = None       # thresholds not set (too few good images to hold some out)
        if self.model is not None:
            t = model.image_threshold
            lo, hi = score_range if score_range else (0.0, 2 * t)
            lo, hi = min(lo, t), max(hi, t)
            pad = 0.05 * (hi - lo) or max(abs(t), 1.0) * 0.5
            self.range = (lo - pad, hi + pad)
            self.threshold = t
        else:
            self.threshold = None
        self._sync_slider()

    def show_row(self, row: Optional[ImageRow], amap: Optional[np.ndarray] = None,
                 mask: Optional[np.ndarray] = None) -> None:
        """Show ``row`` (read from disk) with its anomaly map and defect mask when it has them.

        Showing the same image again keeps the mask being painted and its undo steps."""
        same = (row is not None and self.row is not None and row.id == self.row.id
                and self.image is not None and self.painter.canvas is not None)
        self.row, self.amap = row, amap
        if not same:
            self.image = None
            self.painter.set_image(None)
        if row is None:
            self._clear("Select an image to see it here.")
            return
        if same:
            if amap is not None and amap.shape != self.image.shape[:2]:
                self.amap = None
            self._redraw_map()
            self._update_info()
            self._set_controls_enabled(True)
            return
        self._original_label = (row.label, row.label_source, row.mask_path)
        self.name.setText(row.name)
        self.name.setToolTip(row.path)
        try:
            self.image = read_image(row.path)
        except ImageReadError as exc:
            self._clear(f"This image cannot be read: {exc.reason}")
            self.name.setText(row.name)
            return
        if amap is not None and amap.shape != self.image.shape[:2]:
            self.amap = None
        self.message.setText("" if self.amap is not None else
                             ("No anomaly map: inspect this image with a model to see one."
                              if row.score is None else "The anomaly map of this result is missing."))
        self.message.setVisible(bool(self.message.text()))
        self.base.setPixmap(QPixmap.fromImage(to_qimage(self.image)))
        self.scene.setSceneRect(QRectF(0, 0, self.image.shape[1], self.image.shape[0]))
        self.painter.set_image(self.image.shape[:2], mask)
        self._update_mask_info()
        self._redraw_map()
        self._update_info()
        self._set_controls_enabled(True)
        self.view.fit()

    def reset(self) -> None:
        """Nothing shown and no model: what a closed project leaves (nothing of it carries over)."""
        self.set_model(None)
        self.show_row(None)

    def _clear(self, text: str) -> None:
        self.base.setPixmap(QPixmap())
        self.overlay.setPixmap(QPixmap())
        self.outline.setPath(QPainterPath())
        self.message.setText(text)
        self.message.setVisible(True)
        self.name.setText("")
        self.name.setToolTip("")
        self.mask_info.setText("")
        self._update_info()
        self._set_controls_enabled(False)

    def _set_controls_enabled(self, on: bool) -> None:
        has_map = on and self.amap is not None
        for w in (self.show_overlay, self.opacity, self.colour_all):
            w.setEnabled(has_map)
        has_model = on and self.model is not None
        for w in (self.threshold_slider, self.reset_button, self.apply_button):
            w.setEnabled(has_model)
        self.mask_box.setEnabled(on and self.editable)
        if not on and self.editable:
            self.set_tool("pan")

    # -- threshold -----------------------------------------------------------------------------
    def _to_slider(self, value: float) -> int:
        lo, hi = self.range
        return int(round((value - lo) / (hi - lo) * SLIDER_STEPS)) if hi > lo else 0

    def _from_slider(self, pos: int) -> float:
        lo, hi = self.range
        return lo + (hi - lo) * pos / SLIDER_STEPS

    def _sync_slider(self) -> None:
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(self._to_slider(self.threshold) if self.threshold is not None else 0)
        self.threshold_slider.blockSignals(False)
        self._update_info()

    def set_threshold(self, value: float) -> None:
        """Preview another image threshold (the slider follows)."""
        self.threshold = float(value)
        self._sync_slider()
        self._redraw_timer.start()

    def reset_threshold(self) -> None:
        if self.model is not None:
            self.set_threshold(self.model.image_threshold)

    def _slider_moved(self, pos: int) -> None:
        if self.model is None:
            return
        self.threshold = self._from_slider(pos)
        self._update_info()
        self._redraw_timer.start()

    @property
    def pixel_threshold(self) -> Optional[float]:
        """The model's pixel threshold, moved with the image threshold (the engine's rule, which the
        project stores with "Use for model")."""
        if self.model is None:
            return None
        m = self.model
        return thresholds.shifted_pixel_threshold(m.pixel_threshold, m.image_threshold, self.threshold)

    @property
    def current_verdict(self) -> Optional[str]:
        if self.row is None or self.row.score is None or self.threshold is None:
            return None
        return thresholds.verdict(self.row.score, self.threshold)

    # -- drawing -------------------------------------------------------------------------------
    def _redraw_map(self) -> None:
        if self.amap is None or self.model is None:
            self.overlay.setPixmap(QPixmap())
            self.outline.setPath(QPainterPath())
            return
        pt = self.pixel_threshold
        rgba = colorize_rgba(self.amap, pt, floor=0.0 if self.colour_all.isChecked() else COLOUR_FLOOR)
        self.overlay.setPixmap(QPixmap.fromImage(to_qimage_rgba(rgba)))
        self.overlay.setOpacity(self.opacity.value() / 100)
        path = QPainterPath()
        for c in contours(self.amap, pt):
            if len(c) >= 2:
                poly = QPolygonF([QPointF(float(x) + 0.5, float(y) + 0.5) for x, y in c])
                path.addPolygon(poly)
                path.closeSubpath()
        self.outline.setPath(path)
        self._update_visibility()

    def _update_visibility(self) -> None:
        on = self.show_overlay.isChecked()
        self.overlay.setVisible(on)
        self.outline.setVisible(on)

    def _update_info(self) -> None:
        r = self.row
        v = self.current_verdict
        if r is None or r.score is None:
            self.verdict.setText("not inspected")
            self.verdict.setObjectName("verdict_none")
            self.score.setText("–")
        else:
            self.verdict.setText("ANOMALOUS" if v == "anomalous" else "NORMAL")
            self.verdict.setObjectName(f"verdict_{v}")
            self.score.setText(f"{r.score:.4g}")
        self.verdict.style().unpolish(self.verdict)
        self.verdict.style().polish(self.verdict)
        self.label.setText(label_text(r))
        m = self.model
        self.model_label.setText(m.title if m else "no model yet")
        if m is not None and self.threshold is not None:
            moved = abs(self.threshold - m.image_threshold) > 1e-12
            self.thresholds.setText(f"image {self.threshold:.4g}" + (f" (model: {m.image_threshold:.4g})" if moved else "")
                                    + f"\npixel {self.pixel_threshold:.4g}")
            self.threshold_title.setText(f"Threshold: {self.threshold:.4g}")
        else:
            self.thresholds.setText("–")
            self.threshold_title.setText("Threshold")

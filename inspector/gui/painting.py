"""Mask painting: brush, eraser, fill of a closed region, clear, with undo/redo per stroke.

Two layers:

- :class:`MaskCanvas` is plain numpy (no Qt): a bool H×W mask and the operations on it, so it can
  be unit-tested on its own.
- :class:`MaskPainter` puts a canvas on a :class:`QGraphicsView`: it turns mouse drags into strokes,
  shows the mask over the image in its own colour (semi-transparent magenta, unlike the blue-red
  anomaly map), and keeps a :class:`QUndoStack` of snapshot commands, one per stroke (as labelme
  does).  Every change (a stroke ending, a fill, a clear, an undo, a redo) is announced with
  ``maskChanged(mask, at_start)`` so that the owner saves it at once; ``at_start`` is true when
  the undo stack is back where the image was opened.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsView

MASK_RGBA = (255, 0, 220, 130)      # magenta, about half transparent
TOOLS = ("pan", "brush", "eraser", "fill")

Point = Tuple[float, float]


class MaskCanvas:
    """A bool mask with brush, eraser, flood fill and clear. Coordinates are image pixels (x, y)."""

    def __init__(self, shape: Tuple[int, int], mask: Optional[np.ndarray] = None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.mask = np.zeros(self.shape, bool)
        if mask is not None:
            self.set(mask)

    def set(self, mask: np.ndarray) -> None:
        m = np.asarray(mask)
        if m.shape[:2] != self.shape:
            m = cv2.resize(m.astype(np.uint8), (self.shape[1], self.shape[0]), interpolation=cv2.INTER_NEAREST)
        self.mask = np.array(m > 0 if m.dtype != bool else m, dtype=bool)

    def copy(self) -> np.ndarray:
        return self.mask.copy()

    @property
    def empty(self) -> bool:
        return not self.mask.any()

    def stroke(self, points: Sequence[Point], radius: float, value: bool = True) -> bool:
        """Paint (or with ``value=False`` erase) a round brush of ``radius`` along ``points``.
        Returns whether the mask changed."""
        pts = [(int(round(x)), int(round(y))) for x, y in points]
        if not pts:
            return False
        r = max(0, int(round(radius)))
        buf = np.zeros(self.shape, np.uint8)
        cv2.circle(buf, pts[0], r, 1, -1)
        for a, b in zip(pts, pts[1:]):
            cv2.line(buf, a, b, 1, max(1, 2 * r))
            cv2.circle(buf, b, r, 1, -1)
        hit = buf > 0
        before = self.mask[hit]
        changed = bool(np.any(before != value))
        self.mask[hit] = value
        return changed

    def erase(self, points: Sequence[Point], radius: float) -> bool:
        return self.stroke(points, radius, value=False)

    def fill(self, x: float, y: float, max_open: float = 0.5) -> int:
        """Fill the unpainted region around (x, y) that painted pixels (or the image border) close.

        A region that reaches the image border and covers more than ``max_open`` of the image is the
        background around an outline, not a closed region: it is left alone.  Returns how many
        pixels were filled (0 when (x, y) is outside, already painted, or not in a closed region)."""
        xi, yi = int(x), int(y)
        h, w = self.shape
        if not (0 <= xi < w and 0 <= yi < h) or self.mask[yi, xi]:
            return 0
        img = self.mask.astype(np.uint8)
        ff = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(img, ff, (xi, yi), 2, flags=4)
        region = img == 2
        n = int(region.sum())
        touches = region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any()
        if touches and n > max_open * region.size:
            return 0
        self.mask |= region
        return n

    def clear(self) -> bool:
        changed = bool(self.mask.any())
        self.mask[:] = False
        return changed


def mask_rgba(mask: np.ndarray, rgba: Tuple[int, int, int, int] = MASK_RGBA) -> np.ndarray:
    """H×W×4 uint8: ``rgba`` where the mask is set, transparent elsewhere."""
    out = np.zeros((*mask.shape, 4), np.uint8)
    out[mask] = rgba
    return out


def to_qimage_rgba(rgba: np.ndarray) -> QImage:
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()


class MaskCommand(QUndoCommand):
    """A snapshot of the mask before and after one stroke (or fill, or clear)."""

    def __init__(self, painter: "MaskPainter", before: np.ndarray, after: np.ndarray, text: str):
        super().__init__(text)
        self.painter, self.before, self.after = painter, before, after

    def redo(self) -> None:
        self.painter._apply(self.after)

    def undo(self) -> None:
        self.painter._apply(self.before, undoing=True)


class MaskPainter(QObject):
    """Paints a :class:`MaskCanvas` on a view's scene; see the module docstring."""

    maskChanged = Signal(object, bool)      # mask (bool H×W copy), back at the start of the stack
    toolChanged = Signal(str)

    def __init__(self, view: QGraphicsView, z: float = 3.0, parent=None):
        super().__init__(parent)
        self.view = view
        self.canvas: Optional[MaskCanvas] = None
        self.tool = "pan"
        self.radius = 8
        self.enabled = False
        self.undo_stack = QUndoStack(self)
        self.item = QGraphicsPixmapItem()
        self.item.setZValue(z)
        self.item.setAcceptedMouseButtons(Qt.NoButton)
        view.scene().addItem(self.item)
        self._stroke: Optional[list] = None
        self._before: Optional[np.ndarray] = None
        self._pending_at_start = False
        view.viewport().installEventFilter(self)

    # -- the image -----------------------------------------------------------------------------
    def set_image(self, shape: Optional[Tuple[int, int]], mask: Optional[np.ndarray] = None) -> None:
        """A new image (``shape`` None: none): its mask, and an empty undo stack."""
        self._stroke = None
        self.undo_stack.clear()
        self.canvas = None if shape is None else MaskCanvas(shape, mask)
        self.enabled = self.canvas is not None
        self._render()

    @property
    def mask(self) -> Optional[np.ndarray]:
        return None if self.canvas is None else self.canvas.mask

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}")
        self.tool = tool
        painting = tool != "pan"
        self.view.setDragMode(QGraphicsView.NoDrag if painting else QGraphicsView.ScrollHandDrag)
        self.view.viewport().setCursor(Qt.CrossCursor if painting else Qt.OpenHandCursor)
        self.toolChanged.emit(tool)

    def set_radius(self, r: int) -> None:
        self.radius = max(0, int(r))

    def set_visible(self, on: bool) -> None:
        self.item.setVisible(on)

    # -- operations (also called by tests and the mouse) ---------------------------------------
    def begin_stroke(self, x: float, y: float) -> None:
        if self.canvas is None or self.tool not in ("brush", "eraser"):
            return
        self._before = self.canvas.copy()
        self._stroke = [(x, y)]
        self.canvas.stroke(self._stroke, self.radius, self.tool == "brush")
        self._render()

    def continue_stroke(self, x: float, y: float) -> None:
        if self._stroke is None or self.canvas is None:
            return
        last = self._stroke[-1]
        self._stroke.append((x, y))
        self.canvas.stroke([last, (x, y)], self.radius, self.tool == "brush")
        self._render()

    def end_stroke(self) -> bool:
        """Finish the stroke: one undo step (and a save) when it changed the mask."""
        if self._stroke is None or self.canvas is None:
            return False
        self._stroke = None
        before, after = self._before, self.canvas.copy()
        self._before = None
        if np.array_equal(before, after):
            return False
        self.undo_stack.push(MaskCommand(self, before, after, "paint" if self.tool == "brush" else "erase"))
        return True

    def paint(self, points: Sequence[Point], erase: bool = False) -> bool:
        """One whole stroke along ``points`` with the brush (or the eraser)."""
        tool = self.tool
        self.tool = "eraser" if erase else "brush"
        try:
            pts = list(points)
            self.begin_stroke(*pts[0])
            for p in pts[1:]:
                self.continue_stroke(*p)
            return self.end_stroke()
        finally:
            self.tool = tool

    def fill_at(self, x: float, y: float) -> int:
        if self.canvas is None:
            return 0
        before = self.canvas.copy()
        n = self.canvas.fill(x, y)
        if n:
            self.undo_stack.push(MaskCommand(self, before, self.canvas.copy(), "fill"))
        return n

    def clear(self) -> bool:
        if self.canvas is None or self.canvas.empty:
            return False
        before = self.canvas.copy()
        self.canvas.clear()
        self.undo_stack.push(MaskCommand(self, before, self.canvas.copy(), "clear"))
        return True

    def undo(self) -> None:
        if self._stroke is None:
            self.undo_stack.undo()

    def redo(self) -> None:
        if self._stroke is None:
            self.undo_stack.redo()

    def _apply(self, mask: np.ndarray, undoing: bool = False) -> None:
        """Called by the commands: show ``mask`` and announce it."""
        if self.canvas is None:
            return
        self.canvas.set(mask)
        self._render()
        # undo() lowers the index after the command's undo() ran: index 1 → 0 means back at the start
        at_start = undoing and self.undo_stack.index() == 1
        self.maskChanged.emit(self.canvas.copy(), at_start)

    def _render(self) -> None:
        if self.canvas is None:
            self.item.setPixmap(QPixmap())
            return
        self.item.setPixmap(QPixmap.fromImage(to_qimage_rgba(mask_rgba(self.canvas.mask))))

    # -- the mouse -----------------------------------------------------------------------------
    def _scene_xy(self, event) -> Point:
        p = self.view.mapToScene(event.position().toPoint())
        return float(p.x()), float(p.y())

    def eventFilter(self, obj, event) -> bool:
        if not self.enabled or self.tool == "pan" or self.canvas is None:
            return False
        t = event.type()
        if t == QEvent.MouseButtonPress and event.button() == Qt.LeftButton:
            x, y = self._scene_xy(event)
            if self.tool == "fill":
                self.fill_at(x, y)
            else:
                self.begin_stroke(x, y)
            return True
        if t == QEvent.MouseMove and self._stroke is not None:
            self.continue_stroke(*self._scene_xy(event))
            return True
        if t == QEvent.MouseButtonRelease and event.button() == Qt.LeftButton:
            if self._stroke is not None:
                self.continue_stroke(*self._scene_xy(event))
                self.end_stroke()
            return True
        if t == QEvent.MouseButtonDblClick:
            return True
        return False


def iter_line(a: Point, b: Point, step: float = 1.0) -> Iterable[Point]:
    """Points from ``a`` to ``b`` (for tests and scripted strokes)."""
    n = max(1, int(np.hypot(b[0] - a[0], b[1] - a[1]) / step))
    for k in range(n + 1):
        t = k / n
        yield (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)

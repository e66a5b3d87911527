"""Mask painting: brush, eraser, fill of a closed region, clear, with undo/redo per stroke.

Two layers:

- :class:`MaskCanvas` is plain numpy (no Qt): a bool H×W mask and the operations on it, so it can
  be unit-tested on its own.
- :class:`MaskPainter` puts a canvas on a :class:`QGraphicsView`: it turns mouse drags into strokes,
  shows the mask over the image in its own colour (magenta, unlike the blue-red anomaly map):
  its outline only by default, so that the heat map under it stays readable (is the red on the
  defect?), filled while a painting tool is chosen or when asked (``set_filled``); a circle
  follows the mouse with the brush's size; and it keeps a :class:`QUndoStack` of snapshot commands, one per stroke (as labelme
  does).  Every change (a stroke ending, a fill, a clear, an undo, a redo) is announced with
  ``maskChanged(mask, at_start)`` so that the owner saves it at once; ``at_start`` is true when
  the undo stack is back where the image was opened.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainterPath, QPen, QPixmap, QPolygonF, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsView

MASK_RGBA = (255, 0, 220, 130)      # magenta, about half transparent
MASK_OUTLINE = QColor(255, 0, 220)
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
        """Fill the unpainted region around (x, y) that painted pixels (or the image border) close;
        on a painted pixel, fill the holes of the painted shape under it (an outline drawn with the
        brush, clicked on its line, is filled inside).

        A region that reaches the image border and covers more than ``max_open`` of the image is the
        background around an outline, not a closed region: it is left alone.  Returns how many
        pixels were filled; :meth:`fill_explained` also says why when none were."""
        return self.fill_explained(x, y, max_open)[0]

    def fill_explained(self, x: float, y: float, max_open: float = 0.5) -> Tuple[int, str]:
        """(pixels filled, what happened: a sentence for the status bar)."""
        xi, yi = int(np.floor(x)), int(np.floor(y))
        h, w = self.shape
        if not (0 <= xi < w and 0 <= yi < h):
            return 0, "Fill: click on the image."
        if self.mask[yi, xi]:
            shape = np.zeros((h + 2, w + 2), np.uint8)
            shape[1:-1, 1:-1] = self.mask
            cv2.floodFill(shape, np.zeros((h + 4, w + 4), np.uint8), (xi + 1, yi + 1), 2, flags=8)
            part = shape == 2                      # the painted shape clicked on (8-connected)
            outside = (~part).astype(np.uint8)     # what lies outside it, from the (padded) border
            cv2.floodFill(outside, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 2, flags=4)
            holes = (outside == 1)[1:-1, 1:-1] & ~self.mask
            n = int(holes.sum())
            if not n:
                return 0, ("Fill: this painted shape has no hole to fill. Click inside a closed "
                           "outline, or on an outline with an unpainted inside.")
            self.mask |= holes
            return n, f"Filled {n} px inside the painted outline."
        img = self.mask.astype(np.uint8)
        ff = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(img, ff, (xi, yi), 2, flags=4)
        region = img == 2
        n = int(region.sum())
        touches = region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any()
        if touches and n > max_open * region.size:
            return 0, ("Fill: this area is not closed (it reaches the image border around the painting). "
                       "Close the outline with the brush first, then fill inside it.")
        self.mask |= region
        return n, f"Filled {n} px."

    def clear(self) -> bool:
        changed = bool(self.mask.any())
        self.mask[:] = False
        return changed


def mask_rgba(mask: np.ndarray, rgba: Tuple[int, int, int, int] = MASK_RGBA) -> np.ndarray:
    """H×W×4 uint8: ``rgba`` where the mask is set, transparent elsewhere."""
    out = np.zeros((*mask.shape, 4), np.uint8)
    out[mask] = rgba
    return out


def mask_outline(mask: np.ndarray) -> QPainterPath:
    """The outlines of a mask's regions (and of their holes), as a path in image pixels."""
    path = QPainterPath()
    if not mask.any():
        return path
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    for c in found:
        pts = c[:, 0, :]
        if len(pts) >= 2:
            path.addPolygon(QPolygonF([QPointF(float(x) + 0.5, float(y) + 0.5) for x, y in pts]))
            path.closeSubpath()
        else:
            x, y = pts[0]
            path.addRect(QRectF(float(x), float(y), 1.0, 1.0))
    return path


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
    message = Signal(str)                   # what a tool did or why it did nothing (the status bar)

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
        self.outline = QGraphicsPathItem()            # the mask's outline: always, over the heat map
        pen = QPen(MASK_OUTLINE, 2)
        pen.setCosmetic(True)
        self.outline.setPen(pen)
        self.outline.setZValue(z + 0.1)
        self.outline.setAcceptedMouseButtons(Qt.NoButton)
        view.scene().addItem(self.outline)
        self.cursor = QGraphicsEllipseItem()          # the brush: its size, where it will paint
        pen = QPen(QColor("#ffffff"), 2)              # white under black dashes: seen on dark and light parts
        pen.setCosmetic(True)
        self.cursor.setPen(pen)
        self._cursor_dashes = QGraphicsEllipseItem(self.cursor)
        pen = QPen(QColor("#000000"), 2, Qt.DashLine)
        pen.setCosmetic(True)
        self._cursor_dashes.setPen(pen)
        self.cursor.setZValue(z + 0.2)
        self.cursor.setAcceptedMouseButtons(Qt.NoButton)
        self.cursor.hide()
        view.scene().addItem(self.cursor)
        self.filled = False                           # filled also when not painting (else outline only)
        self.visible = True
        view.setMouseTracking(True)
        view.viewport().setMouseTracking(True)
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
        if tool not in ("brush", "eraser"):
            self.cursor.hide()
        self._update_visibility()
        self.toolChanged.emit(tool)

    def set_radius(self, r: int) -> None:
        self.radius = max(0, int(r))
        if self.cursor.isVisible():
            self.show_cursor_at(self.cursor.rect().center().x(), self.cursor.rect().center().y())

    def set_visible(self, on: bool) -> None:
        self.visible = bool(on)
        self._update_visibility()

    def set_filled(self, on: bool) -> None:
        """Fill the mask also when no painting tool is chosen (else its outline only)."""
        self.filled = bool(on)
        self._update_visibility()

    @property
    def shows_fill(self) -> bool:
        return self.visible and (self.filled or self.tool != "pan")

    def _update_visibility(self) -> None:
        self.item.setVisible(self.shows_fill)
        self.outline.setVisible(self.visible)

    def show_cursor_at(self, x: float, y: float) -> None:
        """The brush circle at (x, y), in image pixels, with the brush's radius."""
        if self.canvas is None or self.tool not in ("brush", "eraser"):
            self.cursor.hide()
            return
        r = max(0.5, float(self.radius))
        self.cursor.setRect(QRectF(x - r, y - r, 2 * r, 2 * r))
        self._cursor_dashes.setRect(self.cursor.rect())
        self.cursor.show()

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
        """Fill at (x, y) (see :meth:`MaskCanvas.fill`); ``message`` says what it did, or why not."""
        if self.canvas is None:
            return 0
        before = self.canvas.copy()
        n, why = self.canvas.fill_explained(x, y)
        if n:
            self.undo_stack.push(MaskCommand(self, before, self.canvas.copy(), "fill"))
        self.message.emit(why)
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
            self.outline.setPath(QPainterPath())
            self.cursor.hide()
            return
        self.item.setPixmap(QPixmap.fromImage(to_qimage_rgba(mask_rgba(self.canvas.mask))))
        self.outline.setPath(mask_outline(self.canvas.mask))
        self._update_visibility()

    # -- the mouse -----------------------------------------------------------------------------
    def _scene_xy(self, event) -> Point:
        p = self.view.mapToScene(event.position().toPoint())
        return float(p.x()), float(p.y())

    def eventFilter(self, obj, event) -> bool:
        if not self.enabled or self.tool == "pan" or self.canvas is None:
            return False
        t = event.type()
        if t == QEvent.MouseMove:
            self.show_cursor_at(*self._scene_xy(event))
        elif t == QEvent.Leave:
            self.cursor.hide()
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

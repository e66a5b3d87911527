"""A small score histogram painted with QPainter: normal scores in blue, anomalies in red, the threshold."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

SERIES_COLORS = {"held-out normal": QColor(30, 99, 198, 170), "test good": QColor(38, 166, 154, 150),
                 "test anomalous": QColor(211, 47, 47, 160),
                 "confirmed good": QColor(30, 99, 198, 160), "confirmed defect": QColor(211, 47, 47, 160)}


def threshold_label_rect(plot: QRectF, x: float, text_width: float, text_height: float):
    """Where the "threshold" label goes: right of the line, or left of it when it would leave the plot."""
    w = text_width + 4
    if x + 4 + w <= plot.right():
        return QRectF(x + 4, plot.top() + 2, w, text_height), Qt.AlignLeft | Qt.AlignTop
    return QRectF(max(plot.left(), x - 4 - w), plot.top() + 2, w, text_height), Qt.AlignRight | Qt.AlignTop


class ScoreHistogram(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.series = {}
        self.threshold: Optional[float] = None
        self.setMinimumSize(360, 190)

    def set_data(self, series: dict, threshold: Optional[float]) -> None:
        """``series``: name → scores (names as in SERIES_COLORS)."""
        self.series = {k: np.asarray(v, np.float64) for k, v in series.items() if len(v)}
        self.threshold = threshold
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), Qt.white)
        plot = QRectF(self.rect()).adjusted(40, 12, -12, -40)
        p.setPen(QPen(QColor("#b8bec9")))
        p.drawRect(plot)
        if not self.series:
            p.drawText(plot, Qt.AlignCenter, "no scores")
            return
        allv = np.concatenate(list(self.series.values()))
        lo, hi = float(allv.min()), float(allv.max())
        if self.threshold is not None and np.isfinite(self.threshold):
            lo, hi = min(lo, self.threshold), max(hi, self.threshold)
        if hi <= lo:
            hi = lo + 1.0
        pad = 0.04 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        edges = np.linspace(lo, hi, 31)
        hists = {k: np.histogram(v, edges)[0] / max(len(v), 1) for k, v in self.series.items()}
        top = max(float(h.max()) for h in hists.values()) or 1.0
        bw = plot.width() / (len(edges) - 1)
        for name, h in hists.items():
            p.setPen(Qt.NoPen)
            p.setBrush(SERIES_COLORS.get(name, QColor(120, 120, 120, 150)))
            for i, v in enumerate(h):
                if v > 0:
                    hh = plot.height() * v / top
                    p.drawRect(QRectF(plot.left() + i * bw, plot.bottom() - hh, bw - 1, hh))
        x_of = lambda v: plot.left() + (v - lo) / (hi - lo) * plot.width()  # noqa: E731
        p.setPen(QColor("#1c2733"))
        for v in (lo + pad, (lo + hi) / 2, hi - pad):
            p.drawText(QRectF(x_of(v) - 40, plot.bottom() + 2, 80, 16), Qt.AlignCenter, f"{v:.3g}")
        if self.threshold is not None and np.isfinite(self.threshold):
            pen = QPen(QColor("#ff6f00"), 2, Qt.DashLine)
            p.setPen(pen)
            x = x_of(self.threshold)
            p.drawLine(QLineF(x, plot.top(), x, plot.bottom()))
            box, align = threshold_label_rect(plot, x, p.fontMetrics().horizontalAdvance("threshold"),
                                              p.fontMetrics().height())
            p.drawText(box, align, "threshold")
        x = plot.left()
        for name in hists:
            p.setPen(Qt.NoPen)
            p.setBrush(SERIES_COLORS.get(name, QColor(120, 120, 120)))
            p.drawRect(QRectF(x, plot.bottom() + 22, 10, 10))
            p.setPen(QColor("#1c2733"))
            p.drawText(QRectF(x + 14, plot.bottom() + 18, 130, 16), Qt.AlignLeft | Qt.AlignVCenter, name)
            x += 140
        p.end()

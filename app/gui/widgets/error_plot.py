"""A small per-frame error plot (NME against frame index) for clips with ground truth."""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from models.metrics import DEFAULT_THRESHOLD

BACKGROUND = QColor(24, 24, 24)
AXIS = QColor(110, 110, 110)
CURVE = QColor(80, 220, 120)
THRESHOLD = QColor(230, 160, 40)
MISS = QColor(240, 70, 70)
CURSOR = QColor(200, 200, 200)
MIN_TOP = 0.1  # NME; the y axis never shows less than this
MAX_TOP = 0.5


class ErrorPlot(QWidget):
    """NME per frame; misses are red ticks at the top; the dashed line is the failure threshold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._errors: dict[int, float] = {}
        self._frame_count = 0
        self._current = -1

    def sizeHint(self) -> QSize:
        return QSize(400, 80)

    @property
    def errors(self) -> dict[int, float]:
        return dict(self._errors)

    def reset(self, frame_count: int | None) -> None:
        self._errors = {}
        self._frame_count = frame_count or 0
        self._current = -1
        self.update()

    def add(self, index: int, error: float) -> None:
        self._errors[index] = error
        self._current = index
        self.update()

    def _top(self) -> float:
        finite = [e for e in self._errors.values() if math.isfinite(e)]
        return min(MAX_TOP, max(MIN_TOP, 1.15 * max(finite, default=0.0)))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), BACKGROUND)
        font = QFont(painter.font())
        font.setPointSizeF(7.5)
        painter.setFont(font)
        left, top_margin, bottom = 34.0, 6.0, 14.0
        area = QRectF(left, top_margin, max(1.0, self.width() - left - 6), max(1.0, self.height() - top_margin - bottom))
        top = self._top()
        span = max(self._frame_count - 1, max(self._errors, default=0), 1)

        def at(index: int, value: float) -> QPointF:
            return QPointF(area.left() + area.width() * index / span, area.bottom() - area.height() * min(value, top) / top)

        painter.setPen(QPen(AXIS, 1))
        painter.drawRect(area)
        if at(0, DEFAULT_THRESHOLD).y() - area.top() > 16:  # room for both labels
            painter.drawText(QRectF(0, area.top() - 6, left - 4, 12), Qt.AlignmentFlag.AlignRight, f"{top:.2f}")
        painter.drawText(QRectF(0, area.bottom() - 6, left - 4, 12), Qt.AlignmentFlag.AlignRight, "0")
        painter.drawText(QRectF(area.left(), area.bottom() + 1, area.width(), 12), Qt.AlignmentFlag.AlignLeft, "NME per frame")
        threshold_pen = QPen(THRESHOLD, 1, Qt.PenStyle.DashLine)
        painter.setPen(threshold_pen)
        y = at(0, DEFAULT_THRESHOLD).y()
        painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        painter.drawText(QRectF(0, y - 6, left - 4, 12), Qt.AlignmentFlag.AlignRight, f"{DEFAULT_THRESHOLD:g}")

        path = QPainterPath()
        previous = None
        misses = []
        for index in sorted(self._errors):
            value = self._errors[index]
            if not math.isfinite(value):
                misses.append(index)
                previous = None
                continue
            point = at(index, value)
            if previous is not None and index == previous + 1:
                path.lineTo(point)
            else:
                path.moveTo(point)
                path.addEllipse(point, 0.8, 0.8)
                path.moveTo(point)
            previous = index
        painter.setPen(QPen(CURVE, 1.3))
        painter.drawPath(path)
        painter.setPen(QPen(MISS, 1.5))
        for index in misses:
            x = at(index, 0).x()
            painter.drawLine(QPointF(x, area.top()), QPointF(x, area.top() + 6))
        if self._current >= 0:
            painter.setPen(QPen(CURSOR, 1, Qt.PenStyle.DotLine))
            x = at(self._current, 0).x()
            painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        painter.end()

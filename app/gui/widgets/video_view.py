"""The video view: paints the latest annotated frame, scaled to fit with its aspect ratio kept."""
from __future__ import annotations

import time

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.gui.values import FramePacket

BACKGROUND = QColor(16, 16, 16)


def fit_rect(image_size: QSize, area: QRect) -> QRect:
    """The largest rectangle of ``image_size``'s aspect ratio centred in ``area``."""
    if image_size.isEmpty() or area.isEmpty():
        return QRect()
    scaled = image_size.scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
    x = area.x() + (area.width() - scaled.width()) // 2
    y = area.y() + (area.height() - scaled.height()) // 2
    return QRect(x, y, scaled.width(), scaled.height())


class VideoView(QWidget):
    """Only paints. ``frame_painted(packet, perf_counter)`` fires the first time each frame is painted.

    ``area_changed(width, height)`` gives the size in device pixels that frames should be
    scaled to (by the worker): a frame of that size is blitted, anything else is scaled here.
    """

    frame_painted = Signal(object, float)
    area_changed = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._packet: FramePacket | None = None
        self._painted = True

    @property
    def packet(self) -> FramePacket | None:
        return self._packet

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    def show_packet(self, packet: FramePacket) -> None:
        self._packet = packet
        self._painted = False
        self.update()

    def clear(self) -> None:
        self._packet = None
        self.update()

    def device_area(self) -> QSize:
        ratio = self.devicePixelRatioF()
        return QSize(round(self.width() * ratio), round(self.height() * ratio))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        area = self.device_area()
        self.area_changed.emit(area.width(), area.height())

    def image_rect(self) -> QRect:
        """Where the current frame is drawn, in widget coordinates."""
        if self._packet is None:
            return QRect()
        image = self._packet.image
        ratio = self.devicePixelRatioF()
        size = QSize(round(image.width() / ratio), round(image.height() / ratio))
        return fit_rect(size, self.rect())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        packet = self._packet
        if packet is not None:
            target = self.image_rect()
            ratio = self.devicePixelRatioF()
            image = packet.image
            if round(target.width() * ratio) == image.width() and round(target.height() * ratio) == image.height():
                image.setDevicePixelRatio(ratio)
                painter.drawImage(target.topLeft(), image)  # already scaled by the worker: a plain blit
            else:
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                painter.drawImage(target, image)
        painter.end()
        if packet is not None and not self._painted:
            self._painted = True
            self.frame_painted.emit(packet, time.perf_counter())

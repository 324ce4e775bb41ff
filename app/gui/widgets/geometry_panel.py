"""The side panel with the face geometry (``app.geometry``) of one face: head pose, eye and mouth
openness, blinks. The face is chosen by track id; the panel follows the frames the worker sends."""
from __future__ import annotations

import math

from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QWidget

from app.types import FaceGeometry

NONE = "–"


def _number(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else NONE


class GeometryPanel(QGroupBox):
    """Yaw / pitch / roll, eye aspect ratios, mouth opening and blink count of the selected face."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Face geometry", parent)
        self.face_combo = QComboBox()
        self.face_combo.setToolTip("The tracked face whose geometry is shown")
        self.pose_label = QLabel(NONE)
        self.pose_label.setToolTip("Degrees: yaw > 0 nose to the image right, pitch > 0 up, roll > 0 clockwise")
        self.eyes_label = QLabel(NONE)
        self.eyes_label.setToolTip(
            "Eye aspect ratio of the image-left / image-right eye (about 0.3 open, under 0.15 closed)"
        )
        self.mouth_label = QLabel(NONE)
        self.mouth_label.setToolTip("Inner-lip gap over nose length (0 closed, about 0.5 wide open)")
        self.blinks_label = QLabel(NONE)
        form = QFormLayout(self)
        form.addRow("Face", self.face_combo)
        form.addRow("Yaw / pitch / roll", self.pose_label)
        form.addRow("Eyes (EAR L / R)", self.eyes_label)
        form.addRow("Mouth opening", self.mouth_label)
        form.addRow("Blinks", self.blinks_label)
        self._ids: tuple[int, ...] = ()

    def selected_face(self) -> int | None:
        return self.face_combo.currentData()

    def show_faces(self, faces: tuple[tuple[int, FaceGeometry | None], ...]) -> None:
        """One frame's (track id, geometry) pairs; keeps the selected face while it is tracked."""
        ids = tuple(sorted(track_id for track_id, _ in faces))
        if ids != self._ids:
            selected = self.selected_face()
            blocked = self.face_combo.blockSignals(True)
            self.face_combo.clear()
            for track_id in ids:
                self.face_combo.addItem(f"face {track_id}", track_id)
            index = self.face_combo.findData(selected) if selected in ids else 0
            self.face_combo.setCurrentIndex(index if ids else -1)
            self.face_combo.blockSignals(blocked)
            self._ids = ids
        self._show(dict(faces).get(self.selected_face()))

    def _show(self, geometry: FaceGeometry | None) -> None:
        if geometry is None:
            for label in (self.pose_label, self.eyes_label, self.mouth_label, self.blinks_label):
                label.setText(NONE)
            return
        pose = geometry.pose
        self.pose_label.setText(f"{pose.yaw:+.1f}° / {pose.pitch:+.1f}° / {pose.roll:+.1f}°" if pose else "no pose")
        self.eyes_label.setText(f"{_number(geometry.ear_left)} / {_number(geometry.ear_right)}")
        self.mouth_label.setText(_number(geometry.mouth_opening))
        self.blinks_label.setText(f"{geometry.blink_count}" + (" · eyes closed" if geometry.eyes_closed else ""))

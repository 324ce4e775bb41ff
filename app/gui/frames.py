"""Frames for the window: sizing and conversion to QImage, opening what the user chose, the
per-frame accuracy against a clip's ground truth."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtGui import QImage

from app.gui.values import SourceSpec
from app.sources import FrameSource, SourceError
from app.tracking import pick_face
from models.metrics import MISS, nme


def display_size(image_size: tuple[int, int], area: tuple[int, int] | None) -> tuple[int, int]:
    """The size (width, height) an image of ``image_size`` is shown at inside ``area``, aspect kept."""
    width, height = image_size
    if not area or area[0] <= 0 or area[1] <= 0:
        return width, height
    scale = min(area[0] / width, area[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_qimage(image: np.ndarray, area: tuple[int, int] | None = None) -> QImage:
    """An owned RGB32 QImage of a BGR uint8 frame, scaled here to fit ``area`` so the GUI thread only blits."""
    height, width = image.shape[:2]
    size = display_size((width, height), area)
    if size != (width, height):
        shrinking = size[0] < width
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    return QImage(bgra.data, size[0], size[1], 4 * size[0], QImage.Format.Format_RGB32).copy()


def best_match_nme(faces, ground_truth: np.ndarray) -> float:
    """NME of the tracked face that belongs to the annotated one (``app.tracking.pick_face``, the
    rule eval300vw scores by), of the points shown; ``MISS`` when none does."""
    face = pick_face(faces, ground_truth)
    return MISS if face is None else nme(face.landmarks.points, ground_truth)


def open_frame_source(spec: SourceSpec) -> FrameSource:
    """Open what the user chose; SourceError with the reason when it cannot be opened."""
    from app.sources import CameraSource, Clip300VWSource, VideoFileSource, is_300vw_clip

    if spec.kind == "camera":
        width, height = spec.resolution or (None, None)
        return CameraSource(spec.camera_index, width, height)
    path = Path(spec.path).expanduser()
    if spec.kind == "clip":
        if not path.is_dir():
            raise SourceError(f"cannot open 300-VW clip {path}: not a folder")
        if not is_300vw_clip(path):
            raise SourceError(
                f"{path} is not a 300-VW clip: it needs an annot/ folder and vid.avi (or an imgs/ folder)"
            )
        return Clip300VWSource(path)
    if spec.kind == "video":
        return VideoFileSource(path)
    raise ValueError(f"unknown source kind {spec.kind!r}")

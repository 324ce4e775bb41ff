"""The face-detector contract, and the geometry the detectors share.

Every detector returns ``models.types.Detection`` objects in 0-based pixel-centre
coordinates of the frame it was given, sorted by score (highest first). Keypoints
use the six slots of ``models.landmarks68.KEYPOINT_NAMES``, "left" meaning
image-left; slots a detector does not produce hold NaN and are masked out.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from engines.base import ModelFileError
from models.landmarks68 import NUM_KEYPOINTS
from models.types import Detection


class FaceDetector(ABC):
    """Finds faces in a BGR frame. Use as a context manager or call ``close()``."""

    name: str
    score_threshold: float

    @abstractmethod
    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """The faces in ``image_bgr`` (H, W, 3) uint8, highest score first."""

    def detect_region(self, image_bgr: np.ndarray, region: tuple[int, int, int, int]) -> list[Detection]:
        """The faces inside ``region`` (x1, y1, x2, y2 pixel bounds, end exclusive) of ``image_bgr``,
        in the coordinates of the whole image. Cheaper than ``detect`` when the region is small."""
        x1, y1, x2, y2 = (int(v) for v in region)
        offset = np.array([x1, y1], dtype=np.float64)
        return [
            replace(det, box=det.box + np.tile(offset, 2), keypoints=det.keypoints + offset)
            for det in self.detect(image_bgr[y1:y2, x1:x2])
        ]

    def close(self) -> None:
        """Release the model; the detector is unusable afterwards. Idempotent."""

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


MIN_IMAGE_SIDE = 2  # pixels; smaller images hold no face (the pipeline skips detection on them)


def check_image(image_bgr: np.ndarray) -> np.ndarray:
    """``image_bgr`` as a contiguous (H, W, 3) uint8 array, or a ValueError that says what is wrong.

    Grayscale (H, W) or (H, W, 1) and BGRA (H, W, 4) uint8 frames are converted to BGR.
    """
    image = np.asarray(image_bgr)
    if image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 4))):
        if image.size == 0:
            raise ValueError(f"image too small to search for faces: {image.shape[1]}x{image.shape[0]}")
        code = cv2.COLOR_BGRA2BGR if image.ndim == 3 and image.shape[2] == 4 else cv2.COLOR_GRAY2BGR
        image = cv2.cvtColor(image, code)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"a detector needs an (H, W, 3) uint8 BGR image, got shape {image.shape} {image.dtype}")
    if image.shape[0] < MIN_IMAGE_SIDE or image.shape[1] < MIN_IMAGE_SIDE:
        raise ValueError(f"image too small to search for faces: {image.shape[1]}x{image.shape[0]}")
    return np.ascontiguousarray(image)


def check_model_file(model_path: str | Path | None, detector: str, example: str) -> Path:
    """The path of an existing model file, or a ``ModelFileError`` naming what is missing."""
    if model_path is None:
        raise ModelFileError(f"the {detector} detector needs a model file (model_path=..., e.g. {example})")
    path = Path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{detector} model file not found: {path}")
    return path


def make_detection(box: np.ndarray, score: float, keypoints: dict[int, np.ndarray]) -> Detection:
    """A ``Detection`` with the given slots filled and every other slot NaN and masked out."""
    points = np.full((NUM_KEYPOINTS, 2), np.nan)
    mask = np.zeros(NUM_KEYPOINTS, dtype=bool)
    for slot, xy in keypoints.items():
        points[slot] = xy
        mask[slot] = True
    return Detection(box=np.asarray(box, dtype=np.float64), score=float(score), keypoints=points, keypoint_mask=mask)


def by_score(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: d.score, reverse=True)


@dataclass(frozen=True)
class Letterbox:
    """A frame resized by ``scale_x, scale_y`` into the top-left corner of a ``size`` canvas.

    Maps continuous coordinates (the network's: pixel ``i`` spans [i, i + 1]) on the
    canvas back to 0-based pixel-centre coordinates of the frame, and the other way.
    """

    scale_x: float
    scale_y: float
    size: tuple[int, int]  # canvas width, height
    resized: tuple[int, int]  # width, height of the frame inside the canvas

    @classmethod
    def fit(cls, frame_size: tuple[int, int], canvas_size: tuple[int, int], upscale: bool = True) -> "Letterbox":
        """The largest aspect-preserving fit of ``frame_size`` (w, h) into a fixed ``canvas_size`` (w, h)."""
        (w, h), (cw, ch) = frame_size, canvas_size
        scale = min(cw / w, ch / h)
        if not upscale:
            scale = min(scale, 1.0)
        rw, rh = min(cw, max(1, round(w * scale))), min(ch, max(1, round(h * scale)))
        return cls(scale_x=rw / w, scale_y=rh / h, size=(cw, ch), resized=(rw, rh))

    @classmethod
    def within(cls, frame_size: tuple[int, int], max_side: int, multiple: int = 1) -> "Letterbox":
        """Shrink (never enlarge) so the long side is at most ``max_side``; pad up to ``multiple``."""
        w, h = frame_size
        scale = min(1.0, max_side / max(w, h))
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        cw, ch = -(-rw // multiple) * multiple, -(-rh // multiple) * multiple
        return cls(scale_x=rw / w, scale_y=rh / h, size=(cw, ch), resized=(rw, rh))

    def apply(self, image: np.ndarray, fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
        """The letterboxed canvas of ``image``; the padding has colour ``fill``."""
        cw, ch = self.size
        canvas = np.empty((ch, cw, 3), dtype=np.uint8)
        canvas[:] = fill
        rw, rh = self.resized
        interp = cv2.INTER_AREA if rw < image.shape[1] else cv2.INTER_LINEAR
        canvas[:rh, :rw] = image if (rw, rh) == (image.shape[1], image.shape[0]) else cv2.resize(
            image, (rw, rh), interpolation=interp
        )
        return canvas

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Canvas continuous coordinates (..., 2) -> frame pixel-centre coordinates."""
        p = np.asarray(points, dtype=np.float64)
        return p / np.array([self.scale_x, self.scale_y]) - 0.5

    def to_canvas(self, points: np.ndarray) -> np.ndarray:
        """Frame pixel-centre coordinates (..., 2) -> canvas continuous coordinates."""
        p = np.asarray(points, dtype=np.float64)
        return (p + 0.5) * np.array([self.scale_x, self.scale_y])

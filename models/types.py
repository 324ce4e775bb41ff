"""Data classes that flow between the model-level stages: detection, alignment, landmarks.

Coordinates are 0-based pixel centres of the image they refer to, float64, (x, y).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.boxes import landmark_box
from models.landmarks68 import NUM_KEYPOINTS


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Detection:
    """One face from a detector.

    ``keypoints`` has the six slots of ``landmarks68.KEYPOINT_NAMES`` (RetinaFace's
    five points, then the mouth centre); ``keypoint_mask`` says which slots the
    detector really produced. Absent slots hold NaN: nothing is invented.
    """

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    keypoints: np.ndarray  # (6, 2)
    keypoint_mask: np.ndarray  # (6,) bool

    def __post_init__(self) -> None:
        if self.keypoints.shape != (NUM_KEYPOINTS, 2) or self.keypoint_mask.shape != (NUM_KEYPOINTS,):
            raise ValueError("Detection needs (6, 2) keypoints and a (6,) mask")

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class AlignedCrop:
    """A face warped to the template. ``matrix`` maps frame -> crop, ``inverse`` crop -> frame."""

    image: np.ndarray  # (size, size, 3) uint8, BGR
    matrix: np.ndarray  # (2, 3)
    inverse: np.ndarray  # (2, 3)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Landmarks:
    """68 points and a per-point confidence in [0, 1]; ``visible`` (68,) bool where the model
    says which points it sees (SGFA: confidence at least its visibility threshold), else None."""

    points: np.ndarray  # (68, 2)
    confidence: np.ndarray = field(default_factory=lambda: np.ones(68))  # (68,)
    visible: np.ndarray | None = None  # (68,) bool, or None: the model does not tell

    @property
    def mean_confidence(self) -> float:
        return float(np.mean(self.confidence))

    def box(self) -> np.ndarray:
        """The tight box around the points: x1, y1, x2, y2."""
        return landmark_box(self.points)

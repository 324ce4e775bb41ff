"""Data classes that flow through the application pipeline: frames in, results out."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.types import Detection, Landmarks

STAGES = ("detect", "align", "infer", "decode", "smooth", "render")


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Frame:
    """One frame from a source. ``ground_truth`` (68, 2) is set by 300-VW sources when annotated."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    index: int
    timestamp: float  # seconds since the start of the source
    ground_truth: np.ndarray | None = None


@dataclass
class StageTimings:
    """Milliseconds spent per stage on one frame (stages not run stay 0)."""

    detect: float = 0.0
    align: float = 0.0
    infer: float = 0.0
    decode: float = 0.0
    smooth: float = 0.0
    render: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in STAGES}

    @property
    def total(self) -> float:
        return sum(self.as_dict().values())


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class FaceResult:
    """One tracked face on one frame.

    ``landmarks`` are what the user sees (smoothed when smoothing is on);
    ``raw_landmarks`` are the model's output before smoothing. ``detection`` is set
    on frames where the detector (re)found this face.
    """

    track_id: int
    landmarks: Landmarks
    raw_landmarks: Landmarks
    detection: Detection | None = None

    @property
    def box(self) -> np.ndarray:
        return self.landmarks.box()


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class FrameResult:
    frame: Frame
    faces: tuple[FaceResult, ...]
    timings: StageTimings = field(default_factory=StageTimings)
    detector_ran: bool = False

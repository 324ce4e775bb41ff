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
class HeadPose:
    """Head rotation and position in the camera frame (computed by ``app.geometry.pose``).

    Angles in degrees (convention in ``app.geometry.pose``): ``yaw`` > 0 when the nose turns
    towards the image right, ``pitch`` > 0 when it turns up, ``roll`` > 0 when the head tilts
    clockwise in the image. ``rotation`` (3, 3) maps head-model coordinates to camera
    coordinates; ``translation`` (3,) is the nose tip in the camera frame, millimetres
    (approximate: it rests on a mean face size). ``camera_matrix`` (3, 3) is the intrinsics
    the pose was solved with (the overlay projects the axes with it).
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    translation: np.ndarray
    camera_matrix: np.ndarray
    reprojection_error: float  # weighted RMS of the used points over the frontal inter-ocular distance


@dataclass(frozen=True)
class BlinkEvent:
    """One blink: first and last frame with the eyes closed (inclusive), and how long it lasted."""

    start_frame: int
    end_frame: int
    start_time: float  # seconds: timestamp of the first closed frame
    end_time: float  # seconds: timestamp of the first frame open again

    @property
    def duration(self) -> float:
        """Seconds the eyes were closed (first closed frame to the first open one)."""
        return self.end_time - self.start_time


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class FaceGeometry:
    """What the 68 points say about the face on one frame (``app.geometry``).

    ``pose`` is None when the face is too unsure for a pose. Eye aspect ratios and the
    mouth opening are NaN when their points are not usable. ``blink`` is set on the frame
    where a blink ends (the event, with its start); ``eyes_closed`` says whether the
    detector sees the eyes closed now; ``blink_count`` counts this track's blinks so far.
    """

    pose: HeadPose | None
    ear_left: float  # eye aspect ratio of the image-left eye (points 36-41)
    ear_right: float  # image-right eye (42-47)
    mouth_opening: float  # inner-lip gap over nose length (27-33)
    eyes_closed: bool = False
    blink: BlinkEvent | None = None
    blink_count: int = 0


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class FaceResult:
    """One tracked face on one frame.

    ``landmarks`` are what the user sees (smoothed when smoothing is on);
    ``raw_landmarks`` are the model's output before smoothing. ``detection`` is set
    on frames where the detector (re)found this face. ``geometry`` (pose, openness,
    blinks) is set by the pipeline when geometry is on.
    """

    track_id: int
    landmarks: Landmarks
    raw_landmarks: Landmarks
    detection: Detection | None = None
    geometry: FaceGeometry | None = None

    @property
    def box(self) -> np.ndarray:
        return self.landmarks.box()


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class FrameResult:
    frame: Frame
    faces: tuple[FaceResult, ...]
    timings: StageTimings = field(default_factory=StageTimings)
    detector_ran: bool = False

"""Per-track face geometry: pose (smoothed), openness and blinks from one face's landmarks per frame.

``FaceGeometryTracker.update`` is what the pipeline calls for every tracked face on every
frame, so the command line, the window and batch jobs share one computation. It reads the
model's raw (unsmoothed) landmarks and their confidences: the pose is smoothed on its own
(below), and blinks need the eyelids' fast movement that landmark smoothing would soften.

Pose smoothing: the One Euro filter of ``app.smoothing`` (the landmarks' parameters), on
the three angles and on the translation. Speeds are normalised as for landmarks: angles in
units of ``ANGLE_UNIT`` degrees (a point on the face moves about one face size per that
many degrees of turn), translation in units of ``TRANSLATION_UNIT`` mm (a head's size).
Angles are unwrapped against the previous output before filtering (so 179 -> -179 is a
2-degree step) and wrapped back to (-180, 180] after. A frame without a pose restarts the
filter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from app.geometry.blinks import BlinkDetector, BlinkOptions
from app.geometry.openness import eye_aspect_ratios, mouth_opening
from app.geometry.pose import PoseOptions, PoseSolver, point_weights, rotation_from_angles
from app.smoothing import LandmarkSmoother, OneEuroParams
from app.types import FaceGeometry, HeadPose
from models.types import Landmarks

ANGLE_UNIT = 160.0  # degrees treated as one "face size" of motion
TRANSLATION_UNIT = 150.0  # mm treated as one "face size" of motion


@dataclass(frozen=True)
class GeometryOptions:
    enabled: bool = True
    pose: PoseOptions = field(default_factory=PoseOptions)
    blinks: BlinkOptions = field(default_factory=BlinkOptions)


def wrap_degrees(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to (-180, 180]."""
    return 180.0 - np.mod(180.0 - np.asarray(angle, dtype=np.float64), 360.0)


class PoseSmoother:
    """One Euro over (yaw, pitch, roll) with wrap-around, and over the translation."""

    def __init__(self, params: OneEuroParams | None = None) -> None:
        self._angles = LandmarkSmoother(params)
        self._translation = LandmarkSmoother(params)

    def reset(self) -> None:
        self._angles.reset()
        self._translation.reset()

    def smooth(self, pose: HeadPose, timestamp: float) -> HeadPose:
        angles = np.array([pose.yaw, pose.pitch, pose.roll])
        if self._angles.started:
            previous = self._angles.last[:, 0]
            angles = previous + wrap_degrees(angles - previous)
        columns = np.zeros((3, 2))
        columns[:, 0] = angles
        yaw, pitch, roll = wrap_degrees(self._angles.smooth(columns, timestamp, ANGLE_UNIT)[:, 0])
        columns[:, 0] = pose.translation
        translation = self._translation.smooth(columns, timestamp, TRANSLATION_UNIT)[:, 0]
        rotation = rotation_from_angles(yaw, pitch, roll)
        return HeadPose(
            float(yaw), float(pitch), float(roll), rotation, translation, pose.camera_matrix, pose.reprojection_error
        )


class FaceGeometryTracker:
    """The geometry of one face track; feed it that track's landmarks frame by frame."""

    def __init__(self, options: GeometryOptions | None = None, smoothing: OneEuroParams | None = None) -> None:
        self.options = options or GeometryOptions()
        self._pose_smoother = PoseSmoother(smoothing) if smoothing is not None else None
        self._blinks = BlinkDetector(self.options.blinks)

    def update(self, landmarks: Landmarks, solver: PoseSolver, frame: int, timestamp: float) -> FaceGeometry:
        pose = solver.solve(landmarks.points, landmarks.confidence)
        if self._pose_smoother is not None:
            if pose is None:
                self._pose_smoother.reset()
            else:
                pose = self._pose_smoother.smooth(pose, timestamp)
        usable = point_weights(landmarks.confidence, 1.0) >= self.options.pose.min_weight
        ear_left, ear_right = eye_aspect_ratios(landmarks.points, usable)
        eyes = [r for r in (ear_left, ear_right) if math.isfinite(r)]
        blink = self._blinks.update(frame, timestamp, sum(eyes) / len(eyes) if eyes else float("nan"))
        return FaceGeometry(
            pose=pose,
            ear_left=ear_left,
            ear_right=ear_right,
            mouth_opening=mouth_opening(landmarks.points, usable),
            eyes_closed=self._blinks.eyes_closed,
            blink=blink,
            blink_count=self._blinks.count,
        )

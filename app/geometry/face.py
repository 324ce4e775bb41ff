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

from dataclasses import dataclass, field

import numpy as np

from app.geometry.blinks import BlinkDetector, BlinkOptions
from app.geometry.openness import openness
from app.geometry.pose import PoseOptions, PoseSolver, rotation_from_angles
from app.smoothing import OneEuroFilter, OneEuroParams
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
        self._filter = OneEuroFilter(np.array([ANGLE_UNIT] * 3 + [TRANSLATION_UNIT] * 3), params)

    def reset(self) -> None:
        self._filter.reset()

    def smooth(self, pose: HeadPose, timestamp: float) -> HeadPose:
        yaw, pitch, roll = pose.yaw, pose.pitch, pose.roll
        last = self._filter.last
        if last is not None:  # unwrap against the last output
            last_yaw, last_pitch, last_roll = last[:3].tolist()
            yaw = last_yaw + _wrap(yaw - last_yaw)
            pitch = last_pitch + _wrap(pitch - last_pitch)
            roll = last_roll + _wrap(roll - last_roll)
        out = self._filter.smooth(np.array([yaw, pitch, roll, *pose.translation.tolist()]), timestamp)
        yaw, pitch, roll = (_wrap(a) for a in out[:3].tolist())
        rotation = rotation_from_angles(yaw, pitch, roll)
        return HeadPose(yaw, pitch, roll, rotation, out[3:], pose.camera_matrix, pose.reprojection_error)


def _wrap(angle: float) -> float:
    """One angle wrapped to (-180, 180] (``wrap_degrees`` for a float)."""
    return 180.0 - (180.0 - angle) % 360.0


class FaceGeometryTracker:
    """The geometry of one face track; feed it that track's landmarks frame by frame."""

    def __init__(self, options: GeometryOptions | None = None, smoothing: OneEuroParams | None = None) -> None:
        self.options = options or GeometryOptions()
        self._pose_smoother = PoseSmoother(smoothing) if smoothing is not None else None
        self._blinks = BlinkDetector(self.options.blinks)
        self._raw_pose: HeadPose | None = None  # last frame's unsmoothed pose, where the next solve starts

    def update(self, landmarks: Landmarks, solver: PoseSolver, frame: int, timestamp: float) -> FaceGeometry:
        weights = solver.weights(landmarks.confidence)
        raw = self._raw_pose = solver.solve_weighted(landmarks.points, weights, self._raw_pose)
        pose = raw
        if self._pose_smoother is not None:
            if raw is None:
                self._pose_smoother.reset()
            else:
                pose = self._pose_smoother.smooth(raw, timestamp)
        usable = weights >= solver.options.min_weight
        ear_left, ear_right, mouth = openness(landmarks.points, usable)
        blink = self._blinks.update(frame, timestamp, ear_left, ear_right)
        return FaceGeometry(
            pose=pose,
            ear_left=ear_left,
            ear_right=ear_right,
            mouth_opening=mouth,
            eyes_closed=self._blinks.eyes_closed,
            blink=blink,
            blink_count=self._blinks.count,
        )

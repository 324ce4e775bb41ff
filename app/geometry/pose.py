"""Head pose from the 68 points: ``cv2.solvePnP`` against the 3D mean face, then a weighted refine.

Frames. Camera: OpenCV's (x right, y down, z forward, 0-based pixel centres). Head model
(``models.face3d``): x towards the image right of a frontal face, y down, z into the head,
origin at the nose tip, millimetres. ``HeadPose.rotation`` R maps model to camera
coordinates; a frontal upright face has R = I.

Angles (degrees): R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch), i.e. the head first pitches about
its own left-right axis, then yaws about the vertical, then rolls about the viewing axis, so

- ``yaw`` > 0: the nose turns towards the image right (the subject turns to their left),
  range [-90, 90];
- ``pitch`` > 0: the nose turns up (chin up), range (-180, 180];
- ``roll`` > 0: the head tilts clockwise in the image, range (-180, 180]; rotating the image
  by an angle about the principal point adds exactly that angle to ``roll``.

Camera intrinsics: by default a pinhole with ``DEFAULT_FOV_DEG`` horizontal field of view
and the principal point at the frame centre, no distortion (a typical webcam; the true
value of a video file is unknown). Angles depend little on it; the translation scales with it.

Confidence: each point's weight is its confidence over the face's median confidence
(confidence scales differ between models), clipped to [0, 1], times ``jaw_weight`` for the
jaw line (0-16); a face whose median confidence is under ``min_confidence`` gets no pose. Points under ``min_weight`` are left out; the pose is solved on the rest
by SQPnP (a global solver, cheaper here than a local one from the previous pose) and refined
by one weighted Gauss-Newton step. A face with fewer than ``min_points`` usable points
or a weighted reprojection error above ``max_error`` (frontal inter-ocular distances) gets
no pose.

Jaw points: 300-W marks the jaw on the visible outline, which on a turned face is not
where the 3D jaw vertices project; ``jaw_weight`` (docs/RESULTS.md, "Head pose") lowers
their say.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from app.types import HeadPose
from models.face3d import face3d_points
from models.landmarks68 import JAW, NUM_LANDMARKS, OUTER_EYE_CORNERS

DEFAULT_FOV_DEG = 60.0
_GN_STEPS = 1


@dataclass(frozen=True)
class PoseOptions:
    fov_deg: float = DEFAULT_FOV_DEG  # horizontal field of view of the assumed camera
    jaw_weight: float = 0.3  # weight factor of the jaw points (0-16)
    min_weight: float = 0.3  # points weighted less than this are left out
    min_points: int = 20  # fewer usable points: no pose
    min_confidence: float = 0.2  # a face whose median point confidence is lower gets no pose
    max_error: float = 0.12  # weighted RMS reprojection error over the frontal inter-ocular distance

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fov_deg) and 1.0 <= self.fov_deg <= 170.0):
            raise ValueError(f"field of view must be between 1 and 170 degrees, got {self.fov_deg!r}")
        if not 0.0 <= self.jaw_weight <= 1.0:
            raise ValueError(f"jaw_weight must be in [0, 1], got {self.jaw_weight!r}")
        if self.min_points < 6:
            raise ValueError(f"min_points must be at least 6 (PnP), got {self.min_points!r}")


def camera_matrix(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Pinhole intrinsics for a ``width`` x ``height`` frame with ``fov_deg`` horizontal field of view."""
    focal = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch), angles in degrees (see the module docstring)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rz = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[math.cos(-y), 0.0, math.sin(-y)], [0.0, 1.0, 0.0], [-math.sin(-y), 0.0, math.cos(-y)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(-p), -math.sin(-p)], [0.0, math.sin(-p), math.cos(-p)]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix; the inverse of ``rotation_from_angles``."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.degrees(math.asin(float(np.clip(r[2, 0], -1.0, 1.0))))
    pitch = -math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


_JAW = np.array(JAW)


def point_weights(confidence: np.ndarray, jaw_weight: float, min_confidence: float = 0.0) -> np.ndarray:
    """Per-point weights in [0, 1]: confidence over the face's median confidence, jaw scaled down.

    NaN confidences count as 0; all weights are 0 when the median is under ``min_confidence``.
    """
    c = np.array(confidence, dtype=np.float64)
    c[~(c > 0)] = 0.0
    median = float(np.partition(c, NUM_LANDMARKS // 2)[NUM_LANDMARKS // 2])
    w = np.minimum(c / median, 1.0) if median > 0 and median >= min_confidence else c * 0.0
    w[_JAW] *= jaw_weight
    return w


class PoseSolver:
    """Solves head poses for frames of one size (intrinsics fixed per solver)."""

    def __init__(
        self,
        camera: np.ndarray,
        options: PoseOptions | None = None,
        model: np.ndarray | None = None,
        size: tuple[int, int] | None = None,
    ):
        self.size = size  # (width, height) of the frames the intrinsics were made for, if known
        self.camera = np.asarray(camera, dtype=np.float64)
        self.options = options or PoseOptions()
        self.model = face3d_points() if model is None else np.asarray(model, dtype=np.float64)
        self._eye_distance = float(np.linalg.norm(self.model[OUTER_EYE_CORNERS[0]] - self.model[OUTER_EYE_CORNERS[1]]))
        self._dist = np.zeros(5)
        self._jaw_scale = point_weights(np.ones(NUM_LANDMARKS), self.options.jaw_weight)

    def solve(self, points: np.ndarray, confidence: np.ndarray | None = None) -> HeadPose | None:
        """The pose of one face, or None when too few points are usable or the fit is poor."""
        points = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
        o = self.options
        weights = self._jaw_scale if confidence is None else point_weights(confidence, o.jaw_weight, o.min_confidence)
        use = weights >= self.options.min_weight
        if not np.isfinite(points).all():
            use &= np.isfinite(points).all(axis=1)
        if np.count_nonzero(use) < self.options.min_points:
            return None
        obj, img, w = self.model[use], points[use], weights[use]
        ok, rvec, tvec = cv2.solvePnP(obj, img, self.camera, self._dist, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            return None
        rvec, tvec, error_px = self._refine(obj, img, w, rvec.reshape(3), tvec.reshape(3))
        if not (np.isfinite(tvec).all() and tvec[2] > 0):
            return None
        error = error_px * tvec[2] / (self.camera[0, 0] * self._eye_distance)
        if not error <= self.options.max_error:
            return None
        rotation = cv2.Rodrigues(rvec)[0]
        yaw, pitch, roll = angles_from_rotation(rotation)
        return HeadPose(yaw, pitch, roll, rotation, tvec, self.camera, float(error))

    def _refine(
        self, obj: np.ndarray, img: np.ndarray, w: np.ndarray, rvec: np.ndarray, tvec: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Weighted Gauss-Newton on the reprojection error; returns the pose and its weighted RMS (px)."""
        w2 = np.repeat(w, 2)
        for step in range(_GN_STEPS + 1):
            projected, jacobian = cv2.projectPoints(obj, rvec, tvec, self.camera, self._dist)
            residual = (projected.reshape(-1, 2) - img).reshape(-1)
            if step == _GN_STEPS:
                break
            j = jacobian[:, :6]
            jw = j * w2[:, None]
            ok, delta = cv2.solve(jw.T @ j, -(jw.T @ residual), flags=cv2.DECOMP_CHOLESKY)
            if not ok:
                break
            delta = delta.reshape(6)
            rvec, tvec = rvec + delta[:3], tvec + delta[3:]
        rms = math.sqrt(float(np.sum(w2 * residual**2) / np.sum(w2)))
        return rvec, tvec, rms

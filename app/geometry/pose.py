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
jaw line (0-16); a face whose median confidence is under ``min_confidence`` gets no pose.
Points under ``min_weight`` are left out (weight 0).

Solving: weighted Levenberg-Marquardt on the reprojection error of all 68 points (``cv2.projectPoints``
gives the Jacobian), started from the same face's unsmoothed pose on the previous frame
(``previous``: ``_STEPS_TRACKED`` steps); a face without one, or whose refine from it fits badly,
starts from SQPnP on the usable points (a global solver; ``_STEPS_FRESH`` steps). Each step that
does not lower the weighted error is undone and retried with more damping, so the result is the
best pose seen; a step smaller than ``_SETTLED_RAD`` / ``_SETTLED_MM`` is taken without scoring it
and ends the refine (a face that barely moved costs one projection instead of three; from a start
that close, one Gauss-Newton step leaves an error of the order of the step squared, under 0.02 deg). A face
with fewer than ``min_points`` usable points or a weighted reprojection error above
``max_error`` (frontal inter-ocular distances) gets no pose. The per-frame cost is at most
``_STEPS_TRACKED`` + 1 projections and a 6x6 solve per step; on real clips 1.0-1.9 projections
a frame (``PoseSolver.projections``; docs/RESULTS.md, "Head pose").

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
_STEPS_FRESH = 3  # refine steps after SQPnP
_STEPS_TRACKED = 2  # refine steps from the previous frame's pose
# Levenberg-Marquardt: the diagonal's extra weight (x 0.1 after the start and per better step, x 10 per worse)
_DAMPING = 1e-2
# a step smaller than this (radians of rotation vector, mm of translation) ends the refine unscored:
# the start was already near the optimum (docs/RESULTS.md, "Head pose": tracked and bench rows)
_SETTLED_RAD = 0.02
_SETTLED_MM = 6.0


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
    y, p, r = math.radians(yaw), math.radians(pitch), math.radians(roll)
    cy, sy, cp, sp, cr, sr = math.cos(y), math.sin(y), math.cos(p), math.sin(p), math.cos(r), math.sin(r)
    return np.array(
        [
            [cr * cy, cr * sy * sp - sr * cp, -cr * sy * cp - sr * sp],
            [sr * cy, sr * sy * sp + cr * cp, -sr * sy * cp + cr * sp],
            [sy, -cy * sp, cy * cp],
        ]
    )


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix; the inverse of ``rotation_from_angles``."""
    (r00, _, _), (r10, _, _), (r20, r21, r22) = np.asarray(rotation, dtype=np.float64).tolist()
    yaw = math.degrees(math.asin(min(1.0, max(-1.0, r20))))
    pitch = -math.degrees(math.atan2(r21, r22))
    roll = math.degrees(math.atan2(r10, r00))
    return yaw, pitch, roll


def jaw_scale(jaw_weight: float) -> np.ndarray:
    """Per-point factors: ``jaw_weight`` on the jaw line (0-16), 1 elsewhere."""
    scale = np.ones(NUM_LANDMARKS)
    scale[list(JAW)] = jaw_weight
    return scale


def point_weights(confidence: np.ndarray, jaw_weight: float | np.ndarray, min_confidence: float = 0.0) -> np.ndarray:
    """Per-point weights in [0, 1]: confidence over the face's median confidence, jaw scaled down
    (``jaw_weight``, or the factors of ``jaw_scale``).

    NaN confidences count as 0; all weights are 0 when the median is under ``min_confidence``.
    """
    c = np.fmax(np.asarray(confidence, dtype=np.float64), 0.0)  # NaN -> 0
    median = float(np.partition(c, NUM_LANDMARKS // 2)[NUM_LANDMARKS // 2])
    if not (median > 0 and median >= min_confidence):
        return np.zeros(NUM_LANDMARKS)
    scale = jaw_scale(jaw_weight) if np.ndim(jaw_weight) == 0 else jaw_weight
    return np.minimum(c * (1.0 / median), 1.0) * scale


class PoseSolver:
    """Solves head poses for frames of one size (intrinsics fixed per solver, shared by all tracks)."""

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
        self._jaw_scale = jaw_scale(self.options.jaw_weight)
        self._focal = float(self.camera[0, 0])
        self.projections = 0  # cv2.projectPoints calls so far (the bench reports them per frame)

    def weights(self, confidence: np.ndarray) -> np.ndarray:
        """The per-point weights ``solve`` uses for these confidences (``point_weights`` with the options)."""
        return point_weights(confidence, self._jaw_scale, self.options.min_confidence)

    def solve(
        self, points: np.ndarray, confidence: np.ndarray | None = None, previous: HeadPose | None = None
    ) -> HeadPose | None:
        """The pose of one face, or None when too few points are usable or the fit is poor.

        ``previous``: the same face's unsmoothed pose on the frame before, where the refine starts;
        without it (or when the refine from it fits badly) SQPnP gives the start.
        """
        weights = self._jaw_scale if confidence is None else self.weights(confidence)
        return self.solve_weighted(points, weights, previous)

    def solve_weighted(
        self, points: np.ndarray, weights: np.ndarray, previous: HeadPose | None = None
    ) -> HeadPose | None:
        """``solve`` with the weights already made (``weights``)."""
        points = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
        use = weights >= self.options.min_weight
        if not np.isfinite(points).all():
            use &= np.isfinite(points).all(axis=1)
            points = np.where(use[:, None], points, 0.0)
        if np.count_nonzero(use) < self.options.min_points:
            return None
        w = weights * use  # the refine runs on all 68 points, the unused ones weighted 0
        pose = None
        if previous is not None:
            rvec = cv2.Rodrigues(previous.rotation)[0].reshape(3)
            pose = self.refine(points, w, rvec, previous.translation, _STEPS_TRACKED)
        if pose is None:
            ok, rvec, tvec = cv2.solvePnP(
                self.model[use], points[use], self.camera, self._dist, flags=cv2.SOLVEPNP_SQPNP
            )
            if ok:
                pose = self.refine(points, w, rvec.reshape(3), tvec.reshape(3), _STEPS_FRESH)
        return pose

    def refine(
        self, img: np.ndarray, w: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, steps: int
    ) -> HeadPose | None:
        """``steps`` weighted Levenberg-Marquardt steps on the reprojection error of all 68 points
        (``img``: finite (68, 2); ``w``: weights, 0 for unused points) from (rvec, tvec); the best
        pose seen, or None when it fits worse than ``max_error`` or lies behind the camera."""
        w2 = np.repeat(w, 2)
        target = img.reshape(-1)
        damping = _DAMPING
        best = None  # (weighted squared error, rvec, tvec, residual, jacobian)
        for step in range(steps + 1):
            projected, jacobian = cv2.projectPoints(self.model, rvec, tvec, self.camera, self._dist)
            self.projections += 1
            residual = projected.reshape(-1) - target
            cost = float(w2 @ (residual * residual))
            if best is None or cost < best[0]:
                damping *= 0.1
                best = (cost, rvec, tvec, residual, jacobian)
            else:  # worse: back to the best pose, a shorter step nearer the gradient
                damping *= 10.0
            if step == steps:
                break
            _, rvec, tvec, residual, jacobian = best
            j = jacobian[:, :6]
            jw = j.T * w2
            normal = jw @ j
            normal.flat[::7] *= 1.0 + damping
            ok, delta = cv2.solve(normal, -(jw @ residual), flags=cv2.DECOMP_CHOLESKY)
            if not ok:
                break
            rvec, tvec = rvec + delta[:3, 0], tvec + delta[3:, 0]
            if abs(delta[:3, 0]).max() < _SETTLED_RAD and abs(delta[3:, 0]).max() < _SETTLED_MM:
                best = (best[0], rvec, tvec)  # a step this small from a good start: taken, not scored
                break
        cost, rvec, tvec = best[:3]
        if not tvec[2] > 0:
            return None
        error = math.sqrt(cost / float(w2.sum())) * tvec[2] / (self._focal * self._eye_distance)
        if not error <= self.options.max_error:  # also NaN
            return None
        rotation = cv2.Rodrigues(rvec)[0]
        yaw, pitch, roll = angles_from_rotation(rotation)
        return HeadPose(yaw, pitch, roll, rotation, tvec, self.camera, float(error))

"""Similarity alignment of a face to the fixed template, and the exact way back.

One function serves training (keypoints derived from ground truth), detection
(keypoints from the detector) and tracking (keypoints derived from the previous
frame's landmarks), so every crop the networks see is made the same way.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks
from models.types import AlignedCrop

# Keypoint slots of the template (see landmarks68.KEYPOINT_NAMES) in crop units: (0, 0)
# is the top-left corner of the crop and (1, 1) the bottom-right one. Computed by
# models/tools/make_template.py from the Procrustes mean of the 300-W training shapes, scaled
# so that the mean 68-point shape's box spans 70% of the crop.
TEMPLATE = np.array(
    [
        [0.34669, 0.28158],
        [0.65317, 0.28158],
        [0.50207, 0.44778],
        [0.36347, 0.60138],
        [0.63335, 0.60098],
        [0.49812, 0.61615],
    ]
)


def template_points(size: int) -> np.ndarray:
    """The template's six keypoints in pixel-centre coordinates of a ``size`` crop."""
    return TEMPLATE * size - 0.5


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src to dst.

    Closed-form Umeyama solution; returns a (2, 3) matrix. Needs two or more points.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if len(src) < 2 or src.shape != dst.shape:
        raise ValueError("a similarity needs two or more matching points")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum()
    if var_s < 1e-12:
        raise ValueError("degenerate points: all source points coincide")
    a = (s * d).sum()  # sum of dot products
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()  # sum of cross products
    sc, ss = a / var_s, b / var_s  # scale * cos, scale * sin
    rot = np.array([[sc, -ss], [ss, sc]])
    t = mu_d - rot @ mu_s
    return np.hstack([rot, t[:, None]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Exact inverse of a (2, 3) affine matrix.

    Closed form: ``np.linalg.inv`` goes through LAPACK, whose thread pool costs milliseconds per
    call on a busy machine, once per face per frame.
    """
    (a, b, tx), (c, d, ty) = np.asarray(matrix, dtype=np.float64)
    det = a * d - b * c
    if det == 0 or not np.isfinite(det):
        raise np.linalg.LinAlgError("singular affine matrix")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def alignment_matrix(keypoints: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """The frame -> crop similarity from the present keypoint slots to the template."""
    mask = np.asarray(mask, dtype=bool)
    return estimate_similarity(np.asarray(keypoints)[mask], template_points(size)[mask])


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> AlignedCrop:
    """Warp ``image`` into a ``size`` x ``size`` crop; outside the frame is black."""
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return AlignedCrop(image=crop, matrix=matrix, inverse=invert_affine(matrix))


def align(image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray, size: int) -> AlignedCrop:
    """Align a face from its keypoints (six slots, ``mask`` marks the present ones)."""
    return warp(image, alignment_matrix(keypoints, mask, size), size)


def align_from_landmarks(image: np.ndarray, points68: np.ndarray, size: int) -> AlignedCrop:
    """Align from 68 landmarks through their five derived keypoints (training and tracking)."""
    return align(image, keypoints_from_landmarks(points68), FIVE_POINT_MASK, size)

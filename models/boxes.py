"""Boxes of landmark sets, their overlap, and which box belongs to an annotated face.

``match_face`` is the one rule every scorer uses to tell which tracked face or detection is the
annotated one (evaluate, eval300vw, the window's accuracy, dlib's peer, the detector measurements).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def landmark_box(points: np.ndarray) -> np.ndarray:
    """The tight box around ``points`` (N, 2): x1, y1, x2, y2."""
    points = np.asarray(points)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def face_size(points: np.ndarray) -> float:
    """The diagonal of the box of the finite points (0 with fewer than two): the face size the
    smoother's defaults are tuned for and the overlay's marks scale with."""
    p = np.asarray(points, dtype=np.float64)
    p = p[np.all(np.isfinite(p), axis=1)]
    if len(p) < 2:
        return 0.0
    return float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes (0 when the union is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_face(boxes: Sequence[np.ndarray] | np.ndarray, gt: np.ndarray) -> int | None:
    """Which box belongs to an annotated face: the one whose centre is nearest the centre of
    the ground-truth landmark box, among those whose centre lies inside it; None for a miss."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    lo, hi = np.asarray(gt).min(axis=0), np.asarray(gt).max(axis=0)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = np.all((centres >= lo) & (centres <= hi), axis=1)
    if not inside.any():
        return None
    distance = np.linalg.norm(centres - (lo + hi) / 2, axis=1)
    distance[~inside] = np.inf
    return int(np.argmin(distance))

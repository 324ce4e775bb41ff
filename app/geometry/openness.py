"""Eye and mouth openness from the 68 points, independent of face size.

- Eye aspect ratio (Soukupova and Cech, 2016), per eye: the mean of the two lid-to-lid
  distances over the corner-to-corner distance, ``(|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)``
  with p1..p6 = points 36-41 (image-left eye) or 42-47 (image-right eye). About 0.25-0.35
  open, under 0.15 closed; a ratio of distances on the eye, so face size and in-plane
  rotation cancel.
- Mouth opening: the mean inner-lip gap (61-67, 62-66, 63-65) over the nose length
  (27-33). Both are vertical distances on the face, so yaw shortens neither and pitch
  shortens both; mouth width (which a smile changes) plays no part. 0 closed, about 0.5
  wide open.

A measure whose points are not finite, or whose points' confidence is under ``min_weight``
of the face's median (see ``pose.point_weights``), is NaN.
"""
from __future__ import annotations

import math

import numpy as np

# the point pairs whose distances make the measures: per eye p2-p6, p3-p5, p1-p4; then the
# three inner-lip gaps and the nose length (27-33)
_A = np.array([37, 38, 36, 43, 44, 42, 61, 62, 63, 27])
_B = np.array([41, 40, 39, 47, 46, 45, 67, 66, 65, 33])


def openness(points: np.ndarray, usable: np.ndarray | None = None) -> tuple[float, float, float]:
    """(image-left eye aspect ratio, image-right eye aspect ratio, mouth opening); NaN for a
    measure with an unusable or non-finite point."""
    d = np.asarray(points, dtype=np.float64)[_A] - np.asarray(points, dtype=np.float64)[_B]
    n = np.hypot(d[:, 0], d[:, 1]).tolist()
    ok = [True] * 10 if usable is None else (usable[_A] & usable[_B]).tolist()
    left = _ratio(n[0] + n[1], 2.0 * n[2]) if ok[0] and ok[1] and ok[2] else math.nan
    right = _ratio(n[3] + n[4], 2.0 * n[5]) if ok[3] and ok[4] and ok[5] else math.nan
    mouth = _ratio((n[6] + n[7] + n[8]) / 3.0, n[9]) if all(ok[6:]) else math.nan
    return left, right, mouth


def eye_aspect_ratios(points: np.ndarray, usable: np.ndarray | None = None) -> tuple[float, float]:
    """(image-left eye, image-right eye) aspect ratios; NaN for an eye with an unusable point."""
    return openness(points, usable)[:2]


def mouth_opening(points: np.ndarray, usable: np.ndarray | None = None) -> float:
    """Mean inner-lip gap over nose length (27-33); NaN when a point is unusable."""
    return openness(points, usable)[2]


def _ratio(a: float, b: float) -> float:
    """a / b, NaN where that is not a finite number."""
    value = a / b if b > 0 else math.nan
    return value if math.isfinite(value) else math.nan

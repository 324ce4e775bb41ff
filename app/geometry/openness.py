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

import numpy as np

_EYES = (np.array([36, 37, 38, 39, 40, 41]), np.array([42, 43, 44, 45, 46, 47]))
_MOUTH_TOP, _MOUTH_BOTTOM = np.array([61, 62, 63]), np.array([67, 66, 65])
_NOSE = np.array([27, 33])


def _eye_ratio(p: np.ndarray) -> float:
    vertical = np.hypot(*(p[1] - p[5])) + np.hypot(*(p[2] - p[4]))
    width = np.hypot(*(p[0] - p[3]))
    return float(vertical / (2.0 * width)) if width > 0 else float("nan")


def eye_aspect_ratios(points: np.ndarray, usable: np.ndarray | None = None) -> tuple[float, float]:
    """(image-left eye, image-right eye) aspect ratios; NaN for an eye with an unusable point."""
    points = np.asarray(points, dtype=np.float64)
    out = []
    for eye in _EYES:
        ok = np.isfinite(points[eye]).all() and (usable is None or usable[eye].all())
        out.append(_eye_ratio(points[eye]) if ok else float("nan"))
    return out[0], out[1]


def mouth_opening(points: np.ndarray, usable: np.ndarray | None = None) -> float:
    """Mean inner-lip gap over nose length (27-33); NaN when a point is unusable."""
    points = np.asarray(points, dtype=np.float64)
    idx = np.concatenate([_MOUTH_TOP, _MOUTH_BOTTOM, _NOSE])
    if not np.isfinite(points[idx]).all() or (usable is not None and not usable[idx].all()):
        return float("nan")
    gap = np.linalg.norm(points[_MOUTH_TOP] - points[_MOUTH_BOTTOM], axis=1).mean()
    nose = np.hypot(*(points[_NOSE[0]] - points[_NOSE[1]]))
    return float(gap / nose) if nose > 0 else float("nan")

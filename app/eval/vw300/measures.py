"""Per-frame measures: which tracked face is scored, the jitter of the error, and the smoothing's lag."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from models.boxes import landmark_box
from models.landmarks68 import FIVE_POINT_MASK, inter_ocular, keypoints_from_landmarks
from models.types import Detection

LAG_GRID = np.round(np.arange(-2.0, 6.0001, 0.05), 2)
# frames of context the lag grid needs: r(t - k) interpolates frames t - floor(k) and t - floor(k) - 1
LAG_BEFORE, LAG_AFTER = math.floor(LAG_GRID.max()) + 1, -math.floor(LAG_GRID.min())

def detection_from_ground_truth(gt: np.ndarray) -> Detection:
    """A detector-like result from ground truth: its box and RetinaFace's five points."""
    keypoints = keypoints_from_landmarks(gt)
    keypoints[~FIVE_POINT_MASK] = np.nan
    box = landmark_box(gt)
    return Detection(box=box, score=1.0, keypoints=keypoints, keypoint_mask=FIVE_POINT_MASK.copy())


def error_jitter(pred: np.ndarray, gt: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per pair (t-1, t): mean over points of the change of the error vector, / io of frame t.

    ``pred``, ``gt``: (T, 68, 2); ``pairs``: (T,) bool, True where frames t-1 and t are both scored.
    Returns (T,) with NaN where ``pairs`` is False.
    """
    out = np.full(len(pred), np.nan)
    idx = np.flatnonzero(pairs)
    if idx.size:
        err = pred - gt
        change = np.linalg.norm(err[idx] - err[idx - 1], axis=2).mean(axis=1)
        io = np.array([inter_ocular(gt[i]) for i in idx])
        out[idx] = change / io
    return out


def lag_cost(shown: np.ndarray, reference: np.ndarray, scored: np.ndarray, io: np.ndarray) -> tuple[list, int]:
    """Sum over usable frames of mean_i ||shown_t - reference(t - k)||^2 / io_t^2 for k in LAG_GRID.

    Usable: frames whose LAG_BEFORE previous and LAG_AFTER next frames are all scored.
    Returns (sums per k, number of usable frames).
    """
    n = len(shown)
    usable = np.zeros(n, bool)
    for t in range(LAG_BEFORE, n - LAG_AFTER):
        usable[t] = scored[t - LAG_BEFORE : t + LAG_AFTER + 1].all()
    ts = np.flatnonzero(usable)
    if ts.size == 0:
        return [0.0] * len(LAG_GRID), 0
    sums = []
    for k in LAG_GRID:
        base = math.floor(k)
        f = k - base
        a, b = reference[ts - base], reference[ts - base - 1]
        shifted = (1 - f) * a + f * b
        d2 = ((shown[ts] - shifted) ** 2).sum(axis=2).mean(axis=1) / io[ts] ** 2
        sums.append(float(d2.sum()))
    return sums, int(ts.size)


def lag_from_costs(costs: Iterable[tuple[Sequence[float], int]]) -> float | None:
    """The best shift of pooled cost curves; None when no frame could be used."""
    total, count = np.zeros(len(LAG_GRID)), 0
    for sums, n in costs:
        if n:
            total += np.asarray(sums)
            count += n
    if count == 0:
        return None
    return float(LAG_GRID[int(np.argmin(total))])

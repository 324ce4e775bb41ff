"""Landmark accuracy metrics the way landmark papers report them (numpy only).

One module for both sides: the app's evaluations (``app.eval.evaluate``, ``app.eval.vw300``, the
window's live error) and training, export and the model fits in ``models/`` all score with it.

* NME: mean point-to-point Euclidean error divided by a normalising distance taken
  from the ground truth: ``"io"`` = the outer eye corners (36, 45), ``"ip"`` = the
  eye centres (means of 36-41 and 42-47), ``"box"`` = the square root of the area
  (width x height) of the ground truth's 68-point bounding box, as the field reports
  AFLW2000-3D and Menpo, where the eye corners of a profile face coincide. Over all 68 points or a subset of indices
  (e.g. ``landmarks68.INNER_49`` for 300-VW). ``nme`` scores one face, ``nme_per_face`` many.
* CED: the cumulative error distribution, the fraction of faces with NME <= x.
* AUC@thr: the area under the CED from 0 to ``thr`` divided by ``thr``. The CED is a
  step function, so the area is computed exactly, not on a grid: each face with
  error ``e`` contributes ``max(0, thr - e)`` to the area, hence
  ``AUC = mean(max(0, 1 - e / thr))``.
* FR@thr: the fraction of faces with NME > ``thr``.

A face that was not found (a detector miss) has error ``MISS`` (infinity): it lies
beyond every threshold, so it counts as a failure and adds nothing to the AUC.
Means of NME are taken over the finite errors only (see ``mean_nme``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from models.landmarks68 import LEFT_EYE, OUTER_EYE_CORNERS, RIGHT_EYE

MISS = math.inf
NORMALISERS = ("io", "ip", "box")
NORMALISER_NAMES = {"io": "inter-ocular", "ip": "inter-pupil", "box": "landmark box"}
DEFAULT_THRESHOLD = 0.08


def normalising_distances(gt: np.ndarray, norm: str = "io") -> np.ndarray:
    """The distance NME divides by, for each face of (N, 68, 2) ground truth: (N,)."""
    gt = np.asarray(gt, dtype=np.float64)
    if norm == "io":
        return np.linalg.norm(gt[:, OUTER_EYE_CORNERS[0]] - gt[:, OUTER_EYE_CORNERS[1]], axis=-1)
    if norm == "ip":
        return np.linalg.norm(gt[:, list(LEFT_EYE)].mean(1) - gt[:, list(RIGHT_EYE)].mean(1), axis=-1)
    if norm == "box":
        size = gt.max(axis=1) - gt.min(axis=1)  # (N, 2): width, height of the 68 points
        return np.sqrt(size[:, 0] * size[:, 1])
    raise ValueError(f"unknown NME normaliser {norm!r}; use one of {NORMALISERS}")


def normalising_distance(gt: np.ndarray, norm: str = "io") -> float:
    """The distance NME divides by, from one face's ground-truth 68 points."""
    return float(normalising_distances(np.asarray(gt)[None], norm)[0])


def nme_per_face(pred: np.ndarray, gt: np.ndarray, norm: str = "io",
                 indices: Sequence[int] | None = None) -> np.ndarray:
    """Normalised mean error of each face of (N, 68, 2) predictions and ground truth: (N,).

    ``indices`` restricts the mean to a subset of the 68 points; the normaliser is
    always taken from the full ground truth.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 3 or gt.shape[2] != 2:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (faces, N, 2)")
    distance = normalising_distances(gt, norm)
    if not (distance > 0).all():
        raise ValueError(f"ground truth has a zero {norm} normalising distance")
    sel = slice(None) if indices is None else list(indices)
    return np.linalg.norm(pred[:, sel] - gt[:, sel], axis=-1).mean(axis=1) / distance


def nme(pred: np.ndarray, gt: np.ndarray, norm: str = "io", indices: Sequence[int] | None = None) -> float:
    """Normalised mean error of one face: mean point error / the normalising distance of ``gt``."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 2 or gt.shape[1] != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be (N, 2)")
    return float(nme_per_face(pred[None], gt[None], norm, indices)[0])


def error_array(errors: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-face errors as a flat float64 array; NaN or negative values are refused."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("errors must be non-negative numbers (a miss is math.inf, not NaN)")
    return e


def mean_nme(errors: Sequence[float] | np.ndarray) -> float:
    """Mean over the found faces (finite errors); NaN when none was found."""
    e = error_array(errors)
    found = e[np.isfinite(e)]
    return float(found.mean()) if found.size else math.nan


def count_misses(errors: Sequence[float] | np.ndarray) -> int:
    return int(np.isinf(error_array(errors)).sum())


def ced(errors: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """CED at each threshold: the fraction of faces (misses included) with error <= threshold."""
    e = np.sort(error_array(errors))
    if e.size == 0:
        raise ValueError("no errors to build a CED from")
    x = np.asarray(thresholds, dtype=np.float64)
    return np.searchsorted(e, x, side="right") / e.size


def auc(errors: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Exact area under the CED step function on [0, threshold], divided by threshold."""
    e = error_array(errors)
    if e.size == 0:
        raise ValueError("no errors to compute an AUC from")
    if not threshold > 0:
        raise ValueError("the AUC threshold must be positive")
    return float(np.clip(1.0 - e / threshold, 0.0, 1.0).mean())


def failure_rate(errors: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of faces (misses included) with error > threshold."""
    e = error_array(errors)
    if e.size == 0:
        raise ValueError("no errors to compute a failure rate from")
    return float((e > threshold).mean())


def summarise(errors: np.ndarray) -> dict:
    """Mean, median and failure rate at 0.10 of finite per-face errors (training's validation and reports)."""
    return {"nme": float(errors.mean()), "median": float(np.median(errors)),
            "fr10": float((errors > 0.10).mean()), "faces": int(len(errors))}

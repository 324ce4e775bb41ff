"""Landmark accuracy metrics the way landmark papers report them.

* NME: mean point-to-point Euclidean error divided by a normalising distance taken
  from the ground truth: ``"io"`` = the outer eye corners (36, 45), ``"ip"`` = the
  eye centres (means of 36-41 and 42-47). Over all 68 points or a subset of indices
  (e.g. ``landmarks68.INNER_49`` for 300-VW).
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
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from models.landmarks68 import inter_ocular, inter_pupil

MISS = math.inf
NORMALISERS = ("io", "ip")
DEFAULT_THRESHOLD = 0.08


def normalising_distance(gt: np.ndarray, norm: str = "io") -> float:
    """The distance NME divides by, from the ground-truth 68 points."""
    if norm == "io":
        return inter_ocular(gt)
    if norm == "ip":
        return inter_pupil(gt)
    raise ValueError(f"unknown NME normaliser {norm!r}; use one of {NORMALISERS}")


def nme(pred: np.ndarray, gt: np.ndarray, norm: str = "io", indices: Sequence[int] | None = None) -> float:
    """Normalised mean error of one face: mean point error / the normalising distance of ``gt``.

    ``indices`` restricts the mean to a subset of the 68 points; the normaliser is
    always taken from the full ground truth.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 2 or gt.shape[1] != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be (N, 2)")
    distance = normalising_distance(gt, norm)
    if not distance > 0:
        raise ValueError(f"ground truth has a zero {norm} normalising distance")
    sel = slice(None) if indices is None else list(indices)
    return float(np.linalg.norm(pred[sel] - gt[sel], axis=1).mean() / distance)


def _errors(errors: Sequence[float] | np.ndarray) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64).ravel()
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("errors must be non-negative numbers (a miss is math.inf, not NaN)")
    return e


def mean_nme(errors: Sequence[float] | np.ndarray) -> float:
    """Mean over the found faces (finite errors); NaN when none was found."""
    e = _errors(errors)
    found = e[np.isfinite(e)]
    return float(found.mean()) if found.size else math.nan


def count_misses(errors: Sequence[float] | np.ndarray) -> int:
    return int(np.isinf(_errors(errors)).sum())


def ced(errors: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """CED at each threshold: the fraction of faces (misses included) with error <= threshold."""
    e = np.sort(_errors(errors))
    if e.size == 0:
        raise ValueError("no errors to build a CED from")
    x = np.asarray(thresholds, dtype=np.float64)
    return np.searchsorted(e, x, side="right") / e.size


def auc(errors: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Exact area under the CED step function on [0, threshold], divided by threshold."""
    e = _errors(errors)
    if e.size == 0:
        raise ValueError("no errors to compute an AUC from")
    if not threshold > 0:
        raise ValueError("the AUC threshold must be positive")
    return float(np.clip(1.0 - e / threshold, 0.0, 1.0).mean())


def failure_rate(errors: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of faces (misses included) with error > threshold."""
    e = _errors(errors)
    if e.size == 0:
        raise ValueError("no errors to compute a failure rate from")
    return float((e > threshold).mean())


def plot_ced(
    curves: Mapping[str, Sequence[float] | np.ndarray],
    path: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    title: str | None = None,
) -> Path:
    """Write a PNG with one CED curve per model (label shows its AUC and FR) up to ``threshold``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.linspace(0.0, threshold, 801)
    fig = Figure(figsize=(6.4, 4.8), dpi=100)  # no pyplot: leaves any GUI backend alone
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, errors in curves.items():
        e = _errors(errors)
        label = (
            f"{name}: AUC {auc(e, threshold):.3f}, FR {100 * failure_rate(e, threshold):.2f}%"
            f" (n={e.size}, misses={count_misses(e)})"
        )
        ax.step(x, ced(e, x), where="post", label=label)
    ax.set_xlim(0.0, threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("NME (inter-ocular)")
    ax.set_ylabel("fraction of faces")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path

"""SGFA's exemplar repair of low-weight points (numpy only; run time).

A shape dictionary (``ShapeDictionary``, the asset ``assets/sgfa_dictionary.npz`` made by
``python -m models.sgfa_dictionary --build``) holds K representative 68-point shapes, each
centred with unit RMS size. ``repair`` takes a predicted shape and its per-point weights:

1. every exemplar is aligned to the prediction by the similarity that minimises the weighted
   squared distance (points whose weight is under ``threshold`` do not vote);
2. the ``k`` exemplars with the smallest weighted residual are kept;
3. the shape is reconstructed as the affine combination of those aligned exemplars (coefficients
   summing to 1) that best fits the prediction by weighted least squares, with a small ridge
   towards their plain mean so that a few votes cannot give a wild combination;
4. points whose weight is under ``threshold`` are replaced by the reconstruction.

Shapes are (68, 2) arrays in any pixel frame; the repair is invariant to similarity transforms.
2-D similarities are handled as complex numbers: a point x + iy maps to z * (x + iy) + t.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.landmarks68 import NUM_LANDMARKS

DEFAULT_K = 10
DEFAULT_THRESHOLD = 0.5
MIN_VOTES = 8  # fewer confident points than this: every point votes with its weight
RIDGE = 1e-3  # relative to the mean diagonal of the normal equations


class DictionaryError(ValueError):
    """A shape-dictionary file that is missing or invalid; the message names the file."""


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class ShapeDictionary:
    exemplars: np.ndarray  # (K, 68, 2) float64, each centred with unit RMS distance from its centre
    k: int = DEFAULT_K  # exemplars combined per repair (chosen on training shapes, see the builder)
    method: str = ""  # how the exemplars were chosen (for reports)

    def __post_init__(self) -> None:
        z = _complex(np.asarray(self.exemplars, dtype=np.float64))
        object.__setattr__(self, "complex", z)  # (K, 68) x + iy, computed once
        object.__setattr__(self, "squared", np.abs(z) ** 2)

    @classmethod
    def load(cls, path: str | Path) -> "ShapeDictionary":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                exemplars = np.asarray(data["exemplars"], dtype=np.float64)
                k = int(data["k"]) if "k" in data else DEFAULT_K
                method = str(data["method"]) if "method" in data else ""
        except FileNotFoundError:
            raise DictionaryError(f"shape dictionary not found: {path}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise DictionaryError(f"cannot read shape dictionary {path}: {exc}") from exc
        if exemplars.ndim != 3 or exemplars.shape[1:] != (NUM_LANDMARKS, 2) or len(exemplars) < 1:
            raise DictionaryError(f"{path}: 'exemplars' must be (K, 68, 2), got {exemplars.shape}")
        if not np.all(np.isfinite(exemplars)):
            raise DictionaryError(f"{path}: 'exemplars' holds non-finite values")
        return cls(exemplars, max(1, min(k, len(exemplars))), method)


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Repair:
    points: np.ndarray  # (68, 2) the prediction with the low-weight points replaced
    reconstruction: np.ndarray | None  # (68, 2) the dictionary's reconstruction; None when no point needed it
    replaced: np.ndarray  # (68,) bool: which points were replaced


def _complex(points: np.ndarray) -> np.ndarray:
    return points[..., 0] + 1j * points[..., 1]


def align_to(shapes: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) complex shapes aligned to the (N,) complex ``target`` by the weighted least-squares
    similarity each; returns the aligned shapes and their weighted mean squared residuals (K,)."""
    w = weights / weights.sum()
    mx = shapes @ w  # (K,)
    my = target @ w
    xc = shapes - mx[:, None]
    yc = target - my
    z = (np.conj(xc) * yc) @ w / np.maximum((np.abs(xc) ** 2) @ w, 1e-12)
    aligned = z[:, None] * xc + my
    residual = (np.abs(aligned - target) ** 2) @ w
    return aligned, residual


def residuals(dictionary: ShapeDictionary, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean squared residual (K,) of every exemplar aligned to the (68,) complex
    ``target`` (what ``align_to`` gives, from three matrix-vector products)."""
    w = weights / weights.sum()
    yc = target - target @ w
    mx = dictionary.complex @ w
    sxy = np.conj(dictionary.complex) @ (w * yc)  # the weighted centred target sums to 0
    sxx = np.maximum(dictionary.squared @ w - np.abs(mx) ** 2, 1e-12)
    return (np.abs(yc) ** 2) @ w - np.abs(sxy) ** 2 / sxx


def voting_weights(weights: np.ndarray, threshold: float) -> np.ndarray:
    """The weights the fit uses: points under ``threshold`` do not vote, unless fewer than
    ``MIN_VOTES`` would remain (then every point votes with its own weight)."""
    w = np.clip(np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0), 0.0, None)
    voting = np.where(w >= threshold, w, 0.0)
    if np.count_nonzero(voting) >= MIN_VOTES:
        return voting
    return w if np.count_nonzero(w) >= 2 else np.ones_like(w)


def reconstruct(points: np.ndarray, weights: np.ndarray, dictionary: ShapeDictionary, k: int | None = None
                ) -> np.ndarray:
    """The dictionary's weighted least-squares reconstruction of ``points`` (68, 2) from its ``k``
    nearest exemplars under ``weights`` (68,) (already the voting weights)."""
    k = dictionary.k if k is None else max(1, min(int(k), len(dictionary.exemplars)))
    target = _complex(np.asarray(points, dtype=np.float64))
    nearest = np.argsort(residuals(dictionary, target, weights), kind="stable")[:k]
    basis, _ = align_to(dictionary.complex[nearest], target, weights)  # (k, 68) complex, the prediction's frame
    # min sum_i w_i |sum_j c_j basis_ji - target_i|^2 + ridge |c - 1/k|^2, sum_j c_j = 1 (real c)
    sw = np.sqrt(weights / weights.sum())
    a = np.concatenate([(basis.real * sw).T, (basis.imag * sw).T])  # (136, k)
    b = np.concatenate([target.real * sw, target.imag * sw])
    normal = a.T @ a
    ridge = RIDGE * max(float(np.trace(normal)) / k, 1e-12)
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = 2 * (normal + ridge * np.eye(k))
    kkt[:k, k] = kkt[k, :k] = 1.0
    rhs = np.concatenate([2 * (a.T @ b + ridge / k), [1.0]])
    coefficients = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
    shape = coefficients @ basis
    return np.stack([shape.real, shape.imag], axis=-1)


def repair(points: np.ndarray, weights: np.ndarray, dictionary: ShapeDictionary, k: int | None = None,
           threshold: float = DEFAULT_THRESHOLD) -> Repair:
    """Replace the points whose weight is under ``threshold`` by the dictionary's reconstruction."""
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2) or weights.shape != (NUM_LANDMARKS,):
        raise ValueError(f"repair needs (68, 2) points and (68,) weights, got {points.shape} and {weights.shape}")
    finite = np.all(np.isfinite(points), axis=1)
    replaced = ~finite | (np.nan_to_num(weights, nan=0.0) < threshold)
    if not replaced.any():  # every point visible: nothing to reconstruct (the usual frame)
        return Repair(points.copy(), None, replaced)
    votes = voting_weights(np.where(finite, weights, 0.0), threshold)
    safe = np.where(finite[:, None], points, 0.0)
    shape = reconstruct(safe, np.where(finite, votes, 0.0), dictionary, k)
    return Repair(np.where(replaced[:, None], shape, points), shape, replaced)

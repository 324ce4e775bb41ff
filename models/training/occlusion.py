"""Synthetic occluders on training crops, with the points they hide (SGFA's visibility targets).

``occlude(crop, points, rng, donor)`` pastes one occluder over a random part of the face and
returns the new crop and a (68,) bool mask of the points it covers (soft coverage at the point
at least 0.5). Shapes: an ellipse (sunglasses, a cup), a rotated rectangle (a card, a book) or a
long band (a microphone, a finger, an arm), sized by the inter-ocular distance and centred near
a random landmark. Fill: a patch of another training crop (``donor``: skin, hair and background
textures, as a hand or another face would bring), a flat colour, or noise. Edges are softened
by a small blur so that the network cannot find the occluder by its outline alone.

Unlike the occluded test set (``app/synth/occlusions.py``: sunglasses, microphones, hands,
textured polygons and blurred blobs on HELEN test), these occluders come from the training data
alone and from a different generator, so the test set still measures generalisation.
``SGFATask.make_targets`` gives hidden points a zero score target: the score map learns to say
"this point is not seen" rather than only "this heatmap is accurate".
"""
from __future__ import annotations

import cv2
import numpy as np

from models.landmarks68 import OUTER_EYE_CORNERS

KINDS = ("ellipse", "rectangle", "band")
FILLS = ("donor", "flat", "noise")


def _mask(size: int, centre: np.ndarray, kind: str, iod: float, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    angle = float(rng.uniform(0, 180))
    if kind == "ellipse":
        axes = rng.uniform(0.3, 0.9, 2) * iod
        cv2.ellipse(mask, (centre * 16).round().astype(int).tolist(), (axes * 16).round().astype(int).tolist(),
                    angle, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        return mask
    if kind == "rectangle":
        half = rng.uniform(0.3, 0.8, 2) * iod
    else:  # band: long and thin
        half = np.array([rng.uniform(0.8, 2.0), rng.uniform(0.12, 0.3)]) * iod
    box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (float(2 * half[0]), float(2 * half[1])), angle))
    cv2.fillPoly(mask, [(box * 16).round().astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    return mask


def _fill(size: int, kind: str, rng: np.random.Generator, donor: np.ndarray | None) -> np.ndarray:
    if kind == "donor" and donor is not None:
        shift = rng.integers(-size // 3, size // 3 + 1, 2)
        patch = np.roll(donor, tuple(int(s) for s in shift), axis=(0, 1))
        return (patch[:, ::-1] if rng.random() < 0.5 else patch).astype(np.float32)
    if kind == "noise":
        base = rng.integers(0, 256, 3).astype(np.float32)
        return np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.float32)
    return np.broadcast_to(rng.integers(0, 256, 3).astype(np.float32), (size, size, 3))


def occlude(crop: np.ndarray, points: np.ndarray, rng: np.random.Generator,
            donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 crop and its (68, 2) points -> the occluded crop (new array) and the (68,)
    bool mask of hidden points."""
    size = crop.shape[0]
    iod = max(4.0, float(np.linalg.norm(points[OUTER_EYE_CORNERS[0]] - points[OUTER_EYE_CORNERS[1]])))
    centre = points[rng.integers(len(points))] + rng.normal(0.0, 0.2 * iod, 2)
    mask = _mask(size, centre, KINDS[rng.integers(len(KINDS))], iod, rng)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.02 * iod))
    fill = _fill(size, FILLS[rng.integers(len(FILLS))], rng, donor)
    alpha = mask[..., None]
    out = (crop.astype(np.float32) * (1 - alpha) + fill * alpha).round().clip(0, 255).astype(np.uint8)
    xy = np.clip(np.round(points).astype(int), 0, size - 1)
    inside = (points >= 0).all(axis=1) & (points <= size - 1).all(axis=1)
    hidden = inside & (mask[xy[:, 1], xy[:, 0]] >= 0.5)
    return out, hidden

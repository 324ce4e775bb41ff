"""Compute the alignment template (models.align.TEMPLATE) from the training shapes.

``python -m models.tools.make_template`` prints the six template rows. The mean shape is a
generalised Procrustes mean of the 300-W training faces (AFW + HELEN train), rotated
so the eye centres are level, then scaled and centred so its box spans
``FACE_SPAN`` of the crop.
"""
from __future__ import annotations

import numpy as np

from models.align import estimate_similarity, transform_points
from models.datasets import data_root, list_annotated
from models.landmarks68 import keypoints_from_landmarks

FACE_SPAN = 0.70


def procrustes_mean(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    mean = shapes[0] - shapes[0].mean(0)
    for _ in range(iterations):
        aligned = np.stack([transform_points(s, estimate_similarity(s, mean)) for s in shapes])
        mean = aligned.mean(0)
        mean = (mean - mean.mean(0)) / np.linalg.norm(mean - mean.mean(0))
    return mean


def compute_template() -> np.ndarray:
    shapes = []
    for sub in ("300w/afw", "300w/helen_train"):
        shapes += [item.load_points() for item in list_annotated(data_root() / sub)]
    mean = procrustes_mean(np.stack(shapes))
    kp = keypoints_from_landmarks(mean)
    eye_vec = kp[1] - kp[0]
    angle = -np.arctan2(eye_vec[1], eye_vec[0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    mean = mean @ rot.T
    lo, hi = mean.min(0), mean.max(0)
    scale = FACE_SPAN / (hi - lo).max()
    mean = (mean - (lo + hi) / 2) * scale + 0.5
    return keypoints_from_landmarks(mean)


if __name__ == "__main__":
    np.set_printoptions(precision=5, suppress=True)
    for row in compute_template():
        print(f"        [{row[0]:.5f}, {row[1]:.5f}],")

"""The iBUG / 300-W 68-point layout: index groups, mirror permutation, derived points.

All indices are 0-based. "Left" and "right" mean the image's left and right (the
subject's right eye is the image-left eye, indices 36-41), matching RetinaFace's
five-point order.
"""
from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 68

JAW = tuple(range(0, 17))
LEFT_BROW = tuple(range(17, 22))
RIGHT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_LOWER = tuple(range(31, 36))
LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))

# (indices, closed) for drawing the face contour lines.
CONTOURS: tuple[tuple[tuple[int, ...], bool], ...] = (
    (JAW, False),
    (LEFT_BROW, False),
    (RIGHT_BROW, False),
    (NOSE_BRIDGE, False),
    ((30,) + NOSE_LOWER, False),
    (LEFT_EYE, True),
    (RIGHT_EYE, True),
    (OUTER_LIPS, True),
    (INNER_LIPS, True),
)

OUTER_EYE_CORNERS = (36, 45)  # inter-ocular normalisation (NME_io)
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)

# The 49 "inner" points used by 300-VW papers: everything but the jaw line.
INNER_49 = tuple(i for i in range(17, 68) if i not in (60, 64))
# The 51 points off the jaw line (brows, nose, eyes, mouth), as large-pose papers report them.
INNER_51 = tuple(range(17, 68))

_MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)


def _mirror_permutation() -> np.ndarray:
    perm = np.arange(NUM_LANDMARKS)
    for a, b in _MIRROR_PAIRS:
        perm[a], perm[b] = b, a
    return perm


MIRROR = _mirror_permutation()
"""``flipped_points = mirror_x(points)[MIRROR]`` restores the semantic order after a flip."""

# Keypoint slots shared by detectors, templates and alignment. The first five are
# RetinaFace's order; the sixth is the mouth centre that BlazeFace gives instead of
# the two mouth corners.
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right", "mouth_centre")
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
FIVE_POINT_MASK = np.array([True, True, True, True, True, False])


def _keypoint_weights() -> np.ndarray:
    """(6, 68) averaging weights: row k averages the landmarks that make keypoint slot k."""
    groups = (LEFT_EYE, RIGHT_EYE, (NOSE_TIP,), (MOUTH_CORNERS[0],), (MOUTH_CORNERS[1],), (62, 66))
    weights = np.zeros((NUM_KEYPOINTS, NUM_LANDMARKS))
    for k, group in enumerate(groups):
        weights[k, list(group)] = 1.0 / len(group)
    return weights


_KEYPOINT_WEIGHTS = _keypoint_weights()


def keypoints_from_landmarks(points: np.ndarray) -> np.ndarray:
    """The six keypoint slots derived from 68 landmarks, shape (6, 2).

    Eye centres are the means of the eye contours, the nose is point 30, the mouth
    corners 48 and 54, the mouth centre the mean of the inner-lip midpoints 62 and 66.
    Training crops and tracked frames both align through these points (one product with
    fixed averaging weights: it runs for every face on every frame).
    """
    p = np.asarray(points, dtype=np.float64)
    if np.isfinite(p).all():
        return _KEYPOINT_WEIGHTS @ p
    # a missing point spoils only its own slot (in the product, 0 x NaN would spoil them all)
    return np.stack([np.sum(p[w > 0] * w[w > 0, None], axis=0) for w in _KEYPOINT_WEIGHTS])


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the outer eye corners (36, 45)."""
    p = np.asarray(points)
    return float(np.linalg.norm(p[OUTER_EYE_CORNERS[0]] - p[OUTER_EYE_CORNERS[1]]))


def inter_pupil(points: np.ndarray) -> float:
    """Distance between the eye centres (means of 36-41 and 42-47)."""
    p = np.asarray(points)
    return float(np.linalg.norm(p[list(LEFT_EYE)].mean(0) - p[list(RIGHT_EYE)].mean(0)))

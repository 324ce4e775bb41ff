"""The 3D 68-point mean face that head pose is solved against (``models/face3d_68.json``).

Head frame: x towards the image right of a frontal face, y down, z into the head (away
from the camera), origin at the nose tip (point 30), millimetres (scaled so the outer eye
corners are 90 mm apart). A frontal, upright face seen by an OpenCV camera (x right,
y down, z forward) has the identity rotation. Made by ``python -m models.tools.make_face3d``
(its docstring says from what).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.landmarks68 import NUM_LANDMARKS

FACE3D_PATH = Path(__file__).with_name("face3d_68.json")


@lru_cache(maxsize=None)
def _load(path: str) -> np.ndarray:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    points = np.asarray(data["points"], dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 3) or not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: 'points' must be {NUM_LANDMARKS} finite (x, y, z) rows, got shape {points.shape}")
    points.setflags(write=False)
    return points


def face3d_points(path: str | Path = FACE3D_PATH) -> np.ndarray:
    """The (68, 3) mean face, read-only float64."""
    return _load(str(path))

"""Where the shared data lives, and listing annotated stills (image + ``.pts``).

The root is ``$FACETRACK_DATA`` if set, else ``../shared/data`` beside the project.
Nothing from it is ever copied into the project.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.pts import read_pts

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

TRAIN_SETS = ("300w/afw", "300w/helen_train", "ytf68")
TEST_SET = "300w/helen_test"


def data_root() -> Path:
    """The shared data folder (``$FACETRACK_DATA`` or ``../shared/data``)."""
    env = os.environ.get("FACETRACK_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def detector_model_dir() -> Path:
    """The folder of the optional shared detector files (RetinaFace, YuNet)."""
    return data_root().parent / "models" / "detectors"



@dataclass(frozen=True)
class AnnotatedImage:
    image_path: Path
    pts_path: Path

    def load_points(self) -> np.ndarray:
        return read_pts(self.pts_path)


def list_annotated(folder: str | Path) -> list[AnnotatedImage]:
    """Every image in ``folder`` that has a ``.pts`` beside it, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"annotated-image folder not found: {folder}")
    items = []
    for img in sorted(folder.iterdir()):
        if img.suffix.lower() in IMAGE_SUFFIXES and img.with_suffix(".pts").is_file():
            items.append(AnnotatedImage(img, img.with_suffix(".pts")))
    return items


def resolve_dataset(name: str | Path) -> Path:
    """A dataset folder given as a path, or relative to the data root (e.g. ``300w/helen_test``)."""
    path = Path(name)
    if path.is_dir():
        return path
    candidate = data_root() / name
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(f"dataset folder not found: {name} (also looked in {data_root()})")

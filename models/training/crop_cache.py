"""Pre-computed canonical face crops, so an epoch costs one warp per sample.

Every annotated image is decoded once and warped to a ``CANON_SIZE`` square crop
that is the template-aligned ``CROP_SIZE`` crop (``models.align`` fed with the five
keypoints derived from the ground truth) at the same pixel scale, padded by
``(CANON_SIZE - CROP_SIZE) / 2`` pixels on every side. The ground-truth points are
stored in canonical-crop coordinates. Taking the centre ``CROP_SIZE`` window of a
canonical crop (an integer shift) therefore gives exactly the run-time aligned crop.

Crops are a uint8 BGR ``.npy`` memmap under ``engines.files.cache_dir()/crops``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.align import alignment_matrix, transform_points
from engines.files import cache_dir
from models.datasets import list_annotated, resolve_dataset
from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks

CROP_SIZE = 192  # template-aligned crop the canonical crop is built around
CANON_SIZE = 320  # canonical crop side; margin (320 - 192) / 2 = 64 px each side
CACHE_VERSION = 1


def canonical_offset(canon_size: int = CANON_SIZE, crop_size: int = CROP_SIZE) -> float:
    return (canon_size - crop_size) / 2.0


def canonical_matrix(points68: np.ndarray, canon_size: int = CANON_SIZE, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Frame -> canonical-crop matrix: the run-time alignment at ``crop_size`` shifted by the margin."""
    m = alignment_matrix(keypoints_from_landmarks(points68), FIVE_POINT_MASK, crop_size).copy()
    m[:, 2] += canonical_offset(canon_size, crop_size)
    return m


def cache_geometry(crop_size: int) -> tuple[int, int]:
    """(canonical size, crop size) of the crop cache for a ``crop_size`` network input: the
    192 px layout (320 canonical, 64 px margin) scaled to ``crop_size`` (margin rounded to an
    integer, so the centre window stays an integer shift); (320, 192) for 192."""
    margin = int(round((CANON_SIZE - CROP_SIZE) / 2 * crop_size / CROP_SIZE))
    return crop_size + 2 * margin, crop_size


@dataclass
class CropSet:
    """Canonical crops of one dataset folder (memory-mapped, read-only)."""

    name: str
    images: np.ndarray  # (N, S, S, 3) uint8 BGR
    points: np.ndarray  # (N, 68, 2) float32, canonical-crop pixel-centre coordinates
    sources: list[str]  # image file names

    def __len__(self) -> int:
        return len(self.sources)


def _cache_folder(name: str, canon_size: int, crop_size: int) -> Path:
    safe = name.strip("/").replace("/", "_")
    return cache_dir() / "crops" / f"{safe}_c{canon_size}_a{crop_size}_v{CACHE_VERSION}"


def build_crop_set(name: str, canon_size: int = CANON_SIZE, crop_size: int = CROP_SIZE, progress: bool = True) -> Path:
    """Decode and warp every annotated image of dataset ``name`` once; returns the cache folder."""
    from tqdm import tqdm

    items = list_annotated(resolve_dataset(name))
    if not items:
        raise FileNotFoundError(f"no annotated images in dataset {name}")
    folder = _cache_folder(name, canon_size, crop_size)
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(items), canon_size, canon_size, 3)
    )
    points = np.zeros((len(items), 68, 2), np.float32)
    for i, item in enumerate(tqdm(items, desc=f"caching {name}", disable=not progress, mininterval=5)):
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode image {item.image_path}")
        pts = item.load_points()
        m = canonical_matrix(pts, canon_size, crop_size)
        images[i] = cv2.warpAffine(image, m, (canon_size, canon_size), flags=cv2.INTER_LINEAR, borderValue=0)
        points[i] = transform_points(pts, m)
    images.flush()
    del images
    np.save(tmp / "points.npy", points)
    (tmp / "meta.json").write_text(
        json.dumps({"dataset": name, "canon_size": canon_size, "crop_size": crop_size,
                    "version": CACHE_VERSION, "sources": [it.image_path.name for it in items]})
    )
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_crop_set(name: str, canon_size: int = CANON_SIZE, crop_size: int = CROP_SIZE, build: bool = True) -> CropSet:
    """The cached canonical crops of ``name``, building the cache first if needed."""
    folder = _cache_folder(name, canon_size, crop_size)
    if not (folder / "meta.json").is_file():
        if not build:
            raise FileNotFoundError(f"no crop cache for {name} at {folder}")
        build_crop_set(name, canon_size, crop_size)
    meta = json.loads((folder / "meta.json").read_text())
    return CropSet(
        name=name,
        images=np.load(folder / "images.npy", mmap_mode="r"),
        points=np.load(folder / "points.npy"),
        sources=meta["sources"],
    )

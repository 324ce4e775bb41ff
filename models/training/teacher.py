"""Teacher labels: the flip-averaged ensemble of the shipped networks on every cached training image.

Issue 12 asks whether relabelling ytf68 (integer-rounded labels on small faces) with a teacher
helps (``models.tools.train --ytf68-teacher``), and whether training on a blend of the teacher's points
and the labels does (distillation, ``--distill W``, every set including the large-pose views).
The teacher sees each image as the run time would from its ground-truth keypoints
(``models.align.align_from_landmarks`` on the canonical crop, each network at its own input
size); each network predicts the crop and its mirror image (``+flip``), and the teacher's point
is the mean over the networks. Computed once per crop set and canonical size, cached as
``engines.files.cache_dir()/teacher/SET_cCANON_TAG.npy`` in canonical-crop coordinates.

Flip averaging removes the labels' +1 px horizontal offset (``models.training.label_offset``)
except for what a network memorised of its own training labels (r18_ffld keeps about +0.76 px
of it on ytf68), so when ``TrainingData`` keeps the labels' convention it shifts the teacher's
points along each image's offset vector by the share that zeroes their mean offset from the
set's labels (0.52 of the vector on ytf68).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from engines.files import cache_dir
from models.align import align_from_landmarks
from models.training.crop_cache import CropSet

TEACHER = ("r18_ffld+flip@fp32", "mnv2_sdd+flip@fp32")


def teacher_file(name: str, canon_size: int, models: Sequence[str] = TEACHER) -> Path:
    tag = hashlib.sha1("|".join(models).encode()).hexdigest()[:8]
    return cache_dir() / "teacher" / f"{name.strip('/').replace('/', '_')}_c{canon_size}_{tag}.npy"


def teacher_points(crop_set: CropSet, models: Sequence[str] = TEACHER, batch: int = 32,
                   progress: bool = True) -> np.ndarray:
    """(N, 68, 2) float32: the teacher's points for every image of ``crop_set`` (cached)."""
    canon_size = crop_set.images.shape[1]
    path = teacher_file(crop_set.name, canon_size, models)
    if path.is_file():
        points = np.load(path)
        if points.shape == (len(crop_set), 68, 2):
            return points
    from tqdm import tqdm

    from models.registry import load_landmark_model

    total = np.zeros((len(crop_set), 68, 2), np.float64)
    for name in models:
        with load_landmark_model(name) as model:
            for start in tqdm(range(0, len(crop_set), batch), desc=f"teacher {name} on {crop_set.name}",
                              disable=not progress, mininterval=10):
                ids = range(start, min(start + batch, len(crop_set)))
                crops = [align_from_landmarks(np.asarray(crop_set.images[i]), crop_set.points[i], model.input_size)
                         for i in ids]
                for i, landmarks in zip(ids, model.predict(crops)):
                    total[i] += landmarks.points
    points = (total / len(models)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.npy")
    np.save(tmp, points)
    os.replace(tmp, path)
    return points

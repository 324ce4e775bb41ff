"""Accuracy of a landmark network: NME normalised by the inter-ocular distance (36-45).

``evaluate_crops`` scores already-aligned crops (validation, from the crop cache);
``evaluate_folder`` runs the real run-time path on an annotated folder: ``models.align``
fed with the five points derived from the ground truth, network, decoding, and mapping
back to the frame with the crop's inverse matrix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.landmarks68 import INNER_51
from models.metrics import nme_per_face, summarise


@torch.no_grad()
def predict_crops(model, task, crops: np.ndarray, batch: int = 64, channels_last: bool = False,
                  methods: tuple[str, ...] = ("dark",)) -> dict[str, np.ndarray]:
    """Points in crop coordinates for each of ``methods`` (tasks with several decodings) or the task default."""
    model.eval()
    names = methods if task.decode_methods else ("default",)
    points: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for start in range(0, len(crops), batch):  # decoded batch by batch: SGFA's maps are large
        x = task.to_input(crops[start : start + batch])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        output = model(x).float().numpy()
        for m in names:
            points[m].append(task.points_from_output(output, method=m) if task.decode_methods
                             else task.points_from_output(output))
    return {m: np.concatenate(p) for m, p in points.items()}


def evaluate_crops(model, task, crops: np.ndarray, points: np.ndarray, channels_last: bool = False) -> dict:
    preds = predict_crops(model, task, crops, channels_last=channels_last,
                          methods=task.decode_methods)
    return {m: summarise(nme_per_face(p, points)) for m, p in preds.items()}


def evaluate_folder(model, task, folder: str | Path, methods: tuple[str, ...] = ("dark",), norm: str = "io",
                    points: int = 68) -> dict:
    """NME per decode method on an annotated folder through the run-time alignment path (frame
    coordinates): ``{method: summary}``. ``norm``: io, ip or box (``models.metrics``); ``points``
    68, or 51 (without the jaw line, as for AFLW2000-3D)."""
    import cv2

    from models.align import align_from_landmarks, transform_points
    from models.datasets import list_annotated, resolve_dataset

    items = list_annotated(resolve_dataset(folder))
    crops, inverses, gts = [], [], []
    for item in items:
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode image {item.image_path}")
        gt = item.load_points()
        crop = align_from_landmarks(image, gt, task.input_size)
        crops.append(crop.image)
        inverses.append(crop.inverse)
        gts.append(gt)
    results = {}
    for method, pred_crop in predict_crops(model, task, np.stack(crops), methods=methods).items():
        pred = np.stack([transform_points(p, inv) for p, inv in zip(pred_crop, inverses)])
        indices = None if points == 68 else INNER_51
        results[method] = summarise(nme_per_face(pred, np.stack(gts), norm=norm, indices=indices))
    return results

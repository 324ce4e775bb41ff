"""Reports on a trained r18_ffld checkpoint: NME_io of every stage (S0 ... S3), and how its
confidence separates faces from non-faces.

``python -m models.training.ffld_eval CHECKPOINT [--set FOLDER]`` prints the per-stage NME;
``--confidence`` the confidence report instead.
"""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch

from models.align import align_from_landmarks, transform_points
from models.datasets import data_root, list_annotated, resolve_dataset
from models.metrics import nme_per_face, summarise
from models.training.checkpoint import inference_weights, load_checkpoint
from models.training.dataset import TrainingData
from models.training.ffld_task import FFLDTask


@torch.no_grad()
def stage_points(model, task: FFLDTask, crops: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Crop pixel points of every stage (S0 ... S3) for (N, S, S, 3) BGR crops (eval mode)."""
    model.eval()
    out: list[list[np.ndarray]] = []
    for start in range(0, len(crops), batch):
        shapes = model(task.to_input(crops[start : start + batch]), all_stages=True).shapes
        out.append([s.numpy() * task.input_size - 0.5 for s in shapes])
    return [np.concatenate([o[i] for o in out]) for i in range(len(out[0]))]


def evaluate_stages(checkpoint: str, folder: str | None = None) -> dict:
    """NME_io of S0 ... S3 of a checkpoint: on the run's validation hold-out (GT-aligned crops), or
    on an annotated ``folder`` through the run-time alignment path (frame coordinates)."""
    state = load_checkpoint(checkpoint)
    task = FFLDTask.from_config(state["config"]["task"])
    model = task.blank_model()
    model.load_state_dict(inference_weights(state))
    if folder is None:
        tr = state["config"]["train"]
        data = TrainingData(tr["val_fraction"], tr["split_seed"], tr["w300_repeat"], tr["ytf_fraction"],
                            task.input_size, val_identity_fraction=tr.get("val_identity_fraction", 0.0))
        val = data.plain_batch(data.val_ids)
        crops, gts, inverses = val.crops, val.points, None
        where = "validation hold-out (GT-aligned crops)"
    else:
        items = list_annotated(resolve_dataset(folder))
        aligned = [align_from_landmarks(cv2.imread(str(i.image_path)), i.load_points(), task.input_size)
                   for i in items]
        crops = np.stack([a.image for a in aligned])
        inverses = [a.inverse for a in aligned]
        gts = np.stack([i.load_points() for i in items])
        where = f"{folder} (run-time alignment from the five GT-derived keypoints)"
    result = {"checkpoint": str(checkpoint), "epoch": state["epoch"], "set": where}
    for k, pts in enumerate(stage_points(model, task, crops)):
        if inverses is not None:
            pts = np.stack([transform_points(p, inv) for p, inv in zip(pts, inverses)])
        result[f"S{k}"] = summarise(nme_per_face(pts, gts))
    return result


def non_face_crops(count: int = 200, size: int = 224, seed: int = 0) -> np.ndarray:
    """Random square crops (side 15-60% of the frame height, resized to ``size``) of the
    street clip's frames: mostly background, people's clothes and cars (BGR uint8)."""
    path = data_root() / "videos" / "street_multiface.mp4"
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < 10:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
        for _ in range(15):  # every 16th frame
            capture.grab()
    capture.release()
    if not frames:
        raise OSError(f"cannot read frames of {path}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        frame = frames[i % len(frames)]
        h, w = frame.shape[:2]
        side = int(rng.uniform(0.15, 0.6) * h)
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        out.append(cv2.resize(frame[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def confidence_report(checkpoint: str, folder: str = "300w/helen_test") -> dict:
    """Mean per-face confidence on aligned faces of ``folder``, on the same faces with the crop
    displaced by half its side (a lost track), and on non-face crops of the street clip; with
    the share of each under the tracker's 0.25 threshold."""
    state = load_checkpoint(checkpoint)
    task = FFLDTask.from_config(state["config"]["task"])
    model = task.blank_model()
    model.load_state_dict(inference_weights(state))
    size = task.input_size
    faces, displaced = [], []
    for item in list_annotated(resolve_dataset(folder)):
        image = cv2.imread(str(item.image_path))
        crop = align_from_landmarks(image, item.load_points(), size)
        faces.append(crop.image)
        shift = crop.matrix.copy()
        shift[0, 2] -= size / 2
        displaced.append(cv2.warpAffine(image, shift, (size, size), flags=cv2.INTER_LINEAR, borderValue=0))
    sets = {"faces": np.stack(faces), "faces displaced by half a crop": np.stack(displaced),
            "street-clip non-faces": non_face_crops(size=size)}
    result = {"checkpoint": str(checkpoint), "epoch": state["epoch"]}
    for name, crops in sets.items():
        model.eval()
        with torch.no_grad():
            conf = np.concatenate([model(task.to_input(crops[i : i + 64]))[..., 2].mean(-1).numpy()
                                   for i in range(0, len(crops), 64)])
        result[name] = {"count": len(conf), "mean": float(conf.mean()), "p05": float(np.percentile(conf, 5)),
                        "p95": float(np.percentile(conf, 95)), "below_0.25": float((conf < 0.25).mean())}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="NME_io of every r18_ffld stage (S0 ... S3) of a checkpoint, "
                                     "or (--confidence) how its confidence separates faces from non-faces.")
    parser.add_argument("checkpoint")
    parser.add_argument("--set", default=None, help="annotated folder (default: the run's validation hold-out)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--confidence", action="store_true",
                        help="instead: mean confidence on faces, displaced faces and non-faces")
    cli = parser.parse_args(argv)
    torch.set_num_threads(cli.threads)
    if cli.confidence:
        print(json.dumps(confidence_report(cli.checkpoint, cli.set or "300w/helen_test"), indent=1))
    else:
        print(json.dumps(evaluate_stages(cli.checkpoint, cli.set), indent=1))


if __name__ == "__main__":
    main()

"""DRR's two research measurements, on a trained checkpoint (torch; not the run time):

* ``steps``: NME after each recurrent step S0..SK on an annotated folder, through the
  run-time alignment (crops aligned on the ground truth's five points, as ``evaluate --mode gt5``).
* ``start``: on 300-VW style clips, the previous frame's points as the start of the steps
  against the network's own S0. Each variant tracks on its own: frame 0 is aligned on the
  ground truth, every later frame on that variant's previous prediction (what the tracker
  does); the ``previous`` variant also gives the steps that prediction, mapped into the new
  crop, in place of S0.

    python -m models.training.drr_steps steps CHECKPOINT --dataset 300w/helen_test
    python -m models.training.drr_steps start CHECKPOINT --clips out/synth/moving --count 20
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from models.align import align_from_landmarks, transform_points
from models.metrics import nme_per_face, summarise


def load(checkpoint: Path):
    from models.training.checkpoint import inference_weights, load_checkpoint
    from models.training.tasks import task_from_config

    state = load_checkpoint(checkpoint)
    task = task_from_config(state["config"]["task"])
    model = task.blank_model()
    model.load_state_dict(inference_weights(state))
    return task, model.eval()


@torch.no_grad()
def _shapes(model, task, crops: np.ndarray, starts_crop: np.ndarray | None = None) -> np.ndarray:
    """(K + 1, N, 68, 2) crop points of every step; ``starts_crop`` (N, 68, 2) replaces S0."""
    x = task.to_input(crops)
    start = None
    if starts_crop is not None:
        start = torch.from_numpy(((starts_crop + 0.5) / task.stride - 0.5).astype(np.float32))
    shapes = model.forward_all(x, start=start)["shapes"].float().numpy()
    return task.shape_to_crop(shapes)


def step_nme(checkpoint: Path, dataset: str, batch: int = 32) -> list[dict]:
    from models.datasets import list_annotated, resolve_dataset

    task, model = load(checkpoint)
    per_step: list[list[np.ndarray]] = []
    gts = []
    items = list_annotated(resolve_dataset(dataset))
    for start in range(0, len(items), batch):
        crops, inverses = [], []
        for item in items[start : start + batch]:
            image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
            gt = item.load_points()
            crop = align_from_landmarks(image, gt, task.input_size)
            crops.append(crop.image)
            inverses.append(crop.inverse)
            gts.append(gt)
        shapes = _shapes(model, task, np.stack(crops))
        if not per_step:
            per_step = [[] for _ in range(len(shapes))]
        for k, shape in enumerate(shapes):
            per_step[k] += [transform_points(p, inv) for p, inv in zip(shape, inverses)]
    gt = np.stack(gts)
    return [{"step": k, **summarise(nme_per_face(np.stack(pred), gt))} for k, pred in enumerate(per_step)]


def _clip_frames(folder: Path):
    """(image, ground truth or None) of each frame of a 300-VW style clip in the video layout
    (``vid.avi`` + ``annot/NNNNNN.pts``, 1-based), as ``app synth-clips`` writes them. Read here
    directly: the training side does not import the app."""
    from models.pts import read_pts

    capture = cv2.VideoCapture(str(folder / "vid.avi"))
    try:
        number = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            number += 1
            pts = folder / "annot" / f"{number:06d}.pts"
            yield image, (read_pts(pts) if pts.is_file() else None)
    finally:
        capture.release()


def start_comparison(checkpoint: Path, clips: Path, count: int) -> dict:
    task, model = load(checkpoint)
    errors: dict[str, list[float]] = {"s0": [], "previous": []}
    folders = sorted(p for p in clips.iterdir() if (p / "vid.avi").is_file() and (p / "annot").is_dir())[:count]
    frames = 0
    for folder in folders:
        previous: dict[str, np.ndarray | None] = {"s0": None, "previous": None}
        for image, gt in _clip_frames(folder):
            if gt is None:
                continue
            frames += 1
            for variant in errors:
                anchor = gt if previous[variant] is None else previous[variant]
                crop = align_from_landmarks(image, anchor, task.input_size)
                start = None
                if variant == "previous" and previous[variant] is not None:
                    start = transform_points(previous[variant], crop.matrix)[None]
                final = _shapes(model, task, crop.image[None], start)[-1, 0]
                pred = transform_points(final, crop.inverse)
                previous[variant] = pred
                errors[variant].append(float(nme_per_face(pred[None], gt[None])[0]))
    return {"frames": frames, "clips": len(folders), **{v: summarise(np.asarray(e)) for v, e in errors.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["steps", "start"])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--dataset", default="300w/helen_test")
    p.add_argument("--clips", type=Path, default=Path("out/synth/moving"))
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "steps":
        for row in step_nme(args.checkpoint, args.dataset):
            print(json.dumps(row))
    else:
        print(json.dumps(start_comparison(args.checkpoint, args.clips, args.count)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m models.tools.confidence_stats --model NAME``: how confident a model is on real faces.

Prints percentiles of the mean per-point confidence on ground-truth-aligned crops of an
annotated set (default: HELEN *train*, never the test set), and on crops of random noise.
This is what a manifest's ``min_confidence`` (the tracker's floor for that model) is chosen from.
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.tools.confidence_stats", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="300w/helen_train")
    parser.add_argument("--limit", type=int, default=150, help="first N images by name (default 150)")
    parser.add_argument("--backend", default="ort-cpu")
    args = parser.parse_args(argv)

    import cv2

    from models.align import align_from_landmarks
    from models.datasets import list_annotated, resolve_dataset
    from models.registry import load_landmark_model
    from models.types import AlignedCrop

    items = list_annotated(resolve_dataset(args.dataset))[: args.limit]
    rng = np.random.default_rng(0)
    faces, noise = [], []
    with load_landmark_model(args.model, backend=args.backend) as model:
        for item in items:
            crop = align_from_landmarks(cv2.imread(str(item.image_path)), item.load_points(), model.input_size)
            random = AlignedCrop(rng.integers(0, 256, crop.image.shape, dtype=np.uint8), crop.matrix, crop.inverse)
            on_face, on_noise = model.predict([crop, random])
            faces.append(on_face.mean_confidence)
            noise.append(on_noise.mean_confidence)
    q = (1, 5, 50)
    print(f"model={args.model} dataset={args.dataset} n={len(items)}")
    print("faces: " + ", ".join(f"p{p} {v:.3f}" for p, v in zip(q, np.percentile(faces, q))))
    print("noise: " + ", ".join(f"p{p} {v:.3f}" for p, v in zip((50, 95, 99), np.percentile(noise, (50, 95, 99)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m app.eval.label_offsets``: systematic offsets between predictions and each source's labels.

For every annotated face of each dataset, the face is aligned from its ground truth's five
points (``gt5``, as ``evaluate`` does) and the model predicts the 68 points; the face's offset
is the mean of ``prediction - label`` over the 68 points, per axis. Reported per dataset: the
mean offset over faces with its standard error, in image pixels and in % of the inter-ocular
distance.

Read it with a flip-averaged model (``r18_ffld+flip``): training mirrors every source, so a
source whose x labels sit ``d`` px right of the truth is learned as ``+d`` and, mirrored,
``-d``; the flip-averaged prediction cancels that, and what remains in x against a source's
labels is that source's own horizontal offset (up to the model's residual asymmetry, which is
the same for every source). A vertical offset is not mirrored away: it shows how a source's
y labels differ from the training mix's average.

``--mirror-check`` also predicts on each image mirrored left-right and maps the points back: a
model's own constant bias changes sign under the mirror, so an offset that stays the same
(``mirror_dx`` = ``dx``) is not the network's but lies between the labels and the image content
(or in the path outside the network), and flip averaging cannot remove it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from app.cli.argtypes import positive_int
from app.eval.evaluate import load_model, predict_gt5
from models.landmarks68 import MIRROR, inter_ocular


@dataclass(frozen=True)
class SourceOffset:
    dataset: str
    n: int
    dx_px: float
    dy_px: float
    se_dx_px: float
    se_dy_px: float
    dx_io: float  # fraction of the inter-ocular distance
    dy_io: float
    se_dx_io: float
    se_dy_io: float
    mirror_dx_px: float | None = None  # --mirror-check: the same on the mirrored images, mapped back
    mirror_se_dx_px: float | None = None

    def line(self) -> str:
        text = (f"dataset={self.dataset} n={self.n} dx={self.dx_px:+.3f}±{self.se_dx_px:.3f}px "
                f"dy={self.dy_px:+.3f}±{self.se_dy_px:.3f}px dx={100 * self.dx_io:+.2f}±{100 * self.se_dx_io:.2f}%io "
                f"dy={100 * self.dy_io:+.2f}±{100 * self.se_dy_io:.2f}%io")
        if self.mirror_dx_px is not None:
            text += f" mirror_dx={self.mirror_dx_px:+.3f}±{self.mirror_se_dx_px:.3f}px"
        return text


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """Points of an image of ``width`` pixels on its left-right mirror image, in semantic order (and back)."""
    mirrored = np.asarray(points, dtype=np.float64).copy()
    mirrored[:, 0] = width - 1 - mirrored[:, 0]
    return mirrored[MIRROR]


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def measure(model, dataset: str, limit: int | None = None, mirror_check: bool = False) -> SourceOffset:
    """Offsets of ``model``'s gt5 predictions against ``dataset``'s labels (``limit`` faces spread evenly);
    with ``mirror_check`` also the horizontal offset of the predictions on the mirrored images."""
    import cv2

    from models.datasets import list_annotated, resolve_dataset

    items = list_annotated(resolve_dataset(dataset))
    if limit is not None and limit < len(items):
        items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
    px, io, mirror_dx = [], [], []
    for item in items:
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        gt = item.load_points()
        offset = (predict_gt5(model, image, gt, {}) - gt).mean(axis=0)
        px.append(offset)
        io.append(offset / inter_ocular(gt))
        if mirror_check:
            width = image.shape[1]
            flipped = np.ascontiguousarray(image[:, ::-1])
            back = mirror_points(predict_gt5(model, flipped, mirror_points(gt, width), {}), width)
            mirror_dx.append(float((back - gt)[:, 0].mean()))
    if not px:
        raise ValueError(f"no readable annotated image in {dataset}")
    px_a, io_a = np.array(px), np.array(io)
    (dx, sdx), (dy, sdy) = _mean_se(px_a[:, 0]), _mean_se(px_a[:, 1])
    (dxi, sdxi), (dyi, sdyi) = _mean_se(io_a[:, 0]), _mean_se(io_a[:, 1])
    mirrored = _mean_se(np.array(mirror_dx)) if mirror_dx else (None, None)
    return SourceOffset(dataset, len(px), dx, dy, sdx, sdy, dxi, dyi, sdxi, sdyi, *mirrored)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="r18_ffld+flip@fp32", help="a flip-averaged model (default r18_ffld+flip@fp32)")
    p.add_argument("--dataset", action="append", required=True, help="dataset folder or name; repeat for several")
    p.add_argument("--limit", type=positive_int, default=None, help="at most N faces per dataset, spread evenly")
    p.add_argument("--mirror-check", action="store_true",
                   help="also predict on the mirrored images: an offset that keeps its sign is not the network's")
    args = p.parse_args(argv)
    with load_model(args.model, on_message=lambda text: print(text, file=sys.stderr)) as model:
        print(f"model={args.model}")
        for dataset in args.dataset:
            print(measure(model, dataset, args.limit, args.mirror_check).line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A contact sheet of occluded faces as models see them: ``python -m app.eval.occlusion_sheet``.

Each row is one face of an occluded set (``python -m app synth-occlusions``): the ground truth
(hidden points red, seen points green), then each model's points drawn as the overlay draws them
(``app.overlay.draw_landmarks``: coloured by confidence, hidden points as hollow rings), e.g.
``--models sgfa+norepair,sgfa`` for before and after the exemplar repair. Faces are aligned from
their ground truth's five keypoints, as ``eval-occlusions`` aligns them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from app.cli.argtypes import positive_int
from app.output_paths import OutputCollision, check_outputs
from app.overlay import draw_landmarks

TILE = 256
LABEL_HEIGHT = 22


def _tile(image: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face region (1.4x its landmark box, square) scaled to TILE px, and the matrix frame -> tile."""
    lo, hi = gt.min(0), gt.max(0)
    centre, side = (lo + hi) / 2, 1.4 * float((hi - lo).max())
    scale = TILE / side
    matrix = np.array([[scale, 0, TILE / 2 - scale * centre[0]], [0, scale, TILE / 2 - scale * centre[1]]])
    return cv2.warpAffine(image, matrix, (TILE, TILE), flags=cv2.INTER_AREA, borderValue=(0, 0, 0)), matrix


def _to_tile(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _labelled(tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((LABEL_HEIGHT, TILE, 3), 32, np.uint8)
    cv2.putText(bar, text, (4, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, tile])


def make_sheet(models, folder: str | Path, count: int = 8, start: int = 0) -> np.ndarray:
    from app.synth.occlusions import load_visibility
    from models.align import align_from_landmarks
    from models.datasets import list_annotated, resolve_dataset
    from models.metrics import nme

    folder = resolve_dataset(folder)
    hidden = load_visibility(folder)
    items = [i for i in list_annotated(folder) if i.image_path.name in hidden][start : start + count]
    if not items:
        raise FileNotFoundError(f"no annotated images listed in {folder}/visibility.json")
    rows = []
    for item in items:
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode image {item.image_path}")
        gt = item.load_points()
        mask = hidden[item.image_path.name]
        base, matrix = _tile(image, gt)
        truth = draw_landmarks(base.copy(), _to_tile(gt, matrix), radius=2.0,
                               confidence=np.where(mask, 0.0, 1.0))
        tiles = [_labelled(truth, f"{item.image_path.stem}: {int(mask.sum())} hidden")]
        for model in models:
            crop = align_from_landmarks(image, gt, model.input_size)
            result = model.predict([crop])[0]
            drawn = draw_landmarks(base.copy(), _to_tile(result.points, matrix), radius=2.0,
                                   confidence=result.confidence, visible=result.visible)
            hidden_error = nme(result.points, gt, "io", np.flatnonzero(mask)) if mask.any() else float("nan")
            called = "" if result.visible is None else f", {int((~result.visible).sum())} called hidden"
            tiles.append(_labelled(drawn, f"{model.name}: hidden NME {100 * hidden_error:.1f}%{called}"))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def main(argv=None) -> int:
    from models.registry import load_landmark_model

    p = argparse.ArgumentParser(prog="python -m app.eval.occlusion_sheet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="out/occluded", help="folder made by synth-occlusions")
    p.add_argument("--models", default="sgfa+norepair,sgfa", help="models separated by commas")
    p.add_argument("--count", type=positive_int, default=8, help="faces (rows)")
    p.add_argument("--start", type=int, default=0, help="index of the first face")
    p.add_argument("--out", type=Path, required=True, help="image file to write (.png or .jpg)")
    args = p.parse_args(argv)
    try:
        check_outputs([args.dataset], {"--out": args.out})  # before anything is loaded or written
    except OutputCollision as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    models = [load_landmark_model(n.strip(), backend="ort-cpu") for n in args.models.split(",") if n.strip()]
    try:
        sheet = make_sheet(models, args.dataset, args.count, args.start)
    except (FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for model in models:
            model.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), sheet):
        print(f"error: cannot write {args.out}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

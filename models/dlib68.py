"""dlib's 68-point shape predictor as a ``LandmarkModel`` peer (``dlib68``).

dlib (the ``dlib-bin`` wheel) and its weights ``shape_predictor_68_face_landmarks.dat``
(the ``face_recognition_models`` package) come from PyPI in the ``peers`` extra. The
weights' documentation says the model was trained on the iBUG 300-W release with
mirrored copies; whether the HELEN test images were held out is not stated.

The predictor starts from a face rectangle and was trained with the rectangles of
dlib's own HOG frontal face detector, so it must be fed a box of that size and place.
Here it gets the same aligned crops as every other model and a fixed box in crop
units (``DLIB_BOX``): the mean HOG-detector box relative to the five-point alignment
of the ground truth, measured on the training images (``python -m models.dlib68 --fit``).

dlib returns integer pixel positions, so the crop is large (``INPUT_SIZE``) to keep the
rounding small against the face (a 256 px crop gave the same accuracy within 0.02 NME
points, so the size is not tuned, only kept clear of rounding). dlib gives no per-point confidence: every point has
confidence 1.0.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from engines.base import BackendUnavailable, ModelFileError
from models.align import TEMPLATE, estimate_similarity, transform_points
from models.boxes import match_face
from models.landmark_model import LandmarkModel
from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks
from models.types import AlignedCrop, Landmarks

WEIGHTS_NAME = "shape_predictor_68_face_landmarks.dat"
INPUT_SIZE = 512

# Mean dlib HOG-detector box (centre x, centre y, width, height) in template crop units
# ((0, 0) = top-left corner of the aligned crop, (1, 1) = bottom-right), measured with
# ``python -m models.dlib68 --fit`` (HOG detector, upsample 1) on 300w/afw + 300w/helen_train:
# each image's ground truth gives the five-point alignment, the detector box nearest the
# ground-truth face is mapped through it, and the boxes are averaged. The detector found
# 1060 of the 1107 faces; the standard deviations were 0.027, 0.038, 0.066, 0.066.
# Width and height are the span from dlib's left to right (top to bottom) pixel centres,
# the extent dlib's shape predictor normalises by.
DLIB_BOX = (0.49225, 0.42904, 0.71509, 0.71438)
FIT_SETS = ("300w/afw", "300w/helen_train")


def _dlib():
    try:
        import dlib
    except ImportError as exc:
        raise BackendUnavailable(
            "dlib68 needs dlib: install the 'peers' extra (pip install 'facetrack68[peers]')"
        ) from exc
    return dlib


def default_weights() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` inside the installed ``face_recognition_models``.

    Located without importing the package (its ``__init__`` needs ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "dlib68 weights not found: install the 'peers' extra (face-recognition-models) "
            "or pass the path of shape_predictor_68_face_landmarks.dat"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models" / WEIGHTS_NAME


def rectangle_in_crop(box: Sequence[float], size: int) -> tuple[int, int, int, int]:
    """dlib's (left, top, right, bottom) pixel rectangle for a crop-unit box in a ``size`` crop."""
    cx, cy, w, h = box
    x, y = cx * size - 0.5, cy * size - 0.5  # crop units -> pixel centres
    return (round(x - w * size / 2), round(y - h * size / 2), round(x + w * size / 2), round(y + h * size / 2))


class Dlib68Model(LandmarkModel):
    """dlib's shape predictor on aligned crops, started from the fitted HOG-detector box."""

    name = "dlib68"
    backend = "dlib"

    def __init__(
        self,
        weights: str | Path | None = None,
        input_size: int = INPUT_SIZE,
        box: Sequence[float] = DLIB_BOX,
    ) -> None:
        dlib = _dlib()
        path = Path(weights) if weights is not None else default_weights()
        if not path.is_file():
            raise ModelFileError(f"dlib68 weights not found: {path}")
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise ModelFileError(f"dlib68 weights could not be loaded from {path}: {exc}") from exc
        self.weights = path
        self.input_size = int(input_size)
        self._rect = dlib.rectangle(*rectangle_in_crop(box, self.input_size))
        self._hog = None

    def _shape(self, rgb: np.ndarray, rect) -> np.ndarray:
        shape = self._predictor(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def infer(self, crops: Sequence[AlignedCrop]) -> list[np.ndarray]:
        """(68, 2) integer positions in crop pixels, one array per crop."""
        if self._predictor is None:
            raise RuntimeError("dlib68 model is closed")
        out = []
        for crop in crops:
            if crop.size != self.input_size:
                raise ValueError(f"dlib68 expects {self.input_size}px crops, got {crop.size}px")
            out.append(self._shape(cv2.cvtColor(crop.image, cv2.COLOR_BGR2RGB), self._rect))
        return out

    def decode(self, raw: list[np.ndarray], crops: Sequence[AlignedCrop]) -> list[Landmarks]:
        return [Landmarks(points=transform_points(p, c.inverse), confidence=np.ones(len(p))) for p, c in zip(raw, crops)]

    def detect_and_predict(self, image_bgr: np.ndarray, upsample: int = 1) -> list[tuple[np.ndarray, Landmarks]]:
        """The classic dlib path on a full image: HOG detector, then the predictor on each box.

        Returns (box x1, y1, x2, y2, landmarks) per face found, in detector order.
        """
        if self._hog is None:
            self._hog = _dlib().get_frontal_face_detector()
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        faces = []
        for rect in self._hog(rgb, upsample):
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)
            faces.append((box, Landmarks(points=self._shape(rgb, rect), confidence=np.ones(68))))
        return faces

    def close(self) -> None:
        self._predictor = None
        self._hog = None


@dataclass(frozen=True)
class FittedBox:
    box: tuple[float, float, float, float]  # centre x, centre y, width, height in crop units
    spread: tuple[float, float, float, float]  # standard deviation of each
    used: int  # images whose face the detector found
    images: int


def fit_box(
    folders: Sequence[str | Path], upsample: int = 1, limit: int | None = None, progress: bool = True
) -> FittedBox:
    """Mean HOG-detector box in template crop units over the annotated images in ``folders``
    (the first ``limit`` of each folder when given)."""
    from tqdm import tqdm

    from models.datasets import list_annotated, resolve_dataset
    from models.pts import PtsFormatError

    hog = _dlib().get_frontal_face_detector()
    items = [it for f in folders for it in list_annotated(resolve_dataset(f))[:limit]]
    rows = []
    for item in tqdm(items, desc="fit dlib box", disable=not progress, file=sys.stderr):
        try:
            gt = item.load_points()
        except PtsFormatError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"skipped: unreadable image {item.image_path}", file=sys.stderr)
            continue
        rects = hog(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), upsample)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64)
        k = match_face(boxes, gt) if len(boxes) else None
        if k is None:
            continue
        # Image pixel centres -> crop units (template corner (0, 0) .. (1, 1)).
        to_units = estimate_similarity(keypoints_from_landmarks(gt)[FIVE_POINT_MASK], TEMPLATE[FIVE_POINT_MASK])
        scale = float(np.hypot(*to_units[:, 0]))
        x1, y1, x2, y2 = boxes[k]
        cx, cy = transform_points(np.array([[(x1 + x2) / 2, (y1 + y2) / 2]]), to_units)[0]
        rows.append((cx, cy, (x2 - x1) * scale, (y2 - y1) * scale))
    if not rows:
        raise RuntimeError("the HOG detector found none of the annotated faces")
    arr = np.asarray(rows)
    return FittedBox(
        box=tuple(float(v) for v in arr.mean(axis=0)),
        spread=tuple(float(v) for v in arr.std(axis=0)),
        used=len(rows),
        images=len(items),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.dlib68", description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="measure DLIB_BOX on the training images and print it")
    parser.add_argument("--upsample", type=int, default=1, help="HOG detector upsampling (default 1)")
    args = parser.parse_args(argv)
    if not args.fit:
        parser.print_help()
        return 0
    fitted = fit_box(FIT_SETS, upsample=args.upsample)
    print(f"faces found by the HOG detector (upsample {args.upsample}): {fitted.used} of {fitted.images}")
    print("spread (std): " + ", ".join(f"{v:.5f}" for v in fitted.spread))
    print("DLIB_BOX = (" + ", ".join(f"{v:.5f}" for v in fitted.box) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())

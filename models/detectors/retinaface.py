"""RetinaFace (MobileNet-0.25) from a user-given ONNX file, run through the engines layer.

The network outputs, per prior box, a box offset (4), background/face scores (2) and
five landmark offsets (10): eyes, nose, mouth corners, image-left first, which are
exactly slots 0-4 of ``KEYPOINT_NAMES``. Priors, decoding and NMS follow the
reference implementation (biubug6/Pytorch_Retinaface, ``cfg_mnet``).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from pathlib import Path

import cv2
import numpy as np

from engines.base import ModelFileError
from models.detectors.base import FaceDetector, Letterbox, by_score, check_image, check_model_file, make_detection
from models.types import Detection

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
MEAN_BGR = (104, 117, 123)


def prior_boxes(width: int, height: int) -> np.ndarray:
    """Anchor boxes (N, 4) as cx, cy, w, h in input pixels, in the network's output order.

    For each level (stride 8, 16, 32), for each feature-map cell row-major, one prior
    per min size; the feature map is ``ceil(side / step)`` cells.
    """
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = ceil(height / step), ceil(width / step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing="ij")
        centres = np.stack([cx.ravel(), cy.ravel()], axis=1)  # (cells, 2)
        per_size = [np.hstack([centres, np.full((len(centres), 2), float(s))]) for s in sizes]
        levels.append(np.stack(per_size, axis=1).reshape(-1, 4))  # cell-major, sizes inner
    return np.concatenate(levels)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Box offsets (N, 4) -> x1, y1, x2, y2 in input pixels."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.hstack([centre - size / 2, centre + size / 2])


def decode_landmarks(pre: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Landmark offsets (N, 10) -> (N, 5, 2) points in input pixels."""
    offsets = pre.reshape(-1, 5, 2)
    return priors[:, None, :2] + offsets * VARIANCES[0] * priors[:, None, 2:]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(float).tolist(), 0.0, iou_threshold)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


@dataclass(frozen=True)
class _Outputs:
    loc: str
    conf: str
    landmarks: str


class RetinaFaceDetector(FaceDetector):
    """RetinaFace MobileNet-0.25.

    ``max_side``: frames whose long side exceeds it are shrunk to it before the network
    (speed; the canvas is padded to a multiple of 32); outputs are mapped back to the
    frame. A file with a fixed input size gets every frame letterboxed onto that size
    instead. ``backend`` and ``threads`` go to ``engines.select.open_runner``.
    """

    name = "retinaface"

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_side: int = 640,
        top_k: int = 750,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.model_path = check_model_file(model_path, self.name, "retinaface_mbnet0.25.onnx")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = int(max_side)
        self.top_k = int(top_k)
        from engines.select import open_runner

        self._runner = open_runner(self.model_path, backend=backend, threads=threads)
        self._priors: dict[tuple[int, int], np.ndarray] = {}
        try:
            self._input, self.fixed_size = self._check_input()
            self._outputs = self._identify_outputs()
        except Exception:
            self.close()
            raise

    def _check_input(self) -> tuple[str, tuple[int, int] | None]:
        """The image input's name, and its (width, height) if the file fixes it."""
        specs = self._runner.inputs
        shape = specs[0].shape if len(specs) == 1 else ()
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelFileError(
                f"not a RetinaFace model: {self.model_path} "
                f"(inputs {[(s.name, s.shape) for s in specs]}, expected one N x 3 x H x W image)"
            )
        height, width = shape[2:]
        fixed = isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
        return specs[0].name, (width, height) if fixed else None

    def _identify_outputs(self) -> _Outputs:
        """Name the three outputs by their last dimension (4 box, 2 score, 10 landmark values)."""
        width, height = self.fixed_size or (64, 64)
        raw = self._runner.infer({self._input: np.zeros((1, 3, height, width), np.float32)})
        by_width = {int(np.shape(v)[-1]): k for k, v in raw.items() if np.ndim(v) == 3}
        if not {4, 2, 10} <= by_width.keys():
            shapes = {k: np.shape(v) for k, v in raw.items()}
            raise ModelFileError(
                f"not a RetinaFace model: {self.model_path} (outputs {shapes}, "
                "expected box (1, N, 4), score (1, N, 2) and landmark (1, N, 10) tensors)"
            )
        priors = len(prior_boxes(width, height))
        if any(np.shape(raw[by_width[k]])[1] != priors for k in (4, 2, 10)):
            raise ModelFileError(
                f"{self.model_path} gives {np.shape(raw[by_width[2]])[1]} boxes for a {width}x{height} input, "
                f"not the {priors} priors of RetinaFace MobileNet-0.25 (min sizes {MIN_SIZES}, steps {STEPS})"
            )
        return _Outputs(loc=by_width[4], conf=by_width[2], landmarks=by_width[10])

    def priors(self, width: int, height: int) -> np.ndarray:
        key = (width, height)
        if key not in self._priors:
            self._priors[key] = prior_boxes(width, height)
        return self._priors[key]

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if self._runner is None:
            raise RuntimeError("the RetinaFace detector is closed")
        image = check_image(image_bgr)
        frame_size = (image.shape[1], image.shape[0])
        if self.fixed_size:
            box = Letterbox.fit(frame_size, self.fixed_size, upscale=False)
        else:
            box = Letterbox.within(frame_size, self.max_side, multiple=32)
        canvas = box.apply(image, fill=MEAN_BGR)
        blob = (canvas.astype(np.float32) - np.array(MEAN_BGR, np.float32)).transpose(2, 0, 1)[None]
        raw = self._runner.infer({self._input: np.ascontiguousarray(blob)})
        scores = raw[self._outputs.conf][0, :, 1]
        candidates = np.flatnonzero(scores > self.score_threshold)
        if len(candidates) == 0:
            return []
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")][: self.top_k]
        priors = self.priors(*box.size)[candidates]
        boxes = decode_boxes(raw[self._outputs.loc][0, candidates], priors)
        keep = nms(boxes, scores[candidates], self.nms_threshold)
        points = decode_landmarks(raw[self._outputs.landmarks][0, candidates[keep]], priors[keep])
        boxes = box.to_frame(boxes[keep].reshape(-1, 2, 2)).reshape(-1, 4)
        points = box.to_frame(points)
        return by_score(
            [
                make_detection(b, s, {slot: points[i, slot] for slot in range(5)})
                for i, (b, s) in enumerate(zip(boxes, scores[candidates[keep]]))
            ]
        )

    def close(self) -> None:
        if getattr(self, "_runner", None) is not None:
            self._runner.close()
            self._runner = None

"""BlazeFace (MediaPipe's short-range face detector) from ``assets/blazeface``, run through the engines layer.

The ONNX file is MediaPipe's TFLite network converted by ``models.training.blazeface_onnx``;
everything around it follows MediaPipe's face detection graph (mediapipe 0.10.21), so that it
finds the faces mediapipe's solution finds (``blazeface-mediapipe``, the reference; agreement
in docs/RESULTS.md): the frame is letterboxed into a centred square and sampled to 128 x 128
as ImageToTensorCalculator does (``cv2.warpAffine``, bilinear, black borders), the 896 SSD
anchors and the box / keypoint decoding are SsdAnchorsCalculator's and
TensorsToDetectionsCalculator's, and overlapping boxes are merged by weighted non-maximum
suppression (IoU > 0.3, score-weighted mean of boxes and keypoints, the top score kept).

BlazeFace gives six points: image-left eye (MediaPipe's RIGHT_EYE, the subject's),
image-right eye, nose tip, mouth centre and the two ear tragions. The eyes and nose
fill slots 0-2, the mouth centre slot 5; it has no mouth corners (slots 3-4 stay
absent) and the tragions are not used.

Short range (faces within about 2 m) is the one shipped, by measurement: it finds 330/330
HELEN-test faces and a face in every sampled frame of the talking clips, the full-range model
315/330 with worse nose and mouth points; for small faces use MTCNN (``auto`` does), RetinaFace
or YuNet. The full-range model is still offered by ``blazeface-mediapipe`` where mediapipe is
installed.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.base import ModelFileError
from models.datasets import PROJECT_ROOT
from models.detectors.base import FaceDetector, by_score, check_image, make_detection
from models.landmarks68 import KEYPOINT_NAMES
from models.types import Detection

MODEL_PATH = PROJECT_ROOT / "assets" / "blazeface" / "face_detection_short_range.onnx"
INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)  # SsdAnchorsCalculator: num_layers 4, fixed_anchor_size, anchor offset 0.5
SCORE_CLIP = 100.0
NMS_IOU = 0.3
# BlazeFace keypoint index -> our slot (4 and 5, the ear tragions, are not used).
_SLOTS = {
    0: KEYPOINT_NAMES.index("left_eye"),
    1: KEYPOINT_NAMES.index("right_eye"),
    2: KEYPOINT_NAMES.index("nose"),
    3: KEYPOINT_NAMES.index("mouth_centre"),
}


def anchor_centres(size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """(896, 2) anchor centres in [0, 1], in the network's output order (row, column, anchor).

    Layers of equal stride share a feature map with two anchors each (its scale and the
    interpolated one); with fixed anchor sizes only the centres matter.
    """
    centres, layer = [], 0
    while layer < len(strides):
        same = 1
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        cells = -(-size // strides[layer])
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = (np.stack([xs, ys], axis=-1).reshape(-1, 1, 2) + 0.5) / cells
        centres.append(np.repeat(grid, 2 * same, axis=1).reshape(-1, 2))
        layer += same
    return np.concatenate(centres).astype(np.float64)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, threshold: float):
    """Boxes (K, 4: x1, y1, x2, y2), keypoints (K, 6, 2) in [0, 1] canvas units and scores (K,)
    of the anchors whose sigmoid score reaches ``threshold``."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = np.nonzero(scores >= threshold)[0]
    raw, centre = raw_boxes[keep].astype(np.float64) / INPUT_SIZE, anchors[keep]
    xy = raw[:, :2] + centre
    half = raw[:, 2:4] / 2
    boxes = np.hstack([xy - half, xy + half])
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]
    return boxes, keypoints, scores[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU):
    """MediaPipe's weighted NMS: the best remaining box takes every box overlapping it by IoU > ``iou``
    (itself included); their score-weighted mean box and keypoints are kept with the best score."""
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_points, out_scores = [], [], []
    while len(order):
        best = order[0]
        group = _iou(boxes[best], boxes[order]) > iou
        group[0] = True
        members, order = order[group], order[~group]
        weights = scores[members][:, None]
        out_boxes.append((boxes[members] * weights).sum(0) / weights.sum())
        out_points.append((keypoints[members] * weights[:, :, None]).sum(0) / weights.sum())
        out_scores.append(scores[best])
    return np.array(out_boxes).reshape(-1, 4), np.array(out_points).reshape(-1, 6, 2), np.array(out_scores)


class BlazeFaceDetector(FaceDetector):
    """BlazeFace short range on ONNX Runtime (``assets/blazeface``); no mediapipe needed.

    ``score_threshold``: the minimum face score (MediaPipe's ``min_detection_confidence``).
    ``model_range``: only 'short' is shipped ('full' is offered by ``blazeface-mediapipe``).
    ``model_path`` replaces the shipped file; ``backend`` and ``threads`` go to
    ``engines.select.open_runner`` (a small network: ONNX Runtime CPU by default).
    """

    name = "blazeface"
    model_range = "short"

    def __init__(
        self,
        score_threshold: float = 0.5,
        model_range: str = "short",
        model_path: str | Path | None = None,
        backend: str = "ort-cpu",
        threads: int | None = None,
    ) -> None:
        if model_range != "short":
            raise ValueError(
                f"unknown BlazeFace model_range {model_range!r}: the shipped BlazeFace is 'short' "
                "(the full-range model: detector blazeface-mediapipe with the peers extra)"
            )
        self.score_threshold = float(score_threshold)
        path = Path(model_path) if model_path is not None else MODEL_PATH
        if not path.is_file():
            raise ModelFileError(
                f"BlazeFace network file not found: {path} (make it with python -m models.training.blazeface_onnx)"
            )
        from engines.select import open_runner

        self._runner = open_runner(path, backend=backend, threads=threads)
        self._input = self._runner.inputs[0].name
        self._anchors = anchor_centres()

    def _canvas(self, image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """The 128 x 128 letterboxed input, the side of the square it samples and that square's corner."""
        h, w = image.shape[:2]
        side = float(max(w, h))
        corner = np.array([w / 2 - side / 2, h / 2 - side / 2])
        k = INPUT_SIZE / side
        matrix = np.array([[k, 0.0, -corner[0] * k], [0.0, k, -corner[1] * k]])
        canvas = cv2.warpAffine(image, matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return canvas, side, corner

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if self._runner is None:
            raise RuntimeError("the BlazeFace detector is closed")
        image = check_image(image_bgr)
        canvas, side, corner = self._canvas(image)
        out = self._runner.infer({self._input: canvas[None].astype(np.float32)})
        boxes, points, scores = decode(out["regressors"][0], out["classificators"][0, :, 0], self._anchors,
                                       self.score_threshold)
        boxes, points, scores = weighted_nms(boxes, points, scores)
        # canvas [0, 1] -> frame pixels (continuous), then pixel centres as the other detectors give them
        boxes = (boxes * side + np.tile(corner, 2)) - 0.5
        points = points * side + corner - 0.5
        return by_score([
            make_detection(box, score, {slot: kp[i] for i, slot in _SLOTS.items()})
            for box, kp, score in zip(boxes, points, scores)
        ])

    def close(self) -> None:
        if getattr(self, "_runner", None) is not None:
            self._runner.close()
            self._runner = None

"""MTCNN (Zhang et al. 2016) from the ONNX files in ``assets/mtcnn`` (converted by
``models.tools.make_mtcnn`` from facenet-pytorch's weights, MIT), run through the engines layer.

Three cascaded networks: PNet slides over an image pyramid (every face from ``min_face_size``
pixels up), RNet and ONet re-score and refine the surviving boxes on 24 and 48 px crops,
ONet also gives the five points. The steps and thresholds follow facenet-pytorch's
``detect_face``; boxes are kept in continuous coordinates (pixel ``i`` spans [i, i + 1]),
crops outside the frame are zero-padded as in the original MTCNN, and everything is
returned in 0-based pixel-centre coordinates. ONet's points (eyes, nose, mouth corners,
image-left first) are slots 0-4 of ``KEYPOINT_NAMES``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.base import ModelFileError
from models.datasets import PROJECT_ROOT
from models.detectors.base import FaceDetector, by_score, check_image, make_detection
from models.detectors.retinaface import nms as retinaface_nms
from models.types import Detection

MODEL_DIR = PROJECT_ROOT / "assets" / "mtcnn"
NETWORKS = ("pnet", "rnet", "onet")
CELL, STRIDE = 12, 2  # PNet's window and stride in pyramid pixels


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression, highest score first; overlap = intersection over union
    (OpenCV's), or over the smaller box ("min", for the few final boxes)."""
    if method == "union":
        return retinaface_nms(boxes, scores, threshold)
    order = np.argsort(-scores, kind="stable")
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        order = rest[inter <= threshold * np.maximum(np.minimum(area[i], area[rest]), 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply MTCNN's box offsets (fractions of the box width / height) to (N, 4) boxes."""
    size = boxes[:, 2:] - boxes[:, :2]
    return boxes + offsets * np.hstack([size, size])


def square(boxes: np.ndarray) -> np.ndarray:
    """Each box widened to a square of its longer side around the same centre."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(axis=1, keepdims=True)
    return np.hstack([centre - side / 2, centre + side / 2])


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` x ``size`` crops of integer-rounded boxes (zero outside the frame) as an N x 3 x S x S
    float32 blob, and the rounded boxes."""
    h, w = image.shape[:2]
    rounded = np.round(boxes).astype(np.int64)
    rounded[:, 2:] = np.maximum(rounded[:, 2:], rounded[:, :2] + 1)
    blob = np.empty((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(rounded):
        patch = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
        blob[k] = cv2.resize(patch, (size, size), interpolation=interp)
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2)), rounded.astype(np.float64)


class MtcnnDetector(FaceDetector):
    """MTCNN with the shipped networks; no user file needed.

    ``min_face_size``: the smallest face searched for, in frame pixels (the pyramid's first
    scale is 12 / min_face_size; smaller is slower); ``min_face_fraction`` raises it to that
    fraction of the frame's shorter side (1/40: 27 px at 1080p, so large frames cost less).
    ``thresholds``: PNet and RNet score thresholds; ``score_threshold`` is ONet's (the final
    score; facenet-pytorch uses 0.7, 0.8 here drops most false detections counted on the street
    clip, docs/RESULTS.md). ``factor``: pyramid step.
    ``model_dir`` replaces ``assets/mtcnn``. ``backend`` and ``threads`` go to
    ``engines.select.open_runner`` (the networks are small: ONNX Runtime CPU by default).
    """

    name = "mtcnn"

    def __init__(
        self,
        score_threshold: float = 0.8,
        min_face_size: float = 20.0,
        min_face_fraction: float = 1 / 40,
        thresholds: tuple[float, float] = (0.6, 0.7),
        factor: float = 0.709,
        model_dir: str | Path | None = None,
        backend: str = "ort-cpu",
        threads: int | None = None,
    ) -> None:
        if min_face_size < CELL:
            raise ValueError(f"min_face_size must be at least {CELL} px (PNet's window), got {min_face_size}")
        if not 0.1 <= factor < 1.0:
            raise ValueError(f"factor must be in [0.1, 1), got {factor}")
        self.score_threshold = float(score_threshold)
        if not 0.0 <= min_face_fraction < 1.0:
            raise ValueError(f"min_face_fraction must be in [0, 1), got {min_face_fraction}")
        self.min_face_size = float(min_face_size)
        self.min_face_fraction = float(min_face_fraction)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.model_dir = Path(model_dir) if model_dir is not None else MODEL_DIR
        from engines.select import open_runner

        self._runners = {}
        try:
            for net in NETWORKS:
                path = self.model_dir / f"{net}.onnx"
                if not path.is_file():
                    raise ModelFileError(
                        f"MTCNN network file not found: {path} (make it with python -m models.tools.make_mtcnn)"
                    )
                self._runners[net] = open_runner(path, backend=backend, threads=threads)
        except Exception:
            self.close()
            raise

    def scales(self, width: int, height: int) -> list[float]:
        """The pyramid: each scale maps ``min_face_size`` (then larger faces) onto PNet's 12 px window."""
        shortest, out = min(width, height), []
        scale = CELL / max(self.min_face_size, self.min_face_fraction * shortest)
        while shortest * scale >= CELL:
            out.append(scale)
            scale *= self.factor
        return out

    def _run(self, net: str, blob: np.ndarray) -> list[np.ndarray]:
        runner = self._runners[net]
        return list(runner.infer({runner.inputs[0].name: blob}).values())

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """PNet over the pyramid -> (N, 5) boxes (x1, y1, x2, y2, score), regressed and squared."""
        h, w = image.shape[:2]
        found, level = [], image
        for scale in self.scales(w, h):
            sw, sh = int(w * scale + 1), int(h * scale + 1)
            # Each level from the one before: resizing the full frame every time costs more than PNet's small levels.
            level = cv2.resize(level, (sw, sh), interpolation=cv2.INTER_AREA)
            reg, prob = self._run("pnet", np.ascontiguousarray(level.transpose(2, 0, 1)[None], dtype=np.float32))
            ys, xs = np.nonzero(prob[0, 1] >= self.thresholds[0])
            if len(ys) == 0:
                continue
            cells = np.stack([xs, ys], axis=1).astype(np.float64) * STRIDE
            to_frame = np.array([w / sw, h / sh])
            boxes = np.hstack([cells * to_frame, (cells + CELL) * to_frame])
            scores = prob[0, 1, ys, xs].astype(np.float64)
            offsets = reg[0, :, ys, xs].astype(np.float64)
            keep = nms(boxes, scores, 0.5)
            found.append(np.hstack([regress(boxes[keep], offsets[keep]), scores[keep, None]]))
        if not found:
            return np.zeros((0, 5))
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return np.hstack([square(boxes[:, :4]), boxes[:, 4:]])

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """RNet on 24 px crops -> surviving boxes, regressed and squared."""
        blob, rounded = crops(image, boxes[:, :4], 24)
        reg, prob = self._run("rnet", blob)
        passed = prob[:, 1] > self.thresholds[1]
        boxes, reg, scores = rounded[passed], reg[passed], prob[passed, 1].astype(np.float64)
        keep = nms(boxes, scores, 0.7)
        return np.hstack([square(regress(boxes[keep], reg[keep])), scores[keep, None]])

    def _output(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ONet on 48 px crops -> final boxes (N, 4), scores (N,) and points (N, 5, 2), continuous coordinates."""
        blob, rounded = crops(image, boxes[:, :4], 48)
        reg, points, prob = self._run("onet", blob)
        passed = prob[:, 1] > self.score_threshold
        rounded, reg, points, scores = rounded[passed], reg[passed], points[passed], prob[passed, 1]
        size = rounded[:, 2:] - rounded[:, :2]
        xy = np.stack([points[:, :5], points[:, 5:]], axis=2) * size[:, None, :] + rounded[:, None, :2]
        final = regress(rounded, reg)
        keep = nms(final, scores, 0.7, method="min")
        return final[keep], scores[keep].astype(np.float64), xy[keep]

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if not self._runners:
            raise RuntimeError("the MTCNN detector is closed")
        image = check_image(image_bgr)
        boxes = self._proposals(image)
        if len(boxes):
            boxes = self._refine(image, boxes)
        if len(boxes) == 0:
            return []
        final, scores, points = self._output(image, boxes)
        return by_score(
            [
                make_detection(b - 0.5, s, {slot: p[slot] - 0.5 for slot in range(5)})
                for b, s, p in zip(final, scores, points)
            ]
        )

    def close(self) -> None:
        for runner in getattr(self, "_runners", {}).values():
            runner.close()
        self._runners = {}

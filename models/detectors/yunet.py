"""YuNet through ``cv2.FaceDetectorYN`` from a user-given fixed-input ONNX file.

OpenCV 4.11 only loads YuNet files with a fixed input size (e.g. ``yunet_n_640_640.onnx``),
so each frame is letterboxed onto a canvas of that size and the results mapped back.
YuNet's five points come image-left eye, image-right eye, nose, image-left mouth
corner, image-right mouth corner: slots 0-4 of ``KEYPOINT_NAMES`` as they are.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.base import ModelFileError
from models.detectors.base import FaceDetector, Letterbox, by_score, check_image, check_model_file, make_detection
from models.types import Detection


def onnx_input_size(model_path: Path) -> tuple[int, int]:
    """The fixed (width, height) of a YuNet ONNX file's image input."""
    import onnx

    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as exc:
        raise ModelFileError(f"not a readable ONNX file: {model_path} ({exc})") from exc
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(dims) != 4 or min(dims[2:]) <= 0:
        shapes = [(i.name, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]) for i in inputs]
        raise ModelFileError(
            f"YuNet needs a fixed input size that OpenCV can load (e.g. yunet_n_640_640.onnx); {model_path} "
            f"has input {shapes}"
        )
    return dims[3], dims[2]


class YuNetDetector(FaceDetector):
    """YuNet (``cv2.FaceDetectorYN``).

    ``upscale``: whether frames smaller than the model's canvas are enlarged to fill it.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        upscale: bool = True,
    ) -> None:
        self.model_path = check_model_file(model_path, self.name, "yunet_n_640_640.onnx")
        self.score_threshold = float(score_threshold)
        self.upscale = upscale
        self.input_size = onnx_input_size(self.model_path)
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(self.model_path), "", self.input_size, self.score_threshold, float(nms_threshold), int(top_k)
            )
            self._detector.detect(np.zeros((self.input_size[1], self.input_size[0], 3), np.uint8))
        except cv2.error as exc:
            raise ModelFileError(f"OpenCV cannot run {self.model_path} as a YuNet model: {exc}") from exc

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if self._detector is None:
            raise RuntimeError("the YuNet detector is closed")
        image = check_image(image_bgr)
        box = Letterbox.fit((image.shape[1], image.shape[0]), self.input_size, upscale=self.upscale)
        self._detector.setScoreThreshold(self.score_threshold)
        _, faces = self._detector.detect(box.apply(image))
        if faces is None:
            return []
        detections = []
        for row in faces.astype(np.float64):
            x, y, w, h = row[:4]
            corners = box.to_frame(np.array([[x, y], [x + w, y + h]]))
            points = box.to_frame(row[4:14].reshape(5, 2))
            detections.append(make_detection(corners.ravel(), row[14], {slot: points[slot] for slot in range(5)}))
        return by_score(detections)

    def close(self) -> None:
        self._detector = None

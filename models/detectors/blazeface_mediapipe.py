"""MediaPipe BlazeFace through the legacy solutions API (``blazeface-mediapipe``, the ``peers`` extra).

The reference the shipped ONNX ``blazeface`` (``models.detectors.blazeface``) is checked against;
its models ship inside the mediapipe wheel.

BlazeFace gives six points: image-left eye (MediaPipe's RIGHT_EYE, the subject's),
image-right eye, nose tip, mouth centre and the two ear tragions. The eyes and nose
fill slots 0-2, the mouth centre slot 5; it has no mouth corners (slots 3-4 stay
absent) and the tragions are not used.

Short range is the default by measurement: it finds 330/330 HELEN-test faces and a face
in every sampled frame of the talking clips, the full-range model 315/330 with worse
nose and mouth points; only on small faces (the street clip) is full range better, and
there RetinaFace or YuNet are the detectors to use.
"""
from __future__ import annotations

import cv2
import numpy as np

from engines.base import BackendUnavailable
from models.detectors.base import FaceDetector, by_score, check_image, make_detection
from models.landmarks68 import KEYPOINT_NAMES
from models.native_logs import quiet_native_logs
from models.types import Detection

RANGES = {"short": 0, "full": 1}  # mediapipe model_selection: 0 = faces within ~2 m, 1 = within ~5 m
# mediapipe FaceKeyPoint index -> our slot (4 and 5, the ear tragions, are not used).
_SLOTS = {
    0: KEYPOINT_NAMES.index("left_eye"),
    1: KEYPOINT_NAMES.index("right_eye"),
    2: KEYPOINT_NAMES.index("nose"),
    3: KEYPOINT_NAMES.index("mouth_centre"),
}


class MediaPipeBlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace; ``model_range`` 'short' (default, 128 px network input) or 'full' (192 px).

    MediaPipe fixes its own threshold at construction; ``score_threshold`` can later only be raised.
    """

    name = "blazeface-mediapipe"

    def __init__(self, score_threshold: float = 0.5, model_range: str = "short") -> None:
        if model_range not in RANGES:
            raise ValueError(f"unknown BlazeFace model_range {model_range!r}; use one of {sorted(RANGES)}")
        try:
            from mediapipe.python.solutions import face_detection
        except ImportError as exc:
            raise BackendUnavailable(
                f"the blazeface-mediapipe detector needs mediapipe 0.10.21 (pip install -e '.[peers]'): {exc}"
            ) from exc
        self.model_range = model_range
        self.score_threshold = float(score_threshold)
        with quiet_native_logs():  # the graph starts (and logs) on its first frame: give it one here
            self._solution = face_detection.FaceDetection(
                model_selection=RANGES[model_range], min_detection_confidence=self.score_threshold
            )
            self._solution.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if self._solution is None:
            raise RuntimeError("the BlazeFace detector is closed")
        image = check_image(image_bgr)
        h, w = image.shape[:2]
        result = self._solution.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        size = np.array([w, h], dtype=np.float64)
        detections = []
        for det in result.detections or []:
            if det.score[0] < self.score_threshold:  # the threshold may have been raised after construction
                continue
            rel = det.location_data.relative_bounding_box
            corners = np.array([[rel.xmin, rel.ymin], [rel.xmin + rel.width, rel.ymin + rel.height]]) * size - 0.5
            keypoints = det.location_data.relative_keypoints
            points = {slot: np.array([keypoints[i].x, keypoints[i].y]) * size - 0.5 for i, slot in _SLOTS.items()}
            detections.append(make_detection(corners.ravel(), det.score[0], points))
        return by_score(detections)

    def close(self) -> None:
        if getattr(self, "_solution", None) is not None:
            self._solution.close()
            self._solution = None

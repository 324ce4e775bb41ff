"""Face detectors behind one interface: ``create_detector(name, model_path=None, **options)``.

``auto`` (default: BlazeFace up to 720p, MTCNN on larger frames and as BlazeFace's fallback; ``models.detectors.auto``),
``blazeface`` (MediaPipe's short-range BlazeFace converted to ONNX, shipped in ``assets/blazeface``),
``blazeface-mediapipe`` (the same through mediapipe's solution: the reference, ``peers`` extra), ``mtcnn`` (MTCNN, networks
shipped in ``assets/mtcnn``: small and many faces, five points), ``retinaface``
(RetinaFace MobileNet-0.25 ONNX file) and ``yunet`` (fixed-size YuNet ONNX file for
``cv2.FaceDetectorYN``). The ONNX files are never part of the project: the caller names them.
"""
from __future__ import annotations

from pathlib import Path

from models.detectors.base import FaceDetector, Letterbox

DETECTOR_NAMES = ("auto", "blazeface", "mtcnn", "retinaface", "yunet")
PEER_DETECTORS = ("blazeface-mediapipe",)  # references for tests and measurements, not offered by the app
DEFAULT_DETECTOR = "auto"
SHIPPED_DETECTORS = ("auto", "blazeface", "mtcnn")  # need no file from the user
# The shared test files (in ``models.datasets.detector_model_dir()``) each file-based detector was checked with.
MODEL_FILES = {"retinaface": "retinaface_mbnet0.25.onnx", "yunet": "yunet_n_640_640.onnx"}


def create_detector(name: str = DEFAULT_DETECTOR, model_path: str | Path | None = None, **options) -> FaceDetector:
    """A ready detector. ``options`` go to its constructor (``score_threshold``, ...).

    Raises ``ValueError`` for an unknown name, ``TypeError`` for an unknown option and
    ``engines.base.ModelFileError`` (naming the file) for a missing or unusable model file.
    """
    if name in SHIPPED_DETECTORS and model_path is not None:
        raise ValueError(f"{name} uses the models shipped with the install; it takes no model_path")
    if name == "auto":
        from models.detectors.auto import AutoDetector

        return AutoDetector(**options)
    if name == "blazeface":
        from models.detectors.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(**options)
    if name == "blazeface-mediapipe":
        from models.detectors.blazeface_mediapipe import MediaPipeBlazeFaceDetector

        return MediaPipeBlazeFaceDetector(**options)
    if name == "mtcnn":
        from models.detectors.mtcnn import MtcnnDetector

        return MtcnnDetector(**options)
    if name == "retinaface":
        from models.detectors.retinaface import RetinaFaceDetector

        return RetinaFaceDetector(model_path, **options)
    if name == "yunet":
        from models.detectors.yunet import YuNetDetector

        return YuNetDetector(model_path, **options)
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")


__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTOR_NAMES",
    "MODEL_FILES",
    "SHIPPED_DETECTORS",
    "FaceDetector",
    "Letterbox",
    "create_detector",
]

"""The default detector: BlazeFace for camera-sized frames, MTCNN for large frames.

Both ship with the install (BlazeFace inside mediapipe, MTCNN in ``assets/mtcnn``). BlazeFace
(short range) is the fastest for one face near the camera but finds no face smaller than
about a tenth of the frame; MTCNN finds faces from 20 px (or 1/40 of the shorter side)
and gives the five points, at several times the cost. Frames whose longer side exceeds
``large_side`` (default 1280: anything above 720p, typically recorded footage with people
further away) go to MTCNN, the rest to BlazeFace. The measurements behind the rule are in
docs/RESULTS.md; ``--detector mtcnn`` forces MTCNN at every size (a crowd at the webcam).
"""
from __future__ import annotations

import numpy as np

from models.detectors.base import FaceDetector, check_image
from models.types import Detection


class AutoDetector(FaceDetector):
    """BlazeFace up to ``large_side`` px on the longer side, MTCNN above.

    ``score_threshold`` is BlazeFace's (0.5); MTCNN keeps its own (0.8, ``mtcnn_options``).
    """

    name = "auto"

    def __init__(self, large_side: int = 1280, blazeface_options: dict | None = None,
                 mtcnn_options: dict | None = None) -> None:
        from models.detectors.blazeface import BlazeFaceDetector
        from models.detectors.mtcnn import MtcnnDetector

        if large_side < 2:
            raise ValueError(f"large_side must be at least 2 px, got {large_side}")
        self.large_side = int(large_side)
        self.small = BlazeFaceDetector(**(blazeface_options or {}))
        try:
            self.large = MtcnnDetector(**(mtcnn_options or {}))
        except BaseException:
            self.small.close()
            raise
        self.score_threshold = self.small.score_threshold

    def chooses(self, width: int, height: int) -> FaceDetector:
        """The detector that runs on a ``width`` x ``height`` frame."""
        return self.large if max(width, height) > self.large_side else self.small

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        image = check_image(image_bgr)
        return self.chooses(image.shape[1], image.shape[0]).detect(image)

    def detect_region(self, image_bgr: np.ndarray, region: tuple[int, int, int, int]) -> list[Detection]:
        """A region of a large frame goes to MTCNN too: the faces there are small."""
        image = np.asarray(image_bgr)
        return self.chooses(image.shape[1], image.shape[0]).detect_region(image, region)

    def close(self) -> None:
        self.small.close()
        self.large.close()

"""The default detector: BlazeFace for camera-sized frames, MTCNN for large frames and as a fallback.

Both ship with the install (BlazeFace inside mediapipe, MTCNN in ``assets/mtcnn``). BlazeFace
(short range) is the fastest for one face near the camera but finds no face smaller than
about a tenth of the frame, and misses some plain frontal faces (a grey photo held up to
the camera); MTCNN finds faces from 20 px (or 1/40 of the shorter side) and gives the five
points, at several times the cost. Frames whose longer side exceeds ``large_side`` (default
1280: anything above 720p, typically recorded footage with people further away) go to
MTCNN, the rest to BlazeFace. When BlazeFace finds nothing on a smaller frame, MTCNN searches
it too, on the first such frame and then on every ``fallback_every``-th of a run of empty
frames, so a scene with no face costs MTCNN's time on a tenth of its frames, not on all
(the tracker searches every frame while it has no face).
The measurements behind the rule are in docs/RESULTS.md; ``--detector mtcnn`` forces MTCNN
at every size (a crowd at the webcam) and ``--detector blazeface`` never falls back.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from models.detectors.base import FaceDetector, check_image
from models.types import Detection


class AutoDetector(FaceDetector):
    """BlazeFace up to ``large_side`` px on the longer side, MTCNN above and when BlazeFace finds nothing.

    ``score_threshold`` is BlazeFace's (0.5); MTCNN keeps its own (0.8, ``mtcnn_options``).
    ``fallback_every``: MTCNN searches the first of a run of frames where BlazeFace finds no
    face, then every ``fallback_every``-th (0: never). A run ends when either finds a face, so
    a face only MTCNN sees is searched by MTCNN at each of the tracker's re-detections.
    """

    name = "auto"

    def __init__(self, large_side: int = 1280, fallback_every: int = 10, blazeface_options: dict | None = None,
                 mtcnn_options: dict | None = None) -> None:
        from models.detectors.blazeface import BlazeFaceDetector
        from models.detectors.mtcnn import MtcnnDetector

        if large_side < 2:
            raise ValueError(f"large_side must be at least 2 px, got {large_side}")
        if fallback_every < 0:
            raise ValueError(f"fallback_every must be 0 (never) or a number of frames, got {fallback_every}")
        self.large_side = int(large_side)
        self.fallback_every = int(fallback_every)
        self.small = BlazeFaceDetector(**(blazeface_options or {}))
        try:
            self.large = MtcnnDetector(**(mtcnn_options or {}))
        except BaseException:
            self.small.close()
            raise
        self.score_threshold = self.small.score_threshold
        self._empty_run = 0  # consecutive searches of small frames where BlazeFace found nothing
        self.fallback_searches = 0  # how often MTCNN searched after BlazeFace found nothing
        self.fallback_finds = 0  # ... and found a face

    def chooses(self, width: int, height: int) -> FaceDetector:
        """The detector that runs first on a ``width`` x ``height`` frame."""
        return self.large if max(width, height) > self.large_side else self.small

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        image = check_image(image_bgr)
        return self._search(image.shape, lambda detector: detector.detect(image))

    def detect_region(self, image_bgr: np.ndarray, region: tuple[int, int, int, int]) -> list[Detection]:
        """A region of a large frame goes to MTCNN too: the faces there are small."""
        image = np.asarray(image_bgr)
        return self._search(image.shape, lambda detector: detector.detect_region(image, region))

    def _search(self, shape: tuple[int, ...], run: Callable[[FaceDetector], list[Detection]]) -> list[Detection]:
        first = self.chooses(shape[1], shape[0])
        found = run(first)
        if first is self.large:
            return found
        if found:
            self._empty_run = 0
            return found
        due = self.fallback_every > 0 and self._empty_run % self.fallback_every == 0
        self._empty_run += 1
        if not due:
            return []
        self.fallback_searches += 1
        found = run(self.large)
        if found:
            self.fallback_finds += 1
            self._empty_run = 0  # a face only MTCNN sees: search for it again at the next call
        return found

    def close(self) -> None:
        self.small.close()
        self.large.close()

"""A folder of still images played as a video.

Files are taken in natural order (``frame2`` before ``frame10``) and frame ``i`` is the
``i``-th file with an image suffix. One rule for bad files: a file that is not an image,
fails to decode, or is smaller than 2x2 pixels is skipped when its turn comes, logged
once and named in ``problems``; its frame number is left out (a gap in the numbering),
so the numbers of the other frames still say which file they came from. A folder none of
whose files looks like an image is refused when it is opened.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2

from app.sources.base import DEFAULT_FPS, SeekableSource, SourceError, frozen, natural_key, read_image
from app.types import Frame
from models.detectors.base import MIN_IMAGE_SIDE

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")


def list_images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key
    )


def check_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise SourceError(f"{what} not found: {folder}")
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder")


class ImageFolderSource(SeekableSource):
    """Sorted images of one folder; frame ``i`` is file ``i`` and has timestamp ``i / fps``."""

    def __init__(self, folder: str | Path, fps: float = DEFAULT_FPS) -> None:
        super().__init__()
        self.folder = Path(folder)
        check_folder(self.folder, "image folder")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._fps = float(fps)
        self.files = list_images(self.folder)
        if not self.files:
            raise SourceError(f"no images in folder {self.folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        if not any(cv2.haveImageReader(str(path)) for path in self.files):
            raise SourceError(
                f"none of the {len(self.files)} image files in {self.folder} is a readable image "
                f"(e.g. {self.files[0].name})"
            )
        self.skipped: set[int] = set()  # frame numbers of the files found bad so far

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def frame_count(self) -> int:
        return len(self.files)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def skipped_frames(self) -> list[int]:
        return sorted(self.skipped)

    def _image(self, index: int) -> Frame | None:
        """Frame ``index``, or None when its file is bad (skipped, reported once)."""
        if index in self.skipped:
            return None
        path = self.files[index]
        try:
            if not cv2.haveImageReader(str(path)):
                raise SourceError(f"{path} (frame {index}): not a readable image")
            image = read_image(path, index)
            if min(image.shape[:2]) < MIN_IMAGE_SIDE:
                raise SourceError(f"{path} (frame {index}): {image.shape[1]}x{image.shape[0]} pixels is too small")
        except SourceError as error:
            self.skipped.add(index)
            self.problems.append(f"{error}; skipped")
            log.warning("%s; skipped", error)
            return None
        return Frame(frozen(image), index, index / self._fps)

    def _load(self, index: int) -> Frame | None:
        """Frame ``index``, or the next good one after it when its file is bad."""
        for candidate in range(index, len(self.files)):
            frame = self._image(candidate)
            if frame is not None:
                return frame
        return None

    def step_back(self) -> Frame | None:
        """The nearest good frame before the one returned last (None when there is none)."""
        self._check_open()
        for candidate in range((self._current or 0) - 1, -1, -1):
            frame = self._image(candidate)
            if frame is not None:
                self._current, self._position = candidate, candidate + 1
                return frame
        return None

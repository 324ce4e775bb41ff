"""A folder of still images played as a video.

Files are taken in natural order (``frame2`` before ``frame10``). Policy for bad
files: a file with an image suffix whose content OpenCV does not recognise is
skipped when the folder is opened, logged, and listed in ``problems``; a file
that looks like an image but fails to decode raises SourceError naming it when
its frame is read (the source stays usable: seek past it).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2

from app.sources.base import DEFAULT_FPS, SeekableSource, SourceError, frozen, natural_key, read_image
from app.types import Frame

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
    """Sorted images of one folder; frame ``i`` has timestamp ``i / fps``."""

    def __init__(self, folder: str | Path, fps: float = DEFAULT_FPS) -> None:
        super().__init__()
        self.folder = Path(folder)
        check_folder(self.folder, "image folder")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._fps = float(fps)
        candidates = list_images(self.folder)
        if not candidates:
            raise SourceError(f"no images in folder {self.folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.problems: list[str] = []
        self.files: list[Path] = []
        for path in candidates:
            if cv2.haveImageReader(str(path)):
                self.files.append(path)
            else:
                self.problems.append(f"{path}: not a readable image, skipped")
                log.warning("%s: not a readable image, skipped", path)
        if not self.files:
            raise SourceError(
                f"none of the {len(candidates)} image files in {self.folder} is a readable image "
                f"(e.g. {candidates[0].name})"
            )

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def frame_count(self) -> int:
        return len(self.files)

    @property
    def fps(self) -> float:
        return self._fps

    def _load(self, index: int) -> Frame | None:
        if index >= len(self.files):
            return None
        image = read_image(self.files[index], index)
        return Frame(frozen(image), index, index / self._fps)

"""A 300-VW clip with its ground truth.

Two layouts are read:

* the real one, ``CLIP/vid.avi`` + ``CLIP/annot/NNNNNN.pts`` (frame numbers are
  1-based: ``000001.pts`` annotates the first video frame);
* extracted frames, ``CLIP/imgs/NNNNNN.jpg`` + ``CLIP/annot/NNNNNN.pts``, where
  only some frames may be present. Frames are then the images present, in
  number order; ``Frame.index`` counts them from 0, ``frame_numbers[index]`` is
  the 300-VW number, and timestamps are ``(number - 1) / fps`` so gaps show.

All annotations are parsed when the clip opens. A malformed or missing one does
not stop the clip: that frame's ``ground_truth`` is None and the problem is in
``annotation_problems`` with the file name.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.sources.base import DEFAULT_FPS, SeekableSource, SourceError, frozen, read_image
from app.sources.images import IMAGE_SUFFIXES, check_folder
from app.sources.video import VIDEO_SUFFIXES, VideoFileSource
from app.types import Frame
from models.pts import PtsFormatError, read_pts

log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"^(\d+)$")


@dataclass(frozen=True)
class AnnotationProblem:
    """A 300-VW annotation that could not be used. ``frame_number`` is 1-based (None if unknown)."""

    path: Path
    frame_number: int | None
    message: str

    def __str__(self) -> str:
        return self.message


def _clip_video(folder: Path) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        candidate = folder / f"vid{suffix}"
        if candidate.is_file():
            return candidate
    return None


def is_300vw_clip(folder: str | Path) -> bool:
    """A folder with ``annot/`` and either ``vid.avi`` (or another ``vid.*`` video) or ``imgs/``."""
    folder = Path(folder)
    return (folder / "annot").is_dir() and (_clip_video(folder) is not None or (folder / "imgs").is_dir())


def _numbered_files(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[int, Path], list[Path]]:
    """{number: path} of files named ``NNNNNN.<suffix>``, and the files with other names."""
    numbered, others = {}, []
    for path in folder.iterdir():
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        match = _NUMBERED.match(path.stem)
        if match:
            numbered[int(match.group(1))] = path
        else:
            others.append(path)
    return numbered, others


class Clip300VWSource(SeekableSource):
    """Frames of one 300-VW clip with ``Frame.ground_truth`` (68, 2), 0-based, where annotated."""

    def __init__(self, folder: str | Path, fps: float = DEFAULT_FPS) -> None:
        """``fps`` applies to the ``imgs/`` layout only (the video declares its own)."""
        super().__init__()
        self.folder = Path(folder)
        check_folder(self.folder, "300-VW clip folder")
        annot = self.folder / "annot"
        if not annot.is_dir():
            raise SourceError(f"{self.folder} is not a 300-VW clip: it has no annot/ folder")
        self.annotation_problems: list[AnnotationProblem] = []
        pts_files, odd_names = _numbered_files(annot, (".pts",))
        for path in sorted(odd_names):
            self._problem(path, None, f"{path}: name is not a frame number (expected e.g. 000001.pts), ignored")

        video = _clip_video(self.folder)
        self._video: VideoFileSource | None = None
        if video is not None:
            self.layout = "video"
            self._video = VideoFileSource(video)
            self.problems = self._video.problems  # a truncated vid.avi is this clip's problem
            self._fps = self._video.fps
            self.images: list[Path] = []
            self._numbers: list[int] | None = None
        elif (self.folder / "imgs").is_dir():
            self.layout = "imgs"
            images, _ = _numbered_files(self.folder / "imgs", IMAGE_SUFFIXES)
            if not images:
                raise SourceError(f"300-VW clip {self.folder}: imgs/ holds no numbered images (e.g. 000001.jpg)")
            self._numbers = sorted(images)
            self.images = [images[n] for n in self._numbers]
            self.skipped: set[int] = set()  # frames whose image did not decode (named in ``problems``)
            if fps <= 0:
                raise ValueError(f"fps must be positive, got {fps}")
            self._fps = float(fps)
        else:
            raise SourceError(f"300-VW clip {self.folder} has neither vid.avi nor an imgs/ folder")

        try:
            self._read_ground_truth(annot, pts_files)
        except BaseException:
            self.close()  # the video opened above: no finaliser closes it later
            raise

    def _read_ground_truth(self, annot: Path, pts_files: dict[int, Path]) -> None:
        self._ground_truth: dict[int, np.ndarray] = {}
        for number, path in sorted(pts_files.items()):
            try:
                self._ground_truth[number] = frozen(read_pts(path))
            except (PtsFormatError, OSError) as error:
                self._problem(path, number, str(error))
        self._check_coverage(annot, pts_files)
        if self.annotation_problems:
            log.warning(
                "%s: %d annotation problem(s), first: %s",
                self.name,
                len(self.annotation_problems),
                self.annotation_problems[0],
            )

    def _problem(self, path: Path, number: int | None, message: str) -> None:
        self.annotation_problems.append(AnnotationProblem(path, number, message))

    def _check_coverage(self, annot: Path, pts_files: dict[int, Path]) -> None:
        if self.layout == "imgs":
            for number in self._numbers:
                if number not in pts_files:
                    self._problem(annot / f"{number:06d}.pts", number, f"{annot / f'{number:06d}.pts'}: missing")
            return
        count = self._video.frame_count
        if count is None:
            return
        beyond = [n for n in pts_files if n < 1 or n > count]
        for number in sorted(beyond):
            self._problem(
                pts_files[number], number, f"{pts_files[number]}: no such frame in the video ({count} frames)"
            )
        missing = [n for n in range(1, count + 1) if n not in pts_files]
        for number in missing:
            self._problem(annot / f"{number:06d}.pts", number, f"{annot / f'{number:06d}.pts'}: missing")

    @property
    def name(self) -> str:
        return f"300-VW clip {self.folder.name}"

    @property
    def clip_id(self) -> str:
        return self.folder.name

    @property
    def frame_count(self) -> int | None:
        return self._video.frame_count if self._video is not None else len(self.images)

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def skipped_frames(self) -> list[int]:
        return self._video.skipped_frames if self._video is not None else sorted(self.skipped)

    @property
    def lost_frames_problem(self) -> str | None:
        return self._video.lost_frames_problem if self._video is not None else None

    def frame_number(self, index: int) -> int:
        """The 300-VW (1-based) frame number of frame ``index``."""
        return self._numbers[index] if self._numbers is not None else index + 1

    @property
    def frame_numbers(self) -> list[int]:
        count = self.frame_count or 0
        return list(self._numbers) if self._numbers is not None else list(range(1, count + 1))

    def ground_truth(self, index: int) -> np.ndarray | None:
        """(68, 2) 0-based points of frame ``index``, None if not (validly) annotated."""
        return self._ground_truth.get(self.frame_number(index))

    def _load(self, index: int) -> Frame | None:
        if self._video is not None:
            frame = self._video._load(index)
            if frame is None:
                return None
            return dataclasses.replace(frame, ground_truth=self.ground_truth(index))
        # As in an image folder: a frame whose image does not decode is skipped (named in
        # ``problems`` once, its number left out) and the next good one is returned.
        for candidate in range(index, len(self.images)):
            frame = self._image(candidate)
            if frame is not None:
                return frame
        return None

    def _image(self, index: int) -> Frame | None:
        if index in self.skipped:
            return None
        try:
            # Points refer to the stored pixel grid: ignore any EXIF rotation.
            image = read_image(self.images[index], index, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except SourceError as error:
            self.skipped.add(index)
            self.problems.append(f"{error}; skipped")
            log.warning("%s; skipped", error)
            return None
        number = self._numbers[index]
        return Frame(frozen(image), index, (number - 1) / self._fps, self.ground_truth(index))

    def step_back(self) -> Frame | None:
        """The nearest good frame before the one returned last (None when there is none)."""
        if self._video is not None:
            return super().step_back()
        self._check_open()
        for candidate in range((self._current or 0) - 1, -1, -1):
            frame = self._image(candidate)
            if frame is not None:
                self._current, self._position = candidate, candidate + 1
                return frame
        return None

    def _release(self) -> None:
        if self._video is not None:
            self._video.close()

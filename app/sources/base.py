"""What every frame source shares: the error type, the reading protocol, seeking.

A source hands out :class:`app.types.Frame` objects one at a time (``read()``, or by
iterating) and is closed with ``close()`` or a ``with`` block. Seekable sources
(files, image folders, 300-VW clips) also jump (``seek``) and step back
(``step_back``); live sources (cameras) do not.

Frame images are marked read-only: sources may keep them (the video history used
for stepping back), so draw on a copy.
"""
from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from app.types import Frame

DEFAULT_FPS = 30.0


class SourceError(RuntimeError):
    """A source cannot be opened or read. The message names the device or file and the problem."""


class TruncatedVideoError(SourceError):
    """A video file ended before the frame count its header declares.

    Raised once, by the ``read()`` that hits the end; every frame before it was
    delivered, and the source stays usable with ``frame_count`` set to ``frames_read``.
    """

    def __init__(self, path: Path, frames_read: int, declared: int) -> None:
        super().__init__(
            f"video ended at frame {frames_read} of {declared}: the file looks truncated ({path})"
        )
        self.path = path
        self.frames_read = frames_read
        self.declared = declared


def frames_to_end(source: "FrameSource") -> Iterator[Frame]:
    """Iterate ``source`` to its readable end: a truncated video just ends (the problem is in ``source.problems``)."""
    try:
        yield from source
    except TruncatedVideoError:
        return


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log (e.g. V4L2 'can't open camera by index') for the block."""
    log = cv2 if hasattr(cv2, "getLogLevel") else cv2.utils.logging  # OpenCV 4.12+: only cv2.utils.logging
    previous = log.getLogLevel()
    log.setLogLevel(0)  # LOG_LEVEL_SILENT
    try:
        yield
    finally:
        log.setLogLevel(previous)


def natural_key(path: Path) -> list:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frozen(image: np.ndarray) -> np.ndarray:
    image.flags.writeable = False
    return image


def read_image(path: Path, index: int, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Read one image as BGR uint8; SourceError naming the file if it cannot be decoded."""
    image = cv2.imread(str(path), flags)
    if image is None:
        raise SourceError(f"cannot decode image {path} (frame {index}): the file is corrupt or not an image")
    return image


class FrameSource(ABC):
    """Base of every source: ``read()`` the next frame (None at the end), iterate, close.

    Whoever opens a source closes it (``close()``, or a ``with`` block); there is no finaliser,
    so a device or file is never released at an unpredictable time by the garbage collector. A
    constructor that fails releases what it had opened before raising.

    ``problems`` lists what was wrong with the input without stopping it (a skipped
    image, a truncated video), one message per problem naming the file; the commands
    report them after their summary.
    """

    is_live: bool = False
    seekable: bool = False

    def __init__(self) -> None:
        self._closed = False
        self.problems: list[str] = []

    @property
    @abstractmethod
    def name(self) -> str:
        """Short text naming the source for the user (device, file or folder)."""

    @property
    @abstractmethod
    def frame_count(self) -> int | None:
        """Number of frames, None for cameras and files that do not declare it."""

    @property
    @abstractmethod
    def fps(self) -> float | None:
        """Frames per second (granted rate for cameras), None when unknown."""

    @property
    def skipped_frames(self) -> list[int]:
        """Numbers of the frames skipped so far because they could not be read (a bad image, a
        damaged stretch of a video), in order; each is named in ``problems``."""
        return []

    @property
    def lost_frames_problem(self) -> str | None:
        """The message in ``problems`` that names a video's undecodable frames (it grows as more
        are found), None when there is none."""
        return None

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None at the end of a file. Raises SourceError when reading fails."""

    def _release(self) -> None:
        """Free the underlying device or file (called once by ``close``)."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SourceError(f"{self.name} is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


class SeekableSource(FrameSource):
    """A source with numbered frames 0..frame_count-1 that can jump and step back.

    Subclasses implement ``_load(index)`` (the frame, or None past the end).
    ``position`` is the index the next ``read()`` returns; ``current_index`` the
    index of the frame returned last.
    """

    seekable = True

    def __init__(self) -> None:
        super().__init__()
        self._position = 0
        self._current: int | None = None

    @abstractmethod
    def _load(self, index: int) -> Frame | None:
        """Frame ``index`` or None when it lies past the end."""

    @property
    def position(self) -> int:
        return self._position

    @property
    def current_index(self) -> int | None:
        return self._current

    def read(self) -> Frame | None:
        self._check_open()
        count = self.frame_count
        if count is not None and self._position >= count:
            return None
        frame = self._load(self._position)
        if frame is None:
            return None
        self._current = frame.index
        self._position = frame.index + 1
        return frame

    def seek(self, index: int) -> None:
        """Make ``read()`` return frame ``index`` next. IndexError if out of range."""
        self._check_open()
        count = self.frame_count
        if index < 0 or (count is not None and index >= count):
            limit = f"it has {count} frames (0-{count - 1})" if count is not None else "indices start at 0"
            raise IndexError(f"frame {index} is out of range for {self.name}: {limit}")
        self._position = int(index)

    def frame_at(self, index: int) -> Frame | None:
        """Seek to ``index`` and read it."""
        self.seek(index)
        return self.read()

    def step_back(self) -> Frame | None:
        """The frame before the one returned last (None when already at the first)."""
        self._check_open()
        if self._current is None or self._current == 0:
            return None
        return self.frame_at(self._current - 1)

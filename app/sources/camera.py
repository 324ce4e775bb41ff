"""Live cameras through OpenCV (V4L2 on Linux), and listing the cameras present.

On Linux a camera index ``i`` is the device ``/dev/video{i}``: a missing node is
reported at once, without asking OpenCV (which would only log a warning). The
camera must deliver one frame while opening, so a camera that opens but cannot
stream (busy, or a metadata node) fails at open time, not later. A read that
fails mid-stream (unplugged) raises SourceError; OpenCV's V4L2 backend waits at
most ``OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT`` seconds (default 10) for a frame.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from app.sources.base import FrameSource, SourceError, frozen, quiet_opencv
from app.types import Frame

log = logging.getLogger(__name__)

IS_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class CameraInfo:
    """One camera for the GUI's list: index to open, a name, its default frame size."""

    index: int
    name: str
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.index}: {self.name} ({self.width}x{self.height})"


def _backend() -> int:
    return cv2.CAP_V4L2 if IS_LINUX else cv2.CAP_ANY


def _device_path(index: int) -> Path:
    return Path(f"/dev/video{index}")


def _device_name(index: int) -> str:
    try:
        return Path(f"/sys/class/video4linux/video{index}/name").read_text().strip() or f"camera {index}"
    except OSError:
        return f"camera {index}"


def _check_device(index: int) -> None:
    """Linux: a clear error for a missing or inaccessible device node."""
    path = _device_path(index)
    if not path.exists():
        raise SourceError(f"camera {index} is not available (no such device {path})")
    if not os.access(path, os.R_OK | os.W_OK):
        raise SourceError(
            f"camera {index} ({path}) is not accessible: permission denied (is this user in the 'video' group?)"
        )


def _open_capture(index: int) -> cv2.VideoCapture:
    if index < 0:
        raise SourceError(f"camera index must be 0 or more, got {index}")
    if IS_LINUX:
        _check_device(index)
    with quiet_opencv():
        capture = cv2.VideoCapture(index, _backend())
    if not capture.isOpened():
        capture.release()
        raise SourceError(
            f"camera {index} could not be opened (in use by another program, or not a video capture device)"
        )
    return capture


def list_cameras(max_index: int = 8) -> list[CameraInfo]:
    """Cameras that open, among indices 0..max_index-1, probed quietly.

    On Linux only existing ``/dev/videoN`` nodes are probed, so a machine without
    cameras answers [] at once.
    """
    found = []
    candidates = [i for i in range(max_index) if _device_path(i).exists()] if IS_LINUX else range(max_index)
    for index in candidates:
        with quiet_opencv():
            capture = cv2.VideoCapture(index, _backend())
            try:
                if capture.isOpened():
                    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                    found.append(CameraInfo(index, _device_name(index), width, height))
            finally:
                capture.release()
    return found


class CameraSource(FrameSource):
    """A live camera. Requested width/height/fps are asked for; the granted ones are
    ``frame_size`` (from the delivered frames) and ``fps``.

    ``fourcc`` (default MJPG) is requested first because most USB cameras deliver
    720p and more at full rate only as MJPG; a camera without it keeps its default.
    Timestamps are monotonic-clock seconds since the first ``read()``.
    """

    is_live = True

    def __init__(
        self,
        index: int,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = "MJPG",
    ) -> None:
        super().__init__()
        self.index = int(index)
        self.requested = (width, height, fps)
        self._capture = _open_capture(self.index)
        try:
            self._configure(width, height, fps, fourcc)
            self._start()
        except BaseException:
            self._capture.release()
            raise

    @classmethod
    def _from_capture(cls, capture: cv2.VideoCapture, index: int) -> CameraSource:
        """Wrap an already opened capture (tests drive the read path with a real file capture)."""
        source = cls.__new__(cls)
        FrameSource.__init__(source)
        source.index = index
        source.requested = (None, None, None)
        source._capture = capture
        try:
            source._start()
        except BaseException:
            capture.release()
            raise
        return source

    def _configure(self, width, height, fps, fourcc) -> None:
        cap = self._capture
        if fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)

    def _start(self) -> None:
        with quiet_opencv():
            ok, image = self._capture.read()
        if not ok or image is None:
            raise SourceError(f"camera {self.index} opened but delivered no frame (in use by another program?)")
        self._frame_size = (int(image.shape[1]), int(image.shape[0]))
        granted_fps = self._capture.get(cv2.CAP_PROP_FPS)
        self._fps = float(granted_fps) if granted_fps and granted_fps > 0 else None
        self._next_index = 0
        self._t0: float | None = None
        requested = self.requested
        if (requested[0] and requested[0] != self._frame_size[0]) or (
            requested[1] and requested[1] != self._frame_size[1]
        ):
            log.info("camera %d: asked for %sx%s, got %dx%d", self.index, *requested[:2], *self._frame_size)

    @property
    def name(self) -> str:
        return f"camera {self.index}"

    @property
    def frame_count(self) -> None:
        return None

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def frame_size(self) -> tuple[int, int]:
        """Granted (width, height)."""
        return self._frame_size

    def read(self) -> Frame:
        self._check_open()
        ok, image = self._capture.read()
        now = time.monotonic()
        if not ok or image is None:
            raise SourceError(
                f"camera {self.index} stopped delivering frames after {self._next_index} "
                "(unplugged, or taken by another program)"
            )
        if self._t0 is None:
            self._t0 = now
        frame = Frame(frozen(image), self._next_index, now - self._t0)
        self._next_index += 1
        return frame

    def _release(self) -> None:
        self._capture.release()

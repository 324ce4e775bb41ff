"""Video files through OpenCV/FFmpeg: exact seeking, stepping back, truncation.

Behaviour measured with opencv-contrib 4.11 (FFmpeg 5.1):

* An MP4 whose ``moov`` index is missing (cut before it, or never finalised)
  does not open at all; the error says the file looks truncated.
* A truncated file that does open (index at the front, or an AVI) declares more
  frames than it holds: reading stops early and ``read()`` raises
  TruncatedVideoError once ("video ended at frame 112 of 225 ..."); the frames
  before were all delivered and ``frame_count`` becomes the readable count.
* ``CAP_PROP_POS_FRAMES`` seeks are exact on intact files but silently land
  elsewhere on files without an index (killed recordings) or past a truncation, so
  every seek is checked and falls back to reopening and stepping forward.
* Seeking in long-GOP H.264 costs ~0.5 s, so recently decoded frames are kept
  (``history_bytes``) and stepping back over them is instant.
* Damage inside a file (bytes overwritten mid-file) makes ``grab()`` fail for a run of
  calls, then succeed again after it (a 480x480 H.264 clip with a tenth of its bytes
  overwritten at 40%: 23 failed calls, then frames 115-215). So a failed ``grab()`` is
  taken for the end only once as many calls have failed as the header says frames are
  left; the frames that were lost are skipped and named in ``problems`` (one message per
  file, ``lost_frames``), and the frames after the damage keep their own numbers, taken
  from their timestamps (a frame decoded out of order after the damage, whose timestamp
  is at or before one already delivered, is dropped with them).
"""
from __future__ import annotations

import logging
import math
import struct
from collections import OrderedDict
from pathlib import Path

import cv2

from app.sources.base import DEFAULT_FPS, SeekableSource, SourceError, TruncatedVideoError, frozen, quiet_opencv
from app.types import Frame

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".ts", ".flv", ".3gp")
FORWARD_GRAB_LIMIT = 16  # nearer forward jumps decode through instead of seeking
DEFAULT_HISTORY_BYTES = 128 * 2**20


def _count_tolerance(declared: int) -> int:
    """Shortfall still treated as a header's rounding, not truncation."""
    return max(1, declared // 200)


def _mp4_top_level_boxes(path: Path) -> list[tuple[bytes, int, int]] | None:
    """(type, offset, size) of an ISO-BMFF file's top-level boxes, None if it is not one."""
    boxes = []
    size_total = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[4:8] != b"ftyp":
            return None
        offset = 0
        while offset + 8 <= size_total:
            f.seek(offset)
            header = f.read(16)
            size, kind = struct.unpack(">I4s", header[:8])
            if size == 1 and len(header) == 16:
                size = struct.unpack(">Q", header[8:16])[0]
            elif size == 0:
                size = size_total - offset
            if size < 8:
                break
            boxes.append((kind, offset, size))
            offset += size
    return boxes


def frame_ranges(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    parts, start = [], None
    for i, frame in enumerate(frames):
        if start is None:
            start = frame
        if i + 1 == len(frames) or frames[i + 1] != frame + 1:
            parts.append(str(start) if start == frame else f"{start}-{frame}")
            start = None
    return ", ".join(parts)


def lost_frames_message(path: Path | str, frames: list[int]) -> str:
    """The one problem that names a video's undecodable frames (sorted numbers)."""
    count = len(frames)
    return (f"{path}: {count} frame{'s' * (count > 1)} ({frame_ranges(frames)}) could not be decoded (the file "
            f"is damaged there) and {'were' if count > 1 else 'was'} skipped; the frames after "
            f"{'them' if count > 1 else 'it'} were read")


def _why_unopenable(path: Path) -> str:
    boxes = _mp4_top_level_boxes(path)
    if boxes is not None:
        kinds = [kind for kind, _, _ in boxes]
        if b"moov" not in kinds:
            return (
                "its MP4 index (the 'moov' atom) is missing: the file looks truncated, "
                "e.g. a download or recording that stopped before it was finished"
            )
        kind, offset, size = boxes[-1]
        if offset + size > path.stat().st_size:
            return f"the file looks truncated (its last '{kind.decode('latin-1')}' box is cut short)"
    return "it is not a video that OpenCV/FFmpeg can read (wrong format, or corrupt)"


class VideoFileSource(SeekableSource):
    """Frames of a video file with timestamps from the file (or index / fps)."""

    def __init__(self, path: str | Path, history_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"video file not found: {self.path}")
        if self.path.is_dir():
            raise SourceError(f"{self.path} is a folder, not a video file")
        if self.path.stat().st_size == 0:
            raise SourceError(f"video file {self.path} is empty (0 bytes)")
        self._history: OrderedDict[int, Frame] = OrderedDict()
        self._history_bytes = 0
        self._history_limit = history_bytes
        self._capture = self._open_capture()
        try:
            self._start()
        except BaseException:
            self._capture.release()  # no finaliser does it later
            raise

    def _start(self) -> None:
        """Read the header and decode the first frame (the capture is open)."""
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if math.isfinite(fps) and 0 < fps < 1000 else None
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        # Files without an index report 0 or nonsense (killed .mkv: about -2.8e17).
        self._declared = int(count) if math.isfinite(count) and 0 < count < 2**31 else None
        self._count = self._declared
        self.truncated_at: int | None = None  # readable frame count when the file proved truncated
        self.lost_frames: list[int] = []  # frames inside the file that could not be decoded (sorted)
        self._lost_message: int | None = None  # where in ``problems`` they are named
        self._damaged = False  # damage met: frame numbers come from timestamps from here on
        self._next_decode = 0
        self._time_origin = 0.0
        first = self._decode_next()
        if first is None:
            raise SourceError(
                f"cannot read video {self.path}: it opened but no frame could be decoded "
                "(unsupported codec, or the file is corrupt or truncated)"
            )
        self._frame_size = (int(first.image.shape[1]), int(first.image.shape[0]))

    def _open_capture(self) -> cv2.VideoCapture:
        with quiet_opencv():  # our message replaces OpenCV's "can't be used to capture by name"
            capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open video {self.path}: {_why_unopenable(self.path)}")
        return capture

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def frame_count(self) -> int | None:
        """Frames in the file: declared by its header, corrected once the real end is met."""
        return self._count

    @property
    def declared_frame_count(self) -> int | None:
        return self._declared

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def skipped_frames(self) -> list[int]:
        return list(self.lost_frames)

    @property
    def lost_frames_problem(self) -> str | None:
        return self.problems[self._lost_message] if self._lost_message is not None else None

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the decoded frames."""
        return self._frame_size

    # -- decoding -------------------------------------------------------------
    def _timestamp(self, index: int) -> float:
        msec = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and (msec > 0 or index == 0):
            seconds = msec / 1000.0
            if index == 0:
                self._time_origin = seconds
            return seconds - self._time_origin
        return index / (self._fps or DEFAULT_FPS)

    def _timestamp_index(self) -> int | None:
        """The grabbed frame's number from its timestamp (None when the file gives none)."""
        msec = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        if self._fps is None or not math.isfinite(msec) or msec < 0:
            return None
        return int(round((msec / 1000.0 - self._time_origin) * self._fps))

    def _worth_retrying(self, failed: int) -> bool:
        """After ``failed`` failed grabs in a row: may frames still follow (damage, not the end)?"""
        return self._declared is not None and self._next_decode + failed < self._declared

    def _grab(self) -> int | None:
        """Grab the next decodable frame and return its number; None at the end of the file.

        Frames lost to damage on the way are recorded (``_lose``)."""
        failed = 0
        while True:
            if self._capture.grab():
                index = self._next_decode
                if failed or self._damaged:
                    self._damaged = True
                    stamped = self._timestamp_index()
                    index = max(index, self._next_decode + failed) if stamped is None else stamped
                    if index < self._next_decode or (
                            self._declared is not None and index >= self._declared + _count_tolerance(self._declared)):
                        failed += 1  # decoded out of order after the damage (or a garbled time): dropped
                        if not self._worth_retrying(failed):
                            return None
                        continue
                if index > self._next_decode:
                    self._lose(self._next_decode, index)
                self._next_decode = index + 1
                return index
            failed += 1
            if not self._worth_retrying(failed):
                return None

    def _retrieve(self, index: int) -> Frame | None:
        """The frame just grabbed, as frame ``index`` (None, and lost, if it does not convert)."""
        ok, image = self._capture.retrieve()
        if not ok or image is None:
            self._lose(index, index + 1)
            return None
        frame = Frame(frozen(image), index, self._timestamp(index))
        self._remember(frame)
        return frame

    def _decode_next(self) -> Frame | None:
        while (index := self._grab()) is not None:
            frame = self._retrieve(index)
            if frame is not None:
                return frame
        return None

    def _lose(self, start: int, stop: int) -> None:
        """Frames ``start``..``stop - 1`` could not be decoded: record them, named in one problem."""
        lost = set(self.lost_frames)
        new = [i for i in range(start, stop) if i not in lost]
        if not new:
            return
        self.lost_frames = sorted(lost.union(new))
        message = lost_frames_message(self.path, self.lost_frames)
        log.warning("%s: frame(s) %s could not be decoded; skipped", self.path, frame_ranges(new))
        if self._lost_message is None:
            self._lost_message = len(self.problems)
            self.problems.append(message)
        else:
            self.problems[self._lost_message] = message

    def _remember(self, frame: Frame) -> None:
        if frame.index in self._history:
            return
        self._history[frame.index] = frame
        self._history_bytes += frame.image.nbytes
        while self._history_bytes > self._history_limit and len(self._history) > 1:
            _, old = self._history.popitem(last=False)
            self._history_bytes -= old.image.nbytes

    def _grab_to(self, index: int) -> bool | Frame:
        """Decode forward until the next decoded frame is ``index``: True when there, False if the
        file ends first, or the first frame after ``index`` when damage took ``index`` itself."""
        while self._next_decode < index:
            got = self._grab()
            if got is None:
                return False
            if got >= index:
                return self._retrieve(got) or self._decode_next() or False
        return True

    def _rescan_to(self, index: int) -> bool | Frame:
        """Reopen the file and step forward to ``index`` (for files that cannot seek)."""
        self._capture.release()
        self._capture = self._open_capture()
        self._next_decode = 0
        self._damaged = False
        return self._grab_to(index)

    def _seek_capture(self, index: int) -> Frame | None:
        """Decode frame ``index`` out of order, checking where the seek really landed."""
        if 0 < index - self._next_decode <= FORWARD_GRAB_LIMIT:
            there = self._grab_to(index)
            if there is not True:
                return there or None
            return self._decode_next()
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = self._capture.read()
        if ok and image is not None and int(round(self._capture.get(cv2.CAP_PROP_POS_FRAMES))) == index + 1:
            self._next_decode = index
            frame = Frame(frozen(image), index, self._timestamp(index))
            self._next_decode = index + 1
            self._remember(frame)
            return frame
        log.debug("%s: seek to %d did not land there; stepping forward from the start", self.path, index)
        there = self._rescan_to(index)
        if there is not True:
            return there or None
        return self._decode_next()

    def _load(self, index: int) -> Frame | None:
        frame = self._history.get(index)
        if frame is not None:
            self._history.move_to_end(index)
            return frame
        if index == self._next_decode:
            frame = self._decode_next()
        else:
            frame = self._seek_capture(index)
        if frame is not None:
            return frame
        return self._end_reached(self._next_decode)

    def step_back(self) -> Frame | None:
        """The nearest frame before the one returned last that decodes (over a damaged stretch:
        the frame before it), None when there is none."""
        self._check_open()
        if self._current is None:
            return None
        lost = set(self.lost_frames)
        candidate = self._current - 1
        while candidate in lost:
            candidate -= 1
        return self.frame_at(candidate) if candidate >= 0 else None

    def _end_reached(self, readable: int) -> None:
        """The file ends after ``readable`` frames: correct the count; raise if it was truncated."""
        declared = self._declared
        self._count = readable
        if (
            self.truncated_at is None
            and declared is not None
            and readable < declared - _count_tolerance(declared)
        ):
            self.truncated_at = readable
            error = TruncatedVideoError(self.path, readable, declared)
            self.problems.append(str(error))
            raise error
        return None

    def _release(self) -> None:
        self._capture.release()
        self._history.clear()

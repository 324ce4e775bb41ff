"""Recording annotated video and landmark CSV files that stay usable if the process dies.

Video container and codec, measured on 2 CPU cores, opencv-contrib 4.11 (FFmpeg 5.1),
with ``PYTHONPATH=. .venv/bin/python tests/test_recording.py``: a child process
writes talking_d3.mp4 frames resized to 640x480 and 1280x720 in real time at 30 fps
and is SIGKILLed after a random 40-200 frames; the file is read back with
``cv2.VideoCapture`` (3 runs per size, frames lost = written - decoded, in order):

==============================  =======================  ===================
writer                          frames lost at SIGKILL   KiB/frame 480p/720p
==============================  =======================  ===================
.avi MJPG, OpenCV's own writer  1 in every run (6 runs)  46 / 105 (q 75)
.avi MJPG, FFmpeg               2-13                     18 / 37
.mkv MJPG, FFmpeg               3-8                      18 / 37
.avi XVID, FFmpeg               17-39 (up to 1.3 s)      5 / 12
.mkv mp4v, FFmpeg               6-55 (up to 1.8 s)       5 / 12
.mp4 mp4v, FFmpeg               all (no 'moov' index)    -
==============================  =======================  ===================

FFmpeg-backed writers lose what sits in FFmpeg's output buffer (killed files were
whole multiples of 256 KiB): a second and more at low bitrates. OpenCV's built-in
MJPEG AVI writer (``cv2.CAP_OPENCV_MJPEG``) loses only the most recent frame, also
when killed while idle (the SIGKILL test). So the default is **.avi + MJPG through
OpenCV's own writer**: widely playable, no FFmpeg needed, odd frame sizes kept; the
price is size (about 1.4 MiB/s at 640x480, 30 fps; lower ``quality`` for less).
``.mkv`` (FFmpeg MJPG) is offered too, with the buffer caveat; FFmpeg drops the
last column/row of odd-sized frames. ``.mp4`` is refused: nothing is playable until
it is closed.

OpenCV's writers report no write errors (a full disk, a file-size limit or quota
is silently ignored), so ``VideoRecorder`` checks that the file keeps growing. Both
writers buffer (OpenCV's MJPEG writer 32 KiB, FFmpeg 256 KiB), so the file must have
grown before the frames written since it last grew could fill two buffers, counting
each frame at a size no MJPEG frame goes below (600 bytes of tables plus 1 byte per
1024 pixels): no false alarm, at the price of noticing a failure up to a few seconds
late. Closing an ``.avi`` also checks that every frame is in the file. When writing
failed, the recording stops with a RecordingError that names the file, and
``frames_kept`` says how many frames the file really holds (``.avi``: from its chunk
headers; ``.mkv``: read back); every one of them plays. The landmark CSV's write
errors become RecordingError naming the file too.

A recording cut short has no index: players and ``VideoFileSource`` read it
sequentially (frame count unknown; seeking steps forward from the start).

The landmark CSV is flushed to the operating system after every frame, so a
killed process loses at most the frame being written (``read_landmark_csv``
skips a cut-off last line). Not fsynced: a power cut can still lose the tail.
"""
from __future__ import annotations

import csv
import logging
import math
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.output_paths import why_not_writable
from app.types import FrameResult
from models.landmarks68 import NUM_LANDMARKS

log = logging.getLogger(__name__)

DEFAULT_VIDEO_SUFFIX = ".avi"
GEOMETRY_COLUMNS = [
    "yaw", "pitch", "roll", "tx", "ty", "tz", "ear_left", "ear_right", "mouth_open", "eyes_closed", "blinks",
]  # see README "Landmark CSV"; empty where not computed (no pose, geometry off)
VISIBILITY_COLUMNS = [f"v{i}" for i in range(NUM_LANDMARKS)]  # 1 seen, 0 hidden, empty: the model does not tell
CSV_HEADER_V1 = (
    ["frame", "time", "face_id"]
    + [f"{axis}{i}" for i in range(NUM_LANDMARKS) for axis in ("x", "y")]
    + [f"c{i}" for i in range(NUM_LANDMARKS)]
    + GEOMETRY_COLUMNS
)  # files written before the visibility columns; still read
CSV_HEADER = CSV_HEADER_V1 + VISIBILITY_COLUMNS


WRITER_API = {".avi": cv2.CAP_OPENCV_MJPEG, ".mkv": cv2.CAP_FFMPEG}
WRITER_BUFFER_BYTES = {".avi": 32 * 2**10, ".mkv": 256 * 2**10}  # what each writer holds before it writes
FULL_DISK_BYTES = 2**20  # less room than this on the drive is reported as "the disk is full"


# How each CSV_HEADER cell is written (format spec per column, in order); None values are empty cells.
CSV_CELL_FORMATS = (
    ["d", ".6f", "d"] + [".3f"] * (2 * NUM_LANDMARKS) + [".4f"] * NUM_LANDMARKS
    + [".2f"] * 3 + [".1f"] * 3 + [".4f"] * 3 + ["d", "d"]  # GEOMETRY_COLUMNS
    + ["d"] * NUM_LANDMARKS  # VISIBILITY_COLUMNS
)


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _geometry_values(geometry) -> list:
    """The GEOMETRY_COLUMNS values of one face: None for what is missing."""
    if geometry is None:
        return [None] * len(GEOMETRY_COLUMNS)
    pose = geometry.pose
    values = [_finite(v) for v in (pose.yaw, pose.pitch, pose.roll)] if pose else [None] * 3
    values += [_finite(v) for v in pose.translation] if pose else [None] * 3
    values += [_finite(geometry.ear_left), _finite(geometry.ear_right), _finite(geometry.mouth_opening)]
    return values + [int(geometry.eyes_closed), int(geometry.blink_count)]


def landmark_rows(frame_result: FrameResult, *, raw: bool = False) -> list[list]:
    """One frame's landmark-table rows, one per face, in ``CSV_HEADER`` order, as numbers (int or float;
    None where the CSV cell is empty). ``FaceResult.landmarks``, or ``raw_landmarks`` with ``raw=True``.

    The one definition of the table's contents: ``LandmarkCsvWriter`` formats these rows and
    ``app.api`` turns them into a DataFrame or a Parquet file."""
    frame = frame_result.frame
    rows = []
    for face in frame_result.faces:
        marks = face.raw_landmarks if raw else face.landmarks
        points = np.asarray(marks.points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
        confidence = np.asarray(marks.confidence, dtype=np.float64).reshape(NUM_LANDMARKS)
        visible = ([None] * NUM_LANDMARKS if marks.visible is None
                   else np.asarray(marks.visible, dtype=bool).reshape(NUM_LANDMARKS).astype(int).tolist())
        rows.append(
            [int(frame.index), float(frame.timestamp), int(face.track_id)]
            + points.ravel().tolist() + confidence.tolist() + _geometry_values(face.geometry) + visible
        )
    return rows


def format_csv_row(values: list) -> list[str]:
    """A ``landmark_rows`` row as the CSV's cells."""
    return ["" if v is None else format(v, spec) for v, spec in zip(values, CSV_CELL_FORMATS, strict=True)]


class RecordingError(RuntimeError):
    """A recording cannot be started or continued; the message names the file and the problem."""


def check_video_target(path: Path) -> int:
    """The OpenCV writer back-end for ``path``, or a RecordingError saying why it cannot be recorded."""
    suffix = path.suffix.lower()
    if suffix not in WRITER_API:
        raise RecordingError(
            f"cannot record {path}: container '{suffix}' is not supported; use .avi (default) or .mkv, "
            "which stay playable if the app is killed (.mp4 does not)"
        )
    reason = why_not_writable(path.parent)
    if reason:
        raise RecordingError(f"cannot record {path}: {reason}")
    return WRITER_API[suffix]


def _no_room_reason(path: Path, error: str | None = None) -> str:
    """The likely cause when ``path`` stopped growing: the free space on its drive decides."""
    free = shutil.disk_usage(path.parent).free
    if free < FULL_DISK_BYTES:
        return f"the disk is full ({free / 2**10:.0f} KiB left on the drive holding {path.parent})"
    return error or "the file stopped growing (a file-size limit or quota?)"


def complete_avi_frames(path: Path) -> int:
    """Frames whose data lies wholly inside an AVI file (a file cut short has no index to ask)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(12)[8:12] != b"AVI ":
            return 0
        offset = 12
        while offset + 12 <= size:  # top level: find LIST movi
            f.seek(offset)
            kind, length, list_type = struct.unpack("<4sI4s", f.read(12))
            if kind == b"LIST" and list_type == b"movi":
                break
            offset += 8 + length + (length & 1)
        else:
            return 0
        frames, chunk = 0, offset + 12
        while chunk + 8 <= size:
            f.seek(chunk)
            kind, length = struct.unpack("<4sI", f.read(8))
            if length == 0 or chunk + 8 + length > size:  # a chunk being written: size not yet patched in
                break
            frames += kind[2:] in (b"dc", b"db")
            chunk += 8 + length + (length & 1)
    return frames


def readable_frames(path: Path) -> int:
    """Frames OpenCV decodes from ``path``, read to the end."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def _letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit ``image`` into ``size`` (width, height) keeping its aspect ratio, black borders."""
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return canvas


class VideoRecorder:
    """Writes BGR frames to ``path`` (.avi by default, or .mkv); see the module notes.

    Frames whose size differs from ``frame_size`` (width, height) are letterboxed
    into it (``on_size_mismatch="resize"``, logged once) or refused with ValueError
    (``"reject"``). Grayscale and BGRA frames are converted.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        frame_size: tuple[int, int],
        *,
        quality: int = 75,
        on_size_mismatch: str = "resize",
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        if on_size_mismatch not in ("resize", "reject"):
            raise ValueError(f"on_size_mismatch must be 'resize' or 'reject', got {on_size_mismatch!r}")
        self.on_size_mismatch = on_size_mismatch
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise RecordingError(f"cannot record {self.path}: fps must be positive, got {fps}")
        if min(self.frame_size) <= 0:
            raise RecordingError(f"cannot record {self.path}: bad frame size {self.frame_size}")
        api = check_video_target(self.path)
        suffix = self.path.suffix.lower()
        fourcc = cv2.VideoWriter_fourcc(*"MJPG")
        self._writer = cv2.VideoWriter(str(self.path), api, fourcc, self.fps, self.frame_size)
        if not self._writer.isOpened():
            self._writer.release()
            raise RecordingError(f"cannot record {self.path}: OpenCV could not open a video writer for it")
        if api == cv2.CAP_OPENCV_MJPEG:
            self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        self.frames_written = 0
        self.frames_resized = 0
        self.frames_kept: int | None = None  # set when writing failed: frames the file really holds
        self._buffer_bytes = WRITER_BUFFER_BYTES[suffix]
        self._size = self.path.stat().st_size if self.path.exists() else 0
        self._since_growth = 0  # frames written since the file last grew
        self._least_frame_bytes = 600 + self.frame_size[0] * self.frame_size[1] // 1024
        self._closed = False

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames must be uint8, got {image.dtype}")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        elif image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be BGR (H, W, 3), got shape {image.shape}")
        size = (image.shape[1], image.shape[0])
        if size != self.frame_size:
            message = (
                f"{self.path}: frame is {size[0]}x{size[1]} but the recording is "
                f"{self.frame_size[0]}x{self.frame_size[1]}"
            )
            if self.on_size_mismatch == "reject":
                raise ValueError(message)
            if self.frames_resized == 0:
                log.warning("%s; letterboxing such frames to fit", message)
            self.frames_resized += 1
            image = _letterbox(image, self.frame_size)
        return image

    def write(self, image: np.ndarray) -> None:
        """Append a frame; RecordingError (the recording is then closed) when the file stops growing."""
        if self._closed:
            raise RecordingError(f"{self.path}: recording already closed")
        self._writer.write(self._prepare(np.asarray(image)))
        self.frames_written += 1
        self._check_growth()

    def _check_growth(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError as error:
            self._fail(f"the file cannot be read back ({error.strerror})")
        if size > self._size:
            self._size, self._since_growth = size, 0
            return
        self._since_growth += 1
        if (
            self._since_growth * self._least_frame_bytes > 2 * self._buffer_bytes
            or shutil.disk_usage(self.path.parent).free < self._buffer_bytes  # the next block would not fit
        ):
            self._fail(_no_room_reason(self.path))

    def _count_kept(self) -> int:
        return complete_avi_frames(self.path) if self.path.suffix.lower() == ".avi" else readable_frames(self.path)

    def _fail(self, reason: str) -> None:
        self._release()
        self.frames_kept = self._count_kept()
        raise self._lost_frames_error(reason)

    def _lost_frames_error(self, reason: str) -> RecordingError:
        return RecordingError(
            f"recording to {self.path} stopped: {reason}; the file keeps the first {self.frames_kept} "
            f"of {self.frames_written} frames, which play"
        )

    def _release(self) -> None:
        self._closed = True
        self._writer.release()

    def close(self) -> None:
        """Finish the file; RecordingError when it turns out to miss frames (see ``frames_kept``).

        An .avi is always checked (its chunk headers); an .mkv is read back when its last
        block may not have been written (the file did not grow, or the drive is nearly full).
        """
        if self._closed:
            return
        self._release()
        if not self.frames_written:
            return
        doubtful = (
            self.path.suffix.lower() == ".avi"
            or self._since_growth and self.path.stat().st_size <= self._size
            or shutil.disk_usage(self.path.parent).free < self._buffer_bytes
        )
        if doubtful:
            kept = self._count_kept()
            if kept < self.frames_written:
                self.frames_kept = kept
                raise self._lost_frames_error(_no_room_reason(self.path))

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class LandmarkCsvWriter:
    """One row per face per frame: ``frame,time,face_id,x0,y0,...,x67,y67,c0,...,c67``, then
    ``GEOMETRY_COLUMNS`` (head pose, eye and mouth openness, blinks; empty cells where not computed)
    and ``v0 ... v67`` (1 where the model sees the point, 0 where it says it is hidden; empty for
    models that do not tell, every network but sgfa).

    ``time`` is the frame's timestamp in seconds, ``face_id`` the track id, points
    in 0-based frame pixels. Writes ``FaceResult.landmarks`` (what the user sees),
    or ``raw_landmarks`` with ``raw=True``. Flushed after every frame.
    """

    def __init__(self, path: str | Path, *, raw: bool = False) -> None:
        self.path = Path(path)
        self.raw = raw
        reason = why_not_writable(self.path.parent)
        if reason:
            raise RecordingError(f"cannot write {self.path}: {reason}")
        try:
            self._file = self.path.open("w", newline="", encoding="utf-8")
        except OSError as error:
            raise RecordingError(f"cannot write {self.path}: {error.strerror}") from None
        self._csv = csv.writer(self._file, lineterminator="\n")
        self.rows_written = 0
        self._closed = False
        self._failed = False
        self._guarded(lambda: self._csv.writerow(CSV_HEADER))

    def write(self, frame_result: FrameResult) -> None:
        if self._closed:
            raise RecordingError(f"{self.path}: landmark file already closed")
        rows = [format_csv_row(values) for values in landmark_rows(frame_result, raw=self.raw)]
        self._guarded(lambda: self._csv.writerows(rows))
        self.rows_written += len(rows)

    def _guarded(self, write) -> None:
        """Write and flush; an OSError (disk full, ...) closes the file and becomes a RecordingError naming it."""
        try:
            write()
            self._file.flush()
        except OSError as error:
            self._failed = True
            self.close()
            reason = _no_room_reason(self.path, error.strerror or str(error))
            raise RecordingError(
                f"writing {self.path} failed: {reason}; it keeps the rows of the frames before"
            ) from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._file.close()
            except OSError as error:  # the unwritten tail of a failed write is already reported
                if not self._failed:
                    raise RecordingError(f"finishing {self.path} failed: {error.strerror or error}") from None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> LandmarkCsvWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass(frozen=True)
class LandmarkTable:
    """The rows of a landmark CSV as arrays (row ``i`` of each belongs together)."""

    frame: np.ndarray  # (N,) int
    time: np.ndarray  # (N,) float seconds
    face_id: np.ndarray  # (N,) int
    points: np.ndarray  # (N, 68, 2)
    confidence: np.ndarray  # (N, 68)
    incomplete_last_row: bool = False  # a cut-off final line (crash while writing) was skipped
    geometry: np.ndarray | None = None  # (N, len(GEOMETRY_COLUMNS)), NaN for empty cells
    visible: np.ndarray | None = None  # (N, 68): 1 seen, 0 hidden, NaN where the model does not tell

    def __len__(self) -> int:
        return len(self.frame)

    def rows_of_frame(self, index: int) -> np.ndarray:
        """Row numbers belonging to frame ``index``."""
        return np.flatnonzero(self.frame == index)


def read_landmark_csv(path: str | Path) -> LandmarkTable:
    """Read a file written by LandmarkCsvWriter. ValueError naming the line for malformed rows."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    header = lines[0].split(",") if lines else []
    if header not in (CSV_HEADER, CSV_HEADER_V1):
        raise ValueError(f"{path}: not a landmark CSV (the first line must be the header frame,time,face_id,x0,...)")
    width = len(header)
    rows, incomplete = [], False
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        is_last = number == len(lines)
        try:
            if len(fields) != width:
                raise ValueError(f"{len(fields)} fields instead of {width}")
            rows.append((int(fields[0]), float(fields[1]), int(fields[2]), [float(v) if v else math.nan for v in fields[3:]]))
        except ValueError as error:
            if is_last and not text.endswith("\n"):
                incomplete = True
                log.warning("%s: last line is cut off (written when the process died?), skipped", path)
                break
            raise ValueError(f"{path}, line {number}: malformed row ({error})") from None
    values = np.array([r[3] for r in rows], dtype=np.float64).reshape(len(rows), width - 3)
    return LandmarkTable(
        frame=np.array([r[0] for r in rows], dtype=np.int64),
        time=np.array([r[1] for r in rows], dtype=np.float64),
        face_id=np.array([r[2] for r in rows], dtype=np.int64),
        points=values[:, : 2 * NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS, 2),
        confidence=values[:, 2 * NUM_LANDMARKS : 3 * NUM_LANDMARKS],
        incomplete_last_row=incomplete,
        geometry=values[:, 3 * NUM_LANDMARKS : 3 * NUM_LANDMARKS + len(GEOMETRY_COLUMNS)],
        visible=values[:, 3 * NUM_LANDMARKS + len(GEOMETRY_COLUMNS) :] if header == CSV_HEADER
        else np.full((len(rows), NUM_LANDMARKS), np.nan),
    )

"""The tracker as a Python library: ``from app.api import Tracker``.

``Tracker`` wraps the headless pipeline that ``python -m app track`` and the window drive
(``app.pipeline``); results are the pipeline's own data classes (``app.types``):

    with Tracker(model="r18_ffld") as tracker:
        faces = tracker.track_image(cv2.imread("face.jpg"))         # list[FaceResult]
        for result in tracker.track_video("clip.mp4"):               # FrameResult per frame
            print(result.frame.timestamp, [f.landmarks.points.shape for f in result.faces])
        table = tracker.to_dataframe()                               # the landmark CSV's columns

Threads: a ``Tracker`` holds per-face tracking state, so it runs one call at a time. A call
made while another is running on the same object (from another thread, or while a
``track_video`` iterator is neither exhausted nor closed) raises ``TrackerBusy``; it never mixes
two streams. ``close()`` may be called from any thread: it waits for the frame being processed.
Separate ``Tracker`` objects share nothing and may run in parallel threads (each has its own
ONNX Runtime sessions; on a few shared cores, ``FACETRACK_ORT_THREADS=1`` keeps each session to
one thread).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from app.pipeline import Pipeline, PipelineOptions, PipelineSpec, build_pipeline
from app.recording import CSV_HEADER, GEOMETRY_COLUMNS, VISIBILITY_COLUMNS, landmark_rows
from app.sources import frames_to_end, open_source
from app.sources.base import read_image
from app.types import FaceResult, Frame, FrameResult
from models.detectors import DEFAULT_DETECTOR

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

__all__ = ["Tracker", "TrackerBusy", "VideoInput", "results_to_dataframe", "results_to_parquet"]

# What track_video accepts: a video file, image folder or 300-VW clip path, a camera index, or frames:
# ``Frame`` objects, ``(timestamp_seconds, image)`` pairs, or bare BGR images when ``fps`` is given.
VideoInput = Union[str, os.PathLike, int, Iterable[Any]]

_INT_COLUMNS = ("frame", "face_id")  # never empty
_NULLABLE_INT_COLUMNS = ("eyes_closed", "blinks", *VISIBILITY_COLUMNS)  # empty where not computed / not told
assert set(_NULLABLE_INT_COLUMNS) <= set(GEOMETRY_COLUMNS) | set(VISIBILITY_COLUMNS)


class TrackerBusy(RuntimeError):
    """A call on a Tracker that is already running one (another thread, or an unfinished track_video)."""


class Tracker:
    """68-point face tracking on images, videos and frame streams.

    ``model``: a landmark model name (``r18_ffld``, ``mnv2_sdd``, ``sgfa``, ``mediapipe68``, ``NAME+flip``,
    ``NAME@fp32``) or a manifest path; None: the default (the first installed network, as ``track``).
    ``detector``: ``auto`` (default), ``blazeface``, ``mtcnn``, ``retinaface`` or ``yunet`` (the last two
    need ``detector_model``, an ONNX file). ``backend``: ``auto``, ``ort-cpu``, ``ort-cuda``, ``tensorrt``,
    ``openvino``; ``precision``: ``auto``, ``fp32``, ``fp16``, ``int8`` (as the command line's options).
    ``options``: smoothing, re-detection, geometry (``app.pipeline.PipelineOptions``; the CLI's defaults
    when None). ``on_message`` gets the back-end's notices (a fallback taken, ...); without it they
    are logged. ``keep_rows``: keep every face's table row for ``to_dataframe`` / ``to_parquet``
    (about 2.8 KB per face per frame); False for long streams.
    """

    def __init__(
        self,
        model: str | None = None,
        detector: str = DEFAULT_DETECTOR,
        backend: str = "auto",
        precision: str = "auto",
        *,
        detector_model: str | os.PathLike | None = None,
        options: PipelineOptions | None = None,
        on_message: Callable[[str], None] | None = None,
        keep_rows: bool = True,
    ) -> None:
        spec = PipelineSpec(model=model, backend=backend, precision=precision, detector=detector,
                            detector_model=None if detector_model is None else str(detector_model), options=options)
        self._pipeline: Pipeline | None = build_pipeline(spec, on_message=on_message)
        self.model_name: str = self._pipeline.model.name
        self.detector_name: str = self._pipeline.detector.name
        self.keep_rows = keep_rows
        self.problems: list[str] = []  # what was wrong with the last video's input (a truncated file, skipped images)
        self._rows: list[np.ndarray] = []
        self._lock = threading.Lock()  # held while a frame is processed and while closing
        self._busy = False

    # ------------------------------------------------------------------ tracking

    def track_image(self, image: np.ndarray | str | os.PathLike) -> list[FaceResult]:
        """The faces on one still (an (H, W, 3) uint8 BGR array, as ``cv2.imread`` gives, or an image file).

        Every call starts afresh (no tracks carried over); the still is frame 0 at time 0 in the table."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image), 0)
        with self._call():
            self._reset()
            try:
                return list(self._process(Frame(image=image, index=0, timestamp=0.0)).faces)
            finally:
                self._reset()

    def track_video(self, source: VideoInput, *, fps: float | None = None,
                    max_frames: int | None = None) -> Iterator[FrameResult]:
        """Track ``source`` frame by frame; yields one ``FrameResult`` per frame, faces keep their ``track_id``.

        ``source``: a video file, an image folder or a 300-VW clip (as ``python -m app track``), a camera
        index, or an iterable of frames: ``app.types.Frame``, ``(timestamp_seconds, image)`` pairs, or bare
        BGR images with ``fps`` given (frame i at i / fps). Timestamps are the source's (the video's own
        clock), never made up: bare images without ``fps`` raise ValueError. ``max_frames`` stops early.
        Input problems that do not stop the run (a truncated video, skipped images) are logged and kept
        in ``problems``. The source is closed when the iterator ends or is closed."""
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, not {max_frames}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive, not {fps}")
        return self._track_video(source, fps, max_frames)

    def _track_video(self, source: VideoInput, fps: float | None, max_frames: int | None) -> Iterator[FrameResult]:
        with self._call():
            self._reset()
            self.problems = []
            opened = None
            if isinstance(source, (str, os.PathLike, int)):
                opened = open_source(source)
                frames: Iterable[Frame] = frames_to_end(opened)
            else:
                frames = _frames_of(source, fps)
            try:
                for count, frame in enumerate(frames, start=1):
                    yield self._process(frame)
                    if max_frames is not None and count >= max_frames:
                        break
            finally:
                if opened is not None:
                    self.problems = list(opened.problems)
                    opened.close()
                    for problem in self.problems:
                        log.warning("%s", problem)
                self._reset()

    def _process(self, frame: Frame) -> FrameResult:
        with self._lock:
            if self._pipeline is None:
                raise RuntimeError("the Tracker is closed")
            result = self._pipeline.process(frame)
        if self.keep_rows and result.faces:
            self._rows.append(np.array(landmark_rows(result), dtype=np.float64))  # None -> NaN
        return result

    def _reset(self) -> None:
        """Forget every track (a new source); nothing to do once closed."""
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.reset()

    @contextmanager
    def _call(self) -> Iterator[None]:
        """One tracking call at a time; the rows of the previous call are dropped."""
        with self._lock:
            if self._pipeline is None:
                raise RuntimeError("the Tracker is closed")
            if self._busy:
                raise TrackerBusy("this Tracker is running another call (another thread, or a track_video "
                                  "iterator not yet exhausted or closed); use one Tracker per stream")
            self._busy = True
            self._rows = []
        try:
            yield
        finally:
            with self._lock:
                self._busy = False

    # ------------------------------------------------------------------ tables

    def to_dataframe(self) -> "pandas.DataFrame":
        """The last call's faces as a pandas DataFrame: one row per face per frame, the landmark CSV's
        columns (``app.recording.CSV_HEADER``, README "Landmark CSV") at full precision; NaN / <NA>
        where the CSV cell is empty. Needs pandas (``pip install pandas``)."""
        return _dataframe(self._table())

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write the last call's table (``to_dataframe``'s columns; null where the CSV is empty) to
        ``path`` as Parquet. Needs pyarrow (``pip install pyarrow``). Returns the path."""
        return _parquet(self._table(), Path(path))

    def _table(self) -> np.ndarray:
        if not self.keep_rows:
            raise RuntimeError("this Tracker keeps no rows (keep_rows=False)")
        return np.concatenate(self._rows) if self._rows else np.empty((0, len(CSV_HEADER)))

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Release the detector and the landmark model (their ONNX Runtime sessions). Idempotent."""
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    @property
    def closed(self) -> bool:
        return self._pipeline is None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Tracker(model={self.model_name!r}, detector={self.detector_name!r}, {state})"


def _frames_of(items: Iterable[Any], fps: float | None) -> Iterator[Frame]:
    """``Frame`` objects as they are; ``(t, image)`` pairs and bare images (with ``fps``) made into Frames."""
    for index, item in enumerate(items):
        if isinstance(item, Frame):
            yield item
        elif isinstance(item, tuple) and len(item) == 2:
            timestamp, image = item
            yield Frame(image=np.asarray(image), index=index, timestamp=float(timestamp))
        elif isinstance(item, np.ndarray):
            if fps is None:
                raise ValueError("bare images have no timestamps: give fps=, or (timestamp_seconds, image) pairs, "
                                 "or app.types.Frame objects")
            yield Frame(image=item, index=index, timestamp=index / fps)
        else:
            raise TypeError(f"frame {index}: expected a Frame, a (timestamp, image) pair or an image, "
                            f"not {type(item).__name__}")


def _rows_of(results: Iterable[FrameResult], raw: bool) -> np.ndarray:
    rows = [np.array(landmark_rows(result, raw=raw), dtype=np.float64) for result in results if result.faces]
    return np.concatenate(rows) if rows else np.empty((0, len(CSV_HEADER)))


def results_to_dataframe(results: Iterable[FrameResult], *, raw: bool = False) -> "pandas.DataFrame":
    """``FrameResult``s (from ``track_video``, or ``Pipeline.process``) as ``Tracker.to_dataframe``'s table;
    ``raw=True`` takes the unsmoothed landmarks (as ``LandmarkCsvWriter(raw=True)``)."""
    return _dataframe(_rows_of(results, raw))


def results_to_parquet(results: Iterable[FrameResult], path: str | os.PathLike, *, raw: bool = False) -> Path:
    """``FrameResult``s written as ``Tracker.to_parquet`` writes its table."""
    return _parquet(_rows_of(results, raw), Path(path))


def _dataframe(table: np.ndarray) -> "pandas.DataFrame":
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_dataframe needs pandas, which is not installed: pip install pandas "
                          "(or write the table with to_parquet, which needs pyarrow only)") from None
    columns: dict[str, Any] = {}
    for k, name in enumerate(CSV_HEADER):
        values = table[:, k]
        if name in _INT_COLUMNS:
            columns[name] = values.astype(np.int64)
        elif name in _NULLABLE_INT_COLUMNS:
            missing = np.isnan(values)
            columns[name] = pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)
        else:
            columns[name] = values
    return pd.DataFrame(columns)


def _parquet(table: np.ndarray, path: Path) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("to_parquet needs pyarrow, which is not installed: pip install pyarrow") from None
    arrays = []
    for k, name in enumerate(CSV_HEADER):
        values, missing = table[:, k], np.isnan(table[:, k])
        if name in _INT_COLUMNS:
            arrays.append(pa.array(values.astype(np.int64)))
        elif name in _NULLABLE_INT_COLUMNS:
            arrays.append(pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing))
        else:
            arrays.append(pa.array(values, mask=missing))
    pq.write_table(pa.Table.from_arrays(arrays, names=list(CSV_HEADER)), path)
    return path

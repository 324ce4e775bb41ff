"""One tracking session: frames in, annotated frames out, optionally recorded.

``TrackingSession.handle`` is the per-frame loop body shared by the ``track`` and
``bench`` commands and by the Qt window's worker thread: run the pipeline, draw the
overlay (timed as the *render* stage), update the moving statistics, and append to
the recording when one is running. A recording that fails (disk full, ...) stops, and
the frame comes back with its ``recording_error``; ``recorded_frames`` then counts the
frames the files really hold. With every overlay layer off (``track`` without
``--out``) the frame is passed through undrawn and uncopied.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from app.overlay import OverlayOptions, draw_frame_result
from app.pipeline import Pipeline
from app.sources.base import DEFAULT_FPS
from app.recording import LandmarkCsvWriter, RecordingError, VideoRecorder, check_video_target
from app.stats import LatencyStats, StatsSummary
from app.types import Frame, FrameResult


@dataclass(frozen=True)
class RenderedFrame:
    result: FrameResult
    image: np.ndarray  # the annotated frame, BGR
    stats: StatsSummary
    recording_error: RecordingError | None = None  # recording stopped on this frame (disk full, ...)


@dataclass(frozen=True)
class RecordingTargets:
    video: Path | None
    landmarks: Path | None
    fps: float


class TrackingSession:
    def __init__(self, pipeline: Pipeline, overlay: OverlayOptions | None = None, stats_window: int | None = 60):
        self.pipeline = pipeline
        self.overlay = overlay or OverlayOptions()
        self.stats = LatencyStats(stats_window)
        self._targets: RecordingTargets | None = None
        self._video: VideoRecorder | None = None
        self._csv: LandmarkCsvWriter | None = None
        self.recorded_frames = 0

    @property
    def recording(self) -> bool:
        return self._targets is not None

    def handle(self, frame: Frame) -> RenderedFrame:
        result = self.pipeline.process(frame)
        summary = self.stats.summary()
        start = time.perf_counter()
        if any(astuple(self.overlay)):
            image = draw_frame_result(frame.image, result, self.overlay, stats=summary)
        else:
            image = frame.image
        result.timings.render = (time.perf_counter() - start) * 1000.0
        self.stats.add(result.timings, time.perf_counter())
        recording_error = None
        if self._targets is not None:
            try:
                self._record(image, result)
            except RecordingError as error:  # the recording has stopped; tracking goes on
                recording_error = error
        return RenderedFrame(result=result, image=image, stats=summary, recording_error=recording_error)

    def start_recording(self, video: str | Path | None, landmarks: str | Path | None = None, fps: float = 30.0) -> None:
        """Record from the next frame on: the annotated video and/or the landmark CSV.

        Both targets are checked before either file is made (RecordingError naming the problem).
        """
        self.stop_recording()
        targets = RecordingTargets(
            Path(video) if video else None, Path(landmarks) if landmarks else None, fps if fps and fps > 0 else DEFAULT_FPS
        )
        if targets.video is not None:
            check_video_target(targets.video)
        self.recorded_frames = 0
        if targets.landmarks is not None:
            self._csv = LandmarkCsvWriter(targets.landmarks)
        self._targets = targets

    def stop_recording(self) -> None:
        """Finish the files. Safe to call when not recording.

        RecordingError when a file turned out to miss frames; ``recorded_frames`` then says
        how many the files really hold.
        """
        video, csv_writer = self._video, self._csv
        self._video = self._csv = self._targets = None
        errors = []
        for writer in (video, csv_writer):
            if writer is None:
                continue
            try:
                writer.close()
            except RecordingError as error:
                errors.append(error)
        if video is not None and video.frames_kept is not None:
            self.recorded_frames = min(self.recorded_frames, video.frames_kept)
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.stop_recording()
        self.pipeline.close()

    def __enter__(self) -> "TrackingSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, image: np.ndarray, result: FrameResult) -> None:
        """Append one frame. On a RecordingError (disk full, ...) the recording stops and the error goes on."""
        targets = self._targets
        try:
            if targets.video is not None and self._video is None:
                h, w = image.shape[:2]
                try:
                    self._video = VideoRecorder(targets.video, targets.fps, (w, h))
                except RecordingError:
                    self._remove_empty_csv()
                    raise
            if self._video is not None:
                self._video.write(image)
            if self._csv is not None:
                self._csv.write(result)
        except RecordingError:
            with contextlib.suppress(RecordingError):  # the first error is the one to report
                self.stop_recording()
            raise
        self.recorded_frames += 1

    def _remove_empty_csv(self) -> None:
        """The video could not start: leave no header-only landmark file behind."""
        if self._csv is not None and self._csv.rows_written == 0:
            self._csv.close()
            self._csv.path.unlink(missing_ok=True)
            self._csv = None

"""One tracking session: frames in, annotated frames out, optionally recorded.

``TrackingSession.handle`` is the per-frame loop body shared by the ``track`` and
``bench`` commands and by the Qt window's worker thread: run the pipeline, draw the
overlay (timed as the *render* stage), update the moving statistics, and append to
the recording when one is running. With every overlay layer off (``track`` without
``--out``) the frame is passed through undrawn and uncopied.
"""
from __future__ import annotations

import time
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from app.overlay import OverlayOptions, draw_frame_result
from app.pipeline import Pipeline
from app.recording import LandmarkCsvWriter, VideoRecorder
from app.stats import LatencyStats, StatsSummary
from app.types import Frame, FrameResult


@dataclass(frozen=True)
class RenderedFrame:
    result: FrameResult
    image: np.ndarray  # the annotated frame, BGR
    stats: StatsSummary


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
        if self._targets is not None:
            self._record(image, result)
        return RenderedFrame(result=result, image=image, stats=summary)

    def start_recording(self, video: str | Path | None, landmarks: str | Path | None = None, fps: float = 30.0) -> None:
        """Record from the next frame on: the annotated video and/or the landmark CSV."""
        self.stop_recording()
        self._targets = RecordingTargets(
            Path(video) if video else None, Path(landmarks) if landmarks else None, fps if fps > 0 else 30.0
        )
        self.recorded_frames = 0
        if self._targets.landmarks is not None:
            self._csv = LandmarkCsvWriter(self._targets.landmarks)

    def stop_recording(self) -> None:
        """Finish the files cleanly. Safe to call when not recording."""
        if self._video is not None:
            self._video.close()
        if self._csv is not None:
            self._csv.close()
        self._video = self._csv = self._targets = None

    def close(self) -> None:
        self.stop_recording()
        self.pipeline.close()

    def __enter__(self) -> "TrackingSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, image: np.ndarray, result: FrameResult) -> None:
        targets = self._targets
        if targets.video is not None and self._video is None:
            h, w = image.shape[:2]
            self._video = VideoRecorder(targets.video, targets.fps, (w, h))
        if self._video is not None:
            self._video.write(image)
        if self._csv is not None:
            self._csv.write(result)
        self.recorded_frames += 1

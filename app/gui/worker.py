"""The worker thread: owns the frame source and the ``TrackingSession``; the window only paints.

Requests from the GUI thread (open, play, step, seek, switch model / back-end /
detector, options, overlay, record, snapshot; one type each in ``app/gui/requests.py``)
are queued under a lock and applied between frames; of several pending seeks only the
latest is kept. Results leave as
signals carrying immutable values (a ``FramePacket`` with an owned QImage copy).

* Files and 300-VW clips are read frame by frame: none is skipped, whatever the
  model costs; they play at the file's rate, or as fast as possible (``max_speed``).
* Cameras are read by a ``LatestFrameGrabber``: stale frames are dropped.
* At most ``max_in_flight`` frames wait for the window (it calls ``frame_shown``),
  so latency stays bounded when painting is slower than processing.
* Models and detectors load on a separate loader thread while the current ones
  keep running; the swap happens between two frames. Loaded models are cached per
  (name, back-end), so switching back is immediate.
* One stop protocol: ``stop()`` sets the flag, wakes the thread and waits with a
  timeout; the thread finishes any recording and closes everything on its way out.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QThread, Signal

from app.gui import requests as rq
from app.gui.capture import LatestFrameGrabber
from app.gui.frames import best_match_nme, open_frame_source, to_qimage  # noqa: F401 (best_match_nme: tests)
from app.gui.loading import Load, ModelLoading, close_late_load
from app.gui.model_cache import ModelCache
from app.gui.values import (
    ClipAccuracy,
    FramePacket,
    RecordingInfo,
    SourceInfo,
    SourceSpec,
)
from models.metrics import count_misses, mean_nme
from app.overlay import OverlayOptions
from app.pipeline import DEFAULT_DETECTOR, Pipeline, PipelineOptions
from app.session import TrackingSession
from app.sources import FrameSource, SourceError, TruncatedVideoError
from app.sources.base import DEFAULT_FPS
from app.types import Frame

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2  # frames emitted but not yet shown by the window
IDLE_WAIT_S = 0.5  # longest sleep when nothing is due (everything that matters wakes the thread)
STATS_WINDOW = 60


class TrackingWorker(ModelLoading, QThread):
    frame_ready = Signal(object)  # FramePacket
    environment_ready = Signal(object)  # Environment
    source_opened = Signal(object)  # SourceInfo
    source_failed = Signal(object, str)  # SourceSpec, message
    source_lost = Signal(str)  # the open source stopped working (camera unplugged)
    playing_changed = Signal(bool)
    model_loading = Signal(str, str)  # name, requested back-end
    model_progress = Signal(float)  # 0..1, or -1 while the fraction is unknown
    model_ready = Signal(object)  # ModelInfo
    model_failed = Signal(str, str, str)  # name, requested back-end, message
    detector_ready = Signal(str, str)  # name, model file
    detector_failed = Signal(str, str, str)  # name, model file, message
    recording_changed = Signal(object)  # RecordingInfo when started, None when stopped
    snapshot_saved = Signal(str)
    message = Signal(str, str)  # level ("info", "warning" or "error"), text

    def __init__(
        self,
        model: str,
        backend: str = "auto",
        detector: str = DEFAULT_DETECTOR,
        detector_file: str | None = None,
        options: PipelineOptions | None = None,
        overlay: OverlayOptions | None = None,
        max_speed: bool = False,
        assets_dir: str | Path | None = None,
        max_in_flight: int | None = MAX_IN_FLIGHT,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("TrackingWorker")
        self._cond = threading.Condition()
        self._requests: list[rq.Request] = []
        self._wake_flag = False
        self._stopping = False
        self._in_flight = 0
        self._display_area: tuple[int, int] | None = None
        self.max_in_flight = max_in_flight
        self.assets_dir = assets_dir

        # Everything below is touched by the worker thread only (after start()).
        self._wanted_model = (model, backend)
        self._detector_choice = (detector, detector_file or "")
        self._options = options or PipelineOptions()
        self._overlay = overlay or OverlayOptions()
        self._max_speed = max_speed
        self._loader: ThreadPoolExecutor | None = None
        self._model_load: Load | None = None
        self._detector_load: Load | None = None
        self._cache = ModelCache()
        self._switch_requested = 0.0
        self._model_key: tuple[str, str] | None = None
        self._failed_models: set[tuple[str, str]] = set()
        self._available: tuple[str, ...] = ()
        self._detector = None
        self._session: TrackingSession | None = None
        self._source: FrameSource | None = None
        self._spec: SourceSpec | None = None
        self._grabber: LatestFrameGrabber | None = None
        self._playing = False
        self._show_next = False  # process one frame even when paused (after open, step, seek)
        self._due = 0.0  # perf_counter time the next file frame is due when pacing
        self._errors: dict[int, float] = {}
        self._last_image: np.ndarray | None = None
        self._switch_started: float | None = None
        self._recording: RecordingInfo | None = None
        self._problems_reported = 0  # of the open source's problems, already in the status bar

    # -- requests (any thread) ------------------------------------------------
    def _request(self, request: rq.Request) -> None:
        with self._cond:
            if isinstance(request, rq.Seek):  # the latest seek wins
                self._requests = [r for r in self._requests if not isinstance(r, rq.Seek)]
            self._requests.append(request)
            self._wake_flag = True
            self._cond.notify()

    def _wake(self) -> None:
        with self._cond:
            self._wake_flag = True
            self._cond.notify()

    def open_source(self, spec: SourceSpec, play: bool = True) -> None:
        self._request(rq.OpenSource(spec, play))

    def play(self) -> None:
        self._request(rq.SetPlaying(True))

    def pause(self) -> None:
        self._request(rq.SetPlaying(False))

    def toggle_play(self) -> None:
        self._request(rq.TogglePlay())

    def step(self, delta: int) -> None:
        """Pause and show the next (+1) or previous (-1) frame."""
        self._request(rq.Step(int(delta)))

    def seek(self, index: int) -> None:
        self._request(rq.Seek(int(index)))

    def set_model(self, name: str, backend: str = "auto") -> None:
        self._request(rq.SetModel(name, backend))

    def set_detector(self, name: str, model_file: str | None = None) -> None:
        self._request(rq.SetDetector(name, model_file or ""))

    def set_options(self, options: PipelineOptions) -> None:
        self._request(rq.SetOptions(options))

    def set_overlay(self, overlay: OverlayOptions) -> None:
        self._request(rq.SetOverlay(overlay))

    def set_max_speed(self, enabled: bool) -> None:
        self._request(rq.SetMaxSpeed(bool(enabled)))

    def start_recording(self, video: str | Path, landmarks: str | Path) -> None:
        self._request(rq.StartRecording(str(video), str(landmarks)))

    def stop_recording(self) -> None:
        self._request(rq.StopRecording())

    def snapshot(self, path: str | Path) -> None:
        self._request(rq.Snapshot(str(path)))

    def refresh_environment(self) -> None:
        self._request(rq.RefreshEnvironment())

    def set_display_area(self, width: int, height: int) -> None:
        """The view's size in device pixels: frames are scaled to fit it in this thread."""
        with self._cond:
            self._display_area = (int(width), int(height)) if width > 0 and height > 0 else None

    def frame_shown(self) -> None:
        """The window took a frame: room for the next one."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._wake_flag = True
            self._cond.notify()

    def stop(self, timeout_ms: int = 10000) -> bool:
        """Ask the thread to finish (closing recordings cleanly) and wait for it. True when it ended."""
        with self._cond:
            self._stopping = True
            self._wake_flag = True
            self._cond.notify()
        if not self.isRunning():
            return True
        finished = self.wait(timeout_ms)
        if not finished:
            log.error("the tracking worker did not stop within %d ms", timeout_ms)
        return finished

    # -- the loop (worker thread) ---------------------------------------------
    def run(self) -> None:
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        try:
            self._probe_environment()
            self._start_detector_load(*self._detector_choice)
            self._update_model_load()
            while True:
                with self._cond:
                    if self._stopping:
                        break
                    requests, self._requests = self._requests, []
                for request in requests:
                    self._guarded(self._apply, request)
                self._guarded(self._collect_loads)
                delay = self._next_frame_delay()
                if delay == 0.0:
                    self._guarded(self._process_next)
                    continue
                with self._cond:
                    if not self._wake_flag and not self._requests and not self._stopping:
                        self._cond.wait(IDLE_WAIT_S if delay is None else min(delay, IDLE_WAIT_S))
                    self._wake_flag = False
        except Exception as error:  # the thread must never die silently: say so, then clean up
            log.exception("tracking worker failed")
            self.message.emit("error", f"Tracking stopped after an unexpected error: {error}")
        finally:
            self._shutdown()

    def _guarded(self, step, *args) -> None:
        """Run one step of the loop; an unexpected error pauses playback and is reported, the thread goes on."""
        try:
            step(*args)
        except Exception as error:
            log.exception("tracking worker step %s failed", getattr(step, "__name__", step))
            self.message.emit("error", f"{type(error).__name__}: {error} (playback paused)")
            self._show_next = False
            self._set_playing(False)

    def _shutdown(self) -> None:
        if self._session is not None:
            self._finish_recording()
        self._close_source()
        loader = self._loader
        for load in (self._model_load, self._detector_load):
            if load is not None:
                load.future.add_done_callback(close_late_load)
        if loader is not None:
            loader.shutdown(wait=False, cancel_futures=True)
        self._cache.close_all()
        if self._detector is not None:
            self._detector.close()
        self._session = None

    def _apply(self, request: rq.Request) -> None:
        match request:
            case rq.OpenSource(spec, play):
                self._open(spec, play)
            case rq.SetPlaying(playing):
                self._set_playing(playing)
            case rq.TogglePlay():
                self._set_playing(not self._playing)
            case rq.Step(delta):
                self._step(delta)
            case rq.Seek(index):
                self._seek(index)
            case rq.SetModel(name, backend):
                self._wanted_model = (name, backend)
                self._switch_requested = time.perf_counter()
                self._update_model_load()
            case rq.SetDetector(name, model_file):
                self._start_detector_load(name, model_file)
            case rq.SetOptions(options):
                self._options = options
                if self._session is not None:
                    self._session.pipeline.set_options(options)
            case rq.SetOverlay(overlay):
                self._overlay = overlay
                if self._session is not None:
                    self._session.overlay = overlay
            case rq.SetMaxSpeed(enabled):
                self._max_speed = enabled
            case rq.StartRecording(video, landmarks):
                self._start_recording(video, landmarks)
            case rq.StopRecording():
                self._finish_recording()
            case rq.Snapshot(path):
                self._snapshot(path)
            case rq.RefreshEnvironment():
                self._probe_environment()
            case _:
                raise TypeError(f"unknown worker request {request!r}")

    # -- environment ----------------------------------------------------------
    # -- sources --------------------------------------------------------------
    def _open(self, spec: SourceSpec, play: bool) -> None:
        try:
            source = open_frame_source(spec)
        except (SourceError, OSError) as error:
            self.source_failed.emit(spec, str(error))
            self.message.emit("error", str(error))
            return
        if self._recording is not None:
            self._finish_recording()
        self._close_source()
        self._source, self._spec = source, spec
        if source.is_live:
            self._grabber = LatestFrameGrabber(source, self._wake)
        if self._session is not None:
            self._session.pipeline.reset()
            self._session.stats.reset()
        self._errors = {}
        self._last_image = None
        self._problems_reported = len(source.problems)
        size = getattr(source, "frame_size", None) or (0, 0)
        self.source_opened.emit(
            SourceInfo(spec, source.frame_count, source.fps, size[0], size[1], has_ground_truth=spec.kind == "clip")
        )
        for problem in getattr(source, "annotation_problems", [])[:1]:
            count = len(source.annotation_problems)
            more = f" (and {count - 1} more)" if count > 1 else ""
            self.message.emit("warning", f"Ground truth: {problem}{more}")
        self._show_next = True
        self._due = time.perf_counter()
        self._set_playing(play, force_signal=True)

    def _close_source(self) -> None:
        if self._grabber is not None:
            self._grabber.stop()  # the capture thread closes the camera
        elif self._source is not None:
            self._source.close()
        self._grabber = None
        self._source = None
        self._spec = None

    def _lose_source(self, error: Exception) -> None:
        """The source failed mid-stream: finish the recording, close it, tell the window."""
        self.message.emit("error", f"{error}")
        if self._recording is not None:
            self._finish_recording()
        self._close_source()
        self._set_playing(False)
        self.source_lost.emit(str(error))

    def _set_playing(self, playing: bool, force_signal: bool = False) -> None:
        if playing and self._source is None:
            playing = False
        if playing and not self._playing and self._source is not None and not self._source.is_live:
            count = self._source.frame_count
            if count and self._source.position >= count:  # play at the end starts over
                self._source.seek(0)
                self._reset_tracking()
                self._show_next = False
        changed = playing != self._playing
        if changed and playing and self._grabber is not None:
            self._grabber.reset_dropped()  # count what is dropped while playing, not while paused
        self._playing = playing
        self._due = time.perf_counter()
        if changed or force_signal:
            self.playing_changed.emit(playing)

    def _reset_tracking(self) -> None:
        if self._session is not None:
            self._session.pipeline.reset()

    def _step(self, delta: int) -> None:
        if self._source is None:
            return
        self._set_playing(False)
        if delta >= 0 or self._source.is_live:
            self._show_next = True
            return
        current = self._source.current_index
        if current is None or current == 0:
            return
        self._source.seek(current - 1)
        self._reset_tracking()
        self._show_next = True

    def _seek(self, index: int) -> None:
        if self._source is None or not self._source.seekable:
            return
        count = self._source.frame_count
        index = max(0, min(index, count - 1)) if count else max(0, index)
        try:
            self._source.seek(index)
        except (IndexError, SourceError) as error:
            self.message.emit("warning", str(error))
            return
        self._reset_tracking()
        self._show_next = True
        self._due = time.perf_counter()

    # -- loading models and detectors ------------------------------------------
    def _build_session(self) -> None:
        if self._session is not None or self._detector is None or self._model_key is None:
            return
        model = self._cache.get(self._model_key)
        if model is None:
            return
        self._session = TrackingSession(Pipeline(self._detector, model, self._options), self._overlay, STATS_WINDOW)

    # -- frames -----------------------------------------------------------------
    def _loading_first_model(self) -> bool:
        return self._session is None and (self._model_load is not None or self._detector_load is not None)

    def _next_frame_delay(self) -> float | None:
        """0 to process a frame now, seconds to wait for the next one, None when nothing is due."""
        if self._source is None:
            return None
        with self._cond:
            if self.max_in_flight is not None and self._in_flight >= self.max_in_flight:
                return None  # frame_shown() wakes us
        if self._loading_first_model() and not self._source.is_live:
            return None  # files wait for the model: no frame goes by untracked
        if self._grabber is not None:  # live: whenever a new frame has arrived (the grabber wakes us)
            return 0.0 if (self._playing or self._show_next) and self._grabber.has_frame() else None
        if self._show_next:
            return 0.0
        if not self._playing:
            return None
        if self._max_speed:
            return 0.0
        return max(0.0, self._due - time.perf_counter()) or 0.0

    def _read(self) -> tuple[Frame, float] | None:
        if self._grabber is not None:
            return self._grabber.take()
        frame = self._source.read()
        return (frame, time.perf_counter()) if frame is not None else None

    def _process_next(self) -> None:
        try:
            item = self._read()
        except TruncatedVideoError:
            item = None  # every readable frame was shown; _end_of_source reports the problem
        except SourceError as error:
            self._show_next = False
            self._lose_source(error)
            return
        if item is None:
            if self._grabber is None:
                self._show_next = False
                self._end_of_source()
            return
        self._show_next = False
        frame, read_time = item
        if not self._source.is_live:
            period = 1.0 / (self._source.fps or DEFAULT_FPS)
            self._due = max(self._due + period, time.perf_counter() - period)
        self._emit(frame, read_time)

    def _end_of_source(self) -> None:
        """Stop at the end; a problem met on the way (a truncated file) is said with the end, as a warning."""
        problems = self._source.problems
        if len(problems) > self._problems_reported:
            self._problems_reported = len(problems)
            self.message.emit("warning", f"End of {self._source.name}: {problems[-1]}")
        elif self._playing:
            self.message.emit("info", f"End of {self._source.name}")
        if self._playing:
            self._set_playing(False)

    def _emit(self, frame: Frame, read_time: float) -> None:
        session = self._session
        accuracy = None
        switch_ms = None
        if session is not None:
            rendered = session.handle(frame)
            if rendered.recording_error is not None:  # e.g. the disk is full: the recording stopped, tracking goes on
                self._finish_recording(f"Recording stopped: {rendered.recording_error}")
            image, faces, stats = rendered.image, rendered.result.faces, rendered.stats
            if frame.ground_truth is not None:
                self._errors[frame.index] = best_match_nme(faces, frame.ground_truth)
            if self._errors or frame.ground_truth is not None:
                errors = list(self._errors.values())
                accuracy = ClipAccuracy(
                    self._errors.get(frame.index) if frame.ground_truth is not None else None,
                    mean_nme(errors),
                    len(errors),
                    count_misses(errors),
                )
            if self._switch_started is not None:
                switch_ms = (time.perf_counter() - self._switch_started) * 1000.0
                self._switch_started = None
            model, backend = self._model_key[0], session.pipeline.model.backend
            fps, latency = stats.fps, stats.total_median_ms
            stage_ms = {name: value for name, value in stats.median_ms.items() if value is not None}
            if self._recording is not None:
                self._recording = RecordingInfo(self._recording.video, self._recording.landmarks,
                                                session.recorded_frames)
        else:
            image, faces, model, backend, fps, latency, stage_ms = frame.image, (), "", "", None, None, {}
        self._last_image = image
        with self._cond:
            area = self._display_area
        packet = FramePacket(
            image=to_qimage(image, area),
            index=frame.index,
            frame_count=self._source.frame_count,
            timestamp=frame.timestamp,
            read_time=read_time,
            faces=len(faces),
            tracked=session is not None,
            model=model,
            backend=backend,
            fps=fps,
            latency_ms=latency,
            dropped_frames=self._grabber.dropped if self._grabber is not None else 0,
            accuracy=accuracy,
            recording=self._recording,
            model_switch_ms=switch_ms,
            stage_ms=stage_ms,
            geometry=tuple((face.track_id, face.geometry) for face in faces),
        )
        with self._cond:
            self._in_flight += 1
        self.frame_ready.emit(packet)

    # -- recording and snapshots -----------------------------------------------------
    def _start_recording(self, video: str, landmarks: str) -> None:
        if self._session is None:
            self.message.emit("error", "Cannot record yet: no landmark model is loaded")
            self.recording_changed.emit(None)
            return
        if self._source is None:
            self.message.emit("error", "Cannot record: no source is open")
            self.recording_changed.emit(None)
            return
        try:
            for path in (video, landmarks):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._session.start_recording(video, landmarks, fps=self._source.fps or DEFAULT_FPS)
        except (OSError, ValueError, RuntimeError) as error:
            self.message.emit("error", f"Cannot record: {error}")
            self.recording_changed.emit(None)
            return
        self._recording = RecordingInfo(video, landmarks, 0)
        self.recording_changed.emit(self._recording)

    def _finish_recording(self, problem: str | None = None) -> None:
        """Stop recording and say what was saved: one message, an error when ``problem`` or closing went wrong."""
        info = self._recording
        if self._session is not None:
            try:
                self._session.stop_recording()
            except (OSError, RuntimeError) as error:
                problem = problem or f"Finishing the recording failed: {error}"
        if info is None:
            if problem:
                self.message.emit("error", problem)
            return
        frames = self._session.recorded_frames if self._session is not None else info.frames
        self._recording = None
        self.recording_changed.emit(None)
        if problem:  # the figure is what the files really hold
            self.message.emit("error", f"{problem}. Kept {info.video} and {info.landmarks} ({frames} frames)")
        else:
            self.message.emit("info", f"Saved recording {info.video} and {info.landmarks} ({frames} frames)")

    def _snapshot(self, path: str) -> None:
        if self._last_image is None:
            self.message.emit("warning", "No frame to save yet")
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(path, self._last_image):
                raise OSError(f"OpenCV could not write {path}")
        except (OSError, cv2.error) as error:
            self.message.emit("error", f"Snapshot failed: {error}")
            return
        self.snapshot_saved.emit(path)
        self.message.emit("info", f"Saved snapshot {path}")

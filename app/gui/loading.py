"""What the worker can load (models, back-ends and cameras present) and the loading itself:
on a loader thread, while the current ones keep running, swapped in between two frames, cached per (name, back-end), with fall-backs.

``ModelLoading`` is a part of ``app.gui.worker.TrackingWorker`` (a mixin): it uses the worker's
signals (``model_loading``, ``model_ready``, ``model_failed``, ``detector_ready``,
``detector_failed``, ``message``, ``model_progress``, ``environment_ready``) and its state (``_loader``, ``_cache``,
``_model_load``, ``_detector_load``, ``_wanted_model``, ``_model_key``, ``_detector``,
``_session``, ...), all touched by the worker thread only.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from app.gui.model_cache import cache_key
from app.gui.values import Environment, ModelInfo
from app.pipeline import DEFAULT_DETECTOR

log = logging.getLogger(__name__)


class Load:
    """A model or detector being made on the loader thread."""

    def __init__(self, kind: str, key: tuple[str, str], future: Future, started: float) -> None:
        self.kind = kind
        self.key = key
        self.future = future
        self.started = started


class ModelLoading:
    """The worker's model and detector loads (see the module docstring)."""

    def _probe_environment(self) -> None:
        """Models, back-ends and cameras present. Imports mediapipe / onnxruntime: done here, not in the GUI."""
        import engines
        from app.sources import list_cameras
        from models.registry import available_models

        try:
            self._available = tuple(available_models(self.assets_dir))
        except Exception as error:
            self._available = ()
            self.message.emit("error", f"Could not list the landmark models: {error}")
        try:
            backends = {backend.value: reason for backend, reason in engines.backend_availability().items()}
        except Exception as error:
            backends = {}
            self.message.emit("error", f"Could not check the inference back-ends: {error}")
        try:
            cameras = tuple(camera.index for camera in list_cameras())
        except Exception as error:
            cameras = ()
            self.message.emit("warning", f"Could not list the cameras: {error}")
        self.environment_ready.emit(Environment(self._available, backends, cameras))

    def _start_detector_load(self, name: str, model_file: str) -> None:
        from models.detectors import create_detector

        self._detector_choice = (name, model_file)
        if self._detector_load is not None:  # superseded: close it when it arrives
            self._detector_load.future.add_done_callback(close_late_load)
        future = self._loader.submit(create_detector, name, model_file or None)
        future.add_done_callback(lambda _: self._wake())
        self._detector_load = Load("detector", (name, model_file), future, time.perf_counter())

    def _update_model_load(self) -> None:
        """Swap in the wanted model if it is cached, else start loading it (unless a load is running)."""
        name, backend = self._wanted_model
        key = cache_key(name, backend)
        if key == self._model_key:
            return
        cached = self._cache.get(key)
        if cached is not None:
            self._use_model(cached, name, backend, 0.0, cached=True)
            return
        if self._model_load is not None:
            return  # picked up when the running load finishes
        self.model_loading.emit(name, backend)
        future = self._loader.submit(self._load_model, name, backend)
        future.add_done_callback(lambda _: self._wake())
        self._model_load = Load("model", (name, backend), future, time.perf_counter())

    def _load_model(self, name: str, backend: str):
        """Runs on the loader thread."""
        from models.registry import load_landmark_model

        def on_message(text: str) -> None:
            self.message.emit("info", text)

        def on_progress(*args) -> bool:
            # (fraction) or (phase, done, total); returning False cancels a TensorRT build on exit.
            if len(args) == 1:
                fraction = float(args[0])
            else:
                done, total = args[-2], args[-1]
                fraction = float(done) / float(total) if total else -1.0
            self.model_progress.emit(fraction)
            return not self._stopping

        return load_landmark_model(
            name, backend=backend, on_message=on_message, on_progress=on_progress, assets_dir=self.assets_dir
        )

    def _collect_loads(self) -> None:
        load = self._detector_load
        if load is not None and load.future.done():
            self._detector_load = None
            self._finish_detector_load(load)
        load = self._model_load
        if load is not None and load.future.done():
            self._model_load = None
            self._finish_model_load(load)
            self._update_model_load()

    def _finish_detector_load(self, load: Load) -> None:
        name, model_file = load.key
        try:
            detector = load.future.result()
        except Exception as error:
            message = f"Detector {name} could not be loaded: {error}"
            self.message.emit("error", message + self._keeping("detector"))
            self.detector_failed.emit(name, model_file, str(error))
            if self._detector is None and self._detector_load is None and name != DEFAULT_DETECTOR:
                self.message.emit("warning", f"Falling back to the {DEFAULT_DETECTOR} detector")
                self._start_detector_load(DEFAULT_DETECTOR, "")
            return
        previous, self._detector = self._detector, detector
        if self._session is not None:
            self._session.pipeline.set_detector(detector)
        if previous is not None:
            previous.close()
        self._build_session()
        self.detector_ready.emit(name, model_file)

    def _finish_model_load(self, load: Load) -> None:
        name, backend = load.key
        key = cache_key(name, backend)
        try:
            model = load.future.result()
        except Exception as error:
            self._failed_models.add(key)
            self.model_failed.emit(name, backend, str(error))
            self.message.emit("error", f"Model {name} failed to load: {error}{self._keeping('model')}")
            self._fall_back_model()
            return
        current = self._session.pipeline.model if self._session is not None else None
        self._cache.put(key, model, in_use=current)
        if cache_key(*self._wanted_model) == key:
            self._use_model(model, name, backend, time.perf_counter() - load.started, cached=False)

    def _keeping(self, what: str) -> str:
        if what == "model" and self._model_key is not None:
            return f"; still running {self._model_key[0]}"
        if what == "detector" and self._detector is not None:
            return "; keeping the previous detector"
        return ""

    def _fall_back_model(self) -> None:
        """After a failed load: keep the running model, or try another available one."""
        if self._model_key is not None:
            name = self._model_key[0]
            backend = self._wanted_model[1] if self._wanted_model[0] == name else "auto"
            self._wanted_model = (name, backend)
            running = self._session.pipeline.model
            self.model_ready.emit(ModelInfo(name, running.backend, backend, 0.0, cached=True))
            return
        for name in self._available:
            if not any(key[0] == name for key in self._failed_models):
                self.message.emit("warning", f"Falling back to model {name}")
                self._wanted_model = (name, "auto")
                return
        self.message.emit("error", "No landmark model could be loaded: the video is shown without tracking")

    def _use_model(self, model, name: str, backend: str, seconds: float, cached: bool) -> None:
        if self._session is not None:
            self._session.pipeline.set_model(model)  # the previous model stays in the cache
            self._switch_started = self._switch_requested
        self._model_key = cache_key(name, backend)
        self._build_session()
        self.model_ready.emit(ModelInfo(name, model.backend, backend, seconds, cached))


def close_late_load(future: Future) -> None:
    """Close a model or detector that finished loading after the worker stopped."""
    if future.cancelled() or future.exception() is not None:
        return
    try:
        future.result().close()
    except Exception:
        log.exception("closing a late-loaded model failed")


"""The headless tracking pipeline: frame in, tracked 68-point faces out.

``Pipeline.process`` runs detect (when the tracker asks for it) -> align -> infer ->
decode -> smooth and times each stage. The command line, the evaluation runners and
the Qt window all drive this same object; none of them adds tracking logic of its own.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from app.geometry.face import FaceGeometryTracker, GeometryOptions
from app.geometry.pose import PoseSolver, camera_matrix
from app.smoothing import LandmarkSmoother, OneEuroParams
from models.boxes import face_size
from app.tracking import AlignmentJob, FaceTracker, TrackerOptions
from app.types import FaceResult, Frame, FrameResult, StageTimings
from engines.base import ProgressCallback
from models import align
from models.detectors import DEFAULT_DETECTOR, FaceDetector, create_detector
from models.detectors.base import MIN_IMAGE_SIDE
from models.landmark_model import LandmarkModel
from models.registry import default_model, load_landmark_model
from models.landmarks68 import NUM_LANDMARKS
from models.types import AlignedCrop, Detection, Landmarks

SEARCH_SCALE = 3.0  # a lost face is looked for in a square this many times its size around where it was
_LOST = Landmarks(points=np.full((NUM_LANDMARKS, 2), np.nan), confidence=np.zeros(NUM_LANDMARKS))  # no fit: the tracker drops it


@dataclass
class PipelineOptions:
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    smoothing: bool = True
    one_euro: OneEuroParams = field(default_factory=OneEuroParams)
    geometry: GeometryOptions = field(default_factory=GeometryOptions)  # pose, openness, blinks

    @classmethod
    def of(cls, *, redetect_interval: int, detect_every_frame: bool, max_faces: int, smoothing: bool,
           min_cutoff: float, beta: float, geometry: GeometryOptions | None = None) -> "PipelineOptions":
        """The options from their flat settings (the command line's, a cached evaluation's): the one
        place that maps them onto the tracker and the One Euro filter."""
        return cls(tracker=TrackerOptions(redetect_interval=redetect_interval, detect_every_frame=detect_every_frame,
                                          max_faces=max_faces),
                   smoothing=smoothing, one_euro=OneEuroParams(min_cutoff=min_cutoff, beta=beta),
                   geometry=geometry if geometry is not None else GeometryOptions())


@contextmanager
def _timed(timings: StageTimings, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        setattr(timings, stage, getattr(timings, stage) + (time.perf_counter() - start) * 1000.0)


class Pipeline:
    def __init__(self, detector: FaceDetector, model: LandmarkModel, options: PipelineOptions | None = None):
        self.detector = detector
        self.options = options or PipelineOptions()
        self.tracker = FaceTracker(self.options.tracker)
        self.model = model
        self._pose_solver: PoseSolver | None = None

    @property
    def model(self) -> LandmarkModel:
        return self._model

    @model.setter
    def model(self, model: LandmarkModel) -> None:
        """The landmark model; the tracker takes on its confidence floor with it."""
        self._model = model
        self.tracker.model_min_confidence = model.min_confidence

    def process(self, frame: Frame, detections: list[Detection] | None = None) -> FrameResult:
        """Track faces on one frame. ``detections``, when given, replace the detector's."""
        timings = StageTimings()
        shape = frame.image.shape
        detector_ran = False
        if detections is None and self.tracker.needs_detection():
            detections = self._detect(frame, timings)
            detector_ran = True
        jobs = self.tracker.plan(detections)
        self.tracker.update(jobs, self._landmarks(frame, jobs, timings), shape)
        lost = self.tracker.just_lost()
        if lost and detections is None:
            # A track was lost on a frame aligned from the previous landmarks: look again around
            # where it was, so the face is not missing from this frame (a search of the whole
            # frame would cost a full detection per lost face in a crowd).
            found = self._detect_around(frame, lost, timings)
            detector_ran = True
            new_jobs = [job for job in self.tracker.plan(found, full_frame=False) if job.track is None]
            self.tracker.update(new_jobs, self._landmarks(frame, new_jobs, timings), shape)
        with _timed(timings, "smooth"):  # smoothing and face geometry
            faces = tuple(self._face_result(track, frame) for track in self.tracker.tracks)
        return FrameResult(frame=frame, faces=faces, timings=timings, detector_ran=detector_ran)

    def set_model(self, model: LandmarkModel) -> LandmarkModel:
        """Use ``model`` from the next frame on; returns the previous one (the caller closes it)."""
        previous, self.model = self.model, model
        return previous

    def set_detector(self, detector: FaceDetector) -> FaceDetector:
        previous, self.detector = self.detector, detector
        return previous

    def set_options(self, options: PipelineOptions) -> None:
        """Apply new tracking/smoothing options; tracks carry on."""
        self.options = options
        self.tracker.options = options.tracker
        self._pose_solver = None
        self.tracker.forget_owned_state()

    def reset(self) -> None:
        """Forget all faces (a new source, or a seek)."""
        self.tracker.reset()

    def close(self) -> None:
        self.model.close()
        self.detector.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _detect(self, frame: Frame, timings: StageTimings) -> list[Detection]:
        if min(frame.image.shape[:2]) < MIN_IMAGE_SIDE:
            return []  # a frame a pixel wide or high holds no face
        with _timed(timings, "detect"):
            return self.detector.detect(frame.image)[: self.options.tracker.max_faces]

    def _detect_around(self, frame: Frame, boxes: list[np.ndarray], timings: StageTimings) -> list[Detection]:
        """Detections in a square of ``SEARCH_SCALE`` times each box's longer side around it."""
        h, w = frame.image.shape[:2]
        found: list[Detection] = []
        with _timed(timings, "detect"):
            for box in boxes:
                centre, side = (box[:2] + box[2:]) / 2, SEARCH_SCALE * float(np.max(box[2:] - box[:2]))
                x1, y1 = np.clip(np.floor(centre - side / 2), 0, [w, h]).astype(int)
                x2, y2 = np.clip(np.ceil(centre + side / 2), 0, [w, h]).astype(int)
                if x2 - x1 < 2 or y2 - y1 < 2:
                    continue
                found.extend(self.detector.detect_region(frame.image, (x1, y1, x2, y2)))
        return sorted(found, key=lambda d: d.score, reverse=True)[: self.options.tracker.max_faces]

    def _landmarks(self, frame: Frame, jobs: list[AlignmentJob], timings: StageTimings) -> list[Landmarks]:
        if not jobs:
            return []
        size = self.model.input_size
        with _timed(timings, "align"):
            crops = [self._crop(frame, job, size) for job in jobs]
        valid = [crop for crop in crops if crop is not None]
        if not valid:
            return [_LOST] * len(jobs)
        with _timed(timings, "infer"):
            raw = self.model.infer(valid)
        with _timed(timings, "decode"):
            decoded = iter(self.model.decode(raw, valid))
        return [_LOST if crop is None else next(decoded) for crop in crops]

    @staticmethod
    def _crop(frame: Frame, job: AlignmentJob, size: int) -> AlignedCrop | None:
        """The job's aligned crop, or None when its keypoints are degenerate (the track is then lost)."""
        try:
            return align.align(frame.image, job.keypoints, job.mask, size)
        except ValueError:
            return None

    def _face_result(self, track, frame: Frame) -> FaceResult:
        raw = track.landmarks
        shown = raw
        if self.options.smoothing:
            if track.smoother is None:
                track.smoother = LandmarkSmoother(self.options.one_euro)
            points = track.smoother.smooth(raw.points, frame.timestamp, face_size(raw.points))
            shown = Landmarks(points=points, confidence=raw.confidence, visible=raw.visible)
        geometry = None
        if self.options.geometry.enabled:
            if track.geometry is None:
                smoothing = self.options.one_euro if self.options.smoothing else None
                track.geometry = FaceGeometryTracker(self.options.geometry, smoothing)
            geometry = track.geometry.update(raw, self._solver(frame), frame.index, frame.timestamp)
        return FaceResult(
            track_id=track.track_id, landmarks=shown, raw_landmarks=raw, detection=track.detection, geometry=geometry
        )

    def _solver(self, frame: Frame) -> PoseSolver:
        """The pose solver for this frame's size (the intrinsics follow the frame size)."""
        h, w = frame.image.shape[:2]
        solver = self._pose_solver
        if solver is None or solver.size != (w, h):
            options = self.options.geometry.pose
            solver = self._pose_solver = PoseSolver(camera_matrix(w, h, options.fov_deg), options, size=(w, h))
        return solver


@dataclass(frozen=True)
class PipelineSpec:
    """What a pipeline is built from: the landmark model (a name or manifest path; None: the
    default, ``models.registry.default_model()``), its back-end and precision, the face detector
    (and its ONNX file for retinaface / yunet) and the options. Every caller describes its pipeline
    with one (the command line: ``app.cli.pipeline_args.spec_from_args``; ``eval300vw``:
    ``EvalConfig.pipeline_spec``; the API's ``Tracker``) and ``build_pipeline`` builds it."""

    model: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    detector: str = DEFAULT_DETECTOR
    detector_model: str | None = None
    options: PipelineOptions | None = None


def build_pipeline(
    spec: PipelineSpec | str | None = None,
    *,
    on_message: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> Pipeline:
    """Load ``spec``'s detector and landmark model and wire them into a Pipeline (a bare model
    name stands for ``PipelineSpec(model=name)``). ``on_message`` and ``on_progress(phase, done,
    total)`` are passed on to ``engines.open_runner``. A ``precision`` the back-end cannot run
    raises ``engines.precision.PrecisionUnavailable``."""
    if not isinstance(spec, PipelineSpec):
        spec = PipelineSpec(model=spec)
    face_detector = create_detector(spec.detector, model_path=spec.detector_model)
    try:
        landmark_model = load_landmark_model(
            spec.model or default_model(), backend=spec.backend, on_message=on_message, on_progress=on_progress,
            precision=spec.precision, strict_precision=True,
        )
    except BaseException:
        face_detector.close()
        raise
    return Pipeline(face_detector, landmark_model, spec.options)

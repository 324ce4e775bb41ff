"""The settings of a 300-VW evaluation that change its predictions, and where its results go."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.smoothing import OneEuroParams
from app.tracking import TrackerOptions
from models.datasets import PROJECT_ROOT
from models.detectors import DEFAULT_DETECTOR
from models.metrics import DEFAULT_THRESHOLD

THRESHOLD = DEFAULT_THRESHOLD
DEFAULT_OUT = PROJECT_ROOT / "out" / "eval300vw"

@dataclass(frozen=True)
class EvalConfig:
    """Everything that changes the predictions. Part of every cached clip result."""

    model: str = "mediapipe68"
    backend: str = "auto"
    precision: str = "auto"
    detector: str = DEFAULT_DETECTOR
    detector_model: str | None = None
    boxes: str = "tracker"  # "tracker" or "gt"
    smoothing: bool = True
    min_cutoff: float = OneEuroParams.min_cutoff  # the run time's defaults, as the command line's
    beta: float = OneEuroParams.beta
    detect_every_frame: bool = False
    redetect_interval: int = TrackerOptions.redetect_interval
    max_faces: int = TrackerOptions.max_faces

    def __post_init__(self) -> None:
        if self.boxes not in ("tracker", "gt"):
            raise ValueError(f"--boxes must be 'tracker' or 'gt', got {self.boxes!r}")

    @property
    def tag(self) -> str:
        mode = "detect" if self.detect_every_frame else "track"
        model = self.model if self.precision == "auto" else f"{self.model}@{self.precision}"
        return f"{model}-{self.boxes}-{mode}-{'smooth' if self.smoothing else 'nosmooth'}"

    def protocol(self) -> str:
        if self.boxes == "gt":
            boxes = (
                "boxes from the ground truth (oracle): its five points are given instead of the detector's"
                " on every annotated frame, the detector never runs"
            )
            if self.detect_every_frame:
                mode = "detection mode: every annotated frame aligned from the ground truth's five points"
            else:
                mode = (
                    "tracking mode: aligned from the previous frame's landmarks; the ground truth starts a"
                    " track where none overlaps it"
                )
        else:
            boxes = f"boxes from the {self.detector} detector"
            if self.detect_every_frame:
                mode = "detection mode: every frame aligned from a fresh detection"
            else:
                every = f"every {self.redetect_interval} frames and " if self.redetect_interval > 0 else ""
                mode = (
                    f"tracking mode: aligned from the previous frame's landmarks, detector {every}"
                    "when a track is lost"
                )
        smooth = (
            f"One Euro smoothing on (min_cutoff {self.min_cutoff} Hz, beta {self.beta})"
            if self.smoothing
            else "smoothing off"
        )
        return f"{boxes}; {mode}; {smooth}"

    @classmethod
    def from_spec(cls, spec, boxes: str = "tracker") -> "EvalConfig":
        """The settings of ``spec`` (an ``app.pipeline.PipelineSpec``, e.g. the command line's) that
        change the predictions; head pose and blinks (``options.geometry``) do not."""
        from app.pipeline import PipelineOptions

        options = spec.options or PipelineOptions()
        return cls(model=spec.model or cls.model, backend=spec.backend, precision=spec.precision,
                   detector=spec.detector, detector_model=spec.detector_model, boxes=boxes,
                   smoothing=options.smoothing, min_cutoff=options.one_euro.min_cutoff, beta=options.one_euro.beta,
                   detect_every_frame=options.tracker.detect_every_frame,
                   redetect_interval=options.tracker.redetect_interval, max_faces=options.tracker.max_faces)

    def pipeline_spec(self):
        """The pipeline these settings describe (``app.pipeline.build_pipeline`` builds it)."""
        from app.pipeline import PipelineSpec

        return PipelineSpec(model=self.model, backend=self.backend, precision=self.precision, detector=self.detector,
                            detector_model=self.detector_model, options=self.pipeline_options())

    def pipeline_options(self):
        from app.pipeline import PipelineOptions

        return PipelineOptions.of(redetect_interval=self.redetect_interval, detect_every_frame=self.detect_every_frame,
                                  max_faces=self.max_faces, smoothing=self.smoothing, min_cutoff=self.min_cutoff,
                                  beta=self.beta)


def default_out_dir(root: Path, config: EvalConfig) -> Path:
    return DEFAULT_OUT / Path(root).resolve().name / config.tag


def cfg_title(config: EvalConfig) -> str:
    return f"{config.model}, {'GT boxes' if config.boxes == 'gt' else config.detector}, " + (
        "detect every frame" if config.detect_every_frame else "tracking"
    )

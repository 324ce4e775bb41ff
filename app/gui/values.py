"""Immutable values the worker thread sends to the window (through queued signals)."""
from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtGui import QImage

from app.types import FaceGeometry


@dataclass(frozen=True)
class SourceSpec:
    """What to open: a camera (index, resolution), a video file or a 300-VW clip folder."""

    kind: str  # "camera", "video" or "clip"
    path: str = ""
    camera_index: int = 0
    resolution: tuple[int, int] | None = None  # (width, height) for cameras

    @property
    def label(self) -> str:
        if self.kind == "camera":
            size = f" {self.resolution[0]}x{self.resolution[1]}" if self.resolution else ""
            return f"camera {self.camera_index}{size}"
        return self.path


@dataclass(frozen=True)
class SourceInfo:
    spec: SourceSpec
    frame_count: int | None  # None for cameras
    fps: float | None
    width: int
    height: int
    has_ground_truth: bool

    @property
    def seekable(self) -> bool:
        return self.spec.kind != "camera" and bool(self.frame_count)


@dataclass(frozen=True)
class Environment:
    """What this machine offers, probed in the worker (these probes import heavy libraries)."""

    models: tuple[str, ...]
    backends: dict  # engines.base.Backend value -> None (available) or the reason it is not
    cameras: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str  # the engine that really runs it ("ort-cpu", "mediapipe", ...)
    requested_backend: str
    load_seconds: float
    cached: bool


@dataclass(frozen=True)
class ClipAccuracy:
    """Running accuracy on a source with ground truth (300-VW clips)."""

    frame_nme: float | None  # this frame; inf when the face was missed; None without ground truth
    mean_nme: float  # over the scored frames where the face was found (NaN before any)
    scored_frames: int
    misses: int


@dataclass(frozen=True)
class RecordingInfo:
    video: str
    landmarks: str
    frames: int


@dataclass(frozen=True)
class FramePacket:
    """One processed frame: the annotated image (an owned copy) and the figures shown beside it."""

    image: QImage
    index: int
    frame_count: int | None
    timestamp: float  # seconds into the source
    read_time: float  # time.perf_counter() when the frame was read from the source
    faces: int
    tracked: bool  # False when no landmark model was ready and the frame is shown as read
    model: str
    backend: str
    fps: float | None  # processing frame rate (worker side)
    latency_ms: float | None  # median pipeline + overlay time per frame
    dropped_frames: int  # camera frames dropped as stale since the source opened
    accuracy: ClipAccuracy | None = None
    recording: RecordingInfo | None = None
    model_switch_ms: float | None = None  # set on the first frame after a model switch
    stage_ms: dict = field(default_factory=dict)
    geometry: tuple[tuple[int, FaceGeometry | None], ...] = ()  # (track id, geometry) of each face

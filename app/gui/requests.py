"""What the window asks of the tracking worker: one small immutable type per request.

``TrackingWorker`` queues these from any thread and applies them between frames
(``TrackingWorker._apply`` matches on the type); of several pending ``Seek`` only the
latest is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from app.gui.values import SourceSpec
from app.overlay import OverlayOptions
from app.pipeline import PipelineOptions


@dataclass(frozen=True)
class OpenSource:
    spec: SourceSpec
    play: bool = True


@dataclass(frozen=True)
class SetPlaying:
    playing: bool


@dataclass(frozen=True)
class TogglePlay:
    pass


@dataclass(frozen=True)
class Step:
    delta: int  # +1 next frame, -1 previous


@dataclass(frozen=True)
class Seek:
    index: int


@dataclass(frozen=True)
class SetModel:
    name: str
    backend: str = "auto"


@dataclass(frozen=True)
class SetDetector:
    name: str
    model_file: str = ""  # "" for detectors without a file (blazeface)


@dataclass(frozen=True)
class SetOptions:
    options: PipelineOptions


@dataclass(frozen=True)
class SetOverlay:
    overlay: OverlayOptions


@dataclass(frozen=True)
class SetMaxSpeed:
    enabled: bool


@dataclass(frozen=True)
class StartRecording:
    video: str
    landmarks: str


@dataclass(frozen=True)
class StopRecording:
    pass


@dataclass(frozen=True)
class Snapshot:
    path: str


@dataclass(frozen=True)
class RefreshEnvironment:
    pass


Request = Union[
    OpenSource, SetPlaying, TogglePlay, Step, Seek, SetModel, SetDetector, SetOptions, SetOverlay, SetMaxSpeed,
    StartRecording, StopRecording, Snapshot, RefreshEnvironment,
]

"""What the window remembers between runs, stored with QSettings.

``AppSettings`` is a plain dataclass so the rest of the window never touches QSettings
keys; ``load_settings`` falls back to the defaults for any missing or unreadable value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from PySide6.QtCore import QSettings

from app.overlay import OverlayOptions
from app.smoothing import OneEuroParams
from app.tracking import TrackerOptions
from models.detectors import DEFAULT_DETECTOR
from models.registry import default_model

ORGANISATION = "facetrack68"
APPLICATION = "facetrack68"
DEFAULT_RESOLUTION = "1280x720"


@dataclass(frozen=True)
class AppSettings:
    source_kind: str = ""  # "", "camera", "video" or "clip"
    source_path: str = ""  # video file or 300-VW clip folder
    camera_index: int = 0
    camera_resolution: str = DEFAULT_RESOLUTION
    model: str = field(default_factory=default_model)
    backend: str = "auto"  # "auto" or an engines.base.Backend value
    detector: str = DEFAULT_DETECTOR
    retinaface_file: str = ""
    yunet_file: str = ""
    smoothing: bool = True
    min_cutoff: float = OneEuroParams.min_cutoff
    beta: float = OneEuroParams.beta
    d_cutoff: float = OneEuroParams.d_cutoff
    redetect_interval: int = TrackerOptions.redetect_interval
    max_faces: int = TrackerOptions.max_faces
    max_speed: bool = False  # files: play as fast as possible instead of at the file's rate
    record_dir: str = ""
    overlay: OverlayOptions = field(default_factory=OverlayOptions)

    def detector_file(self, name: str) -> str:
        return {"retinaface": self.retinaface_file, "yunet": self.yunet_file}.get(name, "")

    def one_euro(self) -> OneEuroParams:
        return OneEuroParams(min_cutoff=self.min_cutoff, beta=self.beta, d_cutoff=self.d_cutoff)


def open_qsettings(path: str | None = None) -> QSettings:
    """The user's QSettings, or an INI file at ``path`` (tests, portable installs)."""
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION)


def _convert(value: object, default: object) -> object:
    """A stored value as the default's type (INI files give strings back)."""
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def _read_group(store: QSettings, defaults: object) -> dict:
    values = {}
    for f in fields(defaults):
        default = getattr(defaults, f.name)
        if f.name == "overlay" or not store.contains(f.name):
            continue
        try:
            values[f.name] = _convert(store.value(f.name), default)
        except (TypeError, ValueError):
            continue
    return values


def load_settings(store: QSettings) -> AppSettings:
    defaults = AppSettings()
    values = _read_group(store, defaults)
    store.beginGroup("overlay")
    overlay = replace(defaults.overlay, **_read_group(store, defaults.overlay))
    store.endGroup()
    settings = replace(defaults, overlay=overlay, **values)
    try:
        settings.one_euro()
    except ValueError:
        settings = replace(settings, min_cutoff=defaults.min_cutoff, beta=defaults.beta, d_cutoff=defaults.d_cutoff)
    return settings


def save_settings(store: QSettings, settings: AppSettings) -> None:
    values = asdict(settings)
    overlay = values.pop("overlay")
    for key, value in values.items():
        store.setValue(key, value)
    store.beginGroup("overlay")
    for key, value in overlay.items():
        store.setValue(key, value)
    store.endGroup()
    store.sync()

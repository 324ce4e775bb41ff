"""The side panels: source, model, tracking and overlay controls.

Each panel turns its widgets into one typed signal and can be set from values
(``AppSettings``, what the worker reports); none of them knows about the worker.
"""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.overlay import OverlayOptions
from app.pipeline import PipelineOptions
from app.smoothing import OneEuroParams
from app.tracking import TrackerOptions
from models.detectors import DEFAULT_DETECTOR, DETECTOR_NAMES, SHIPPED_DETECTORS

RESOLUTIONS = ("640x480", "1280x720", "1920x1080")
BACKEND_CHOICES = (  # (value, label) in the back-end dropdown
    ("auto", "Auto (fastest available)"),
    ("tensorrt", "TensorRT FP16"),
    ("ort-cuda", "ONNX Runtime CUDA"),
    ("ort-cpu", "ONNX Runtime CPU"),
    ("openvino", "OpenVINO CPU"),
)
BACKEND_LABELS = dict(BACKEND_CHOICES) | {"mediapipe": "MediaPipe (CPU)"}
PRECISION_CHOICES = (  # (value, label) in the precision dropdown; engines.precision says who runs what
    ("auto", "Auto (the back-end's default)"),
    ("fp32", "FP32"),
    ("fp16", "FP16"),
    ("int8", "INT8"),
)
DETECTOR_LABELS = {
    "auto": "Auto (BlazeFace, MTCNN fallback)",
    "blazeface": "BlazeFace",
    "mtcnn": "MTCNN (small faces, crowds)",
    "retinaface": "RetinaFace",
    "yunet": "YuNet",
}
SHIPPED_TOOLTIPS = {
    "auto": "BlazeFace for frames up to 720p, MTCNN for larger frames and, now and then, where BlazeFace finds "
            "no face; both ship with the app",
    "blazeface": "BlazeFace, shipped with MediaPipe",
    "mtcnn": "MTCNN, shipped with the app: faces from 20 px, five points",
}
OVERLAY_LABELS = (  # (OverlayOptions field, check box text)
    ("points", "Points"),
    ("contours", "Contours"),
    ("box", "Box"),
    ("keypoints", "Five points"),
    ("face_ids", "Face IDs"),
    ("confidence_colours", "Confidence colours"),
    ("stats_panel", "FPS / latency panel"),
    ("ground_truth", "Ground truth (300-VW)"),
    ("pose_axes", "Head pose axes"),
    ("geometry_readout", "Geometry readout"),
)


def parse_resolution(text: str) -> tuple[int, int] | None:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _set_item_enabled(combo: QComboBox, row: int, enabled: bool, tooltip: str = "") -> None:
    model = combo.model()
    if isinstance(model, QStandardItemModel):
        item = model.item(row)
        item.setEnabled(enabled)
        item.setToolTip(tooltip)


def _item_enabled(combo: QComboBox, row: int) -> bool:
    model = combo.model()
    return not isinstance(model, QStandardItemModel) or row < 0 or model.item(row).isEnabled()


def _split_precision(name: str) -> tuple[str, str]:
    """``r18_ffld@int8`` -> (``r18_ffld``, ``int8``); no suffix -> (name, ``auto``)."""
    base, mark, precision = name.rpartition("@")
    return (base, precision) if mark else (name, "auto")


def _backend_precision_problem(backend: str, precision: str, availability: dict[str, str | None]) -> str | None:
    """Why ``backend`` ("auto": any available one) cannot run ``precision``, or None."""
    from engines.base import Backend
    from engines.precision import Precision, precision_problem

    wanted = Precision(precision)
    if backend != "auto":
        return precision_problem(Backend(backend), wanted)
    runners = [b for b in Backend if precision_problem(b, wanted) is None]
    if any(availability.get(b.value, "not checked") is None for b in runners):
        return None
    return "; ".join(f"{b.label}: {availability.get(b.value) or 'not checked'}" for b in runners)


def _select_data(combo: QComboBox, value: object) -> bool:
    row = combo.findData(value)
    if row < 0:
        return False
    blocked = combo.blockSignals(True)
    combo.setCurrentIndex(row)
    combo.blockSignals(blocked)
    return True


class SourcePanel(QGroupBox):
    camera_requested = Signal(int, object)  # index, (width, height) or None
    open_video_clicked = Signal()
    open_clip_clicked = Signal()
    refresh_clicked = Signal()
    max_speed_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Source", parent)
        self.camera_combo = QComboBox()
        self.camera_combo.setToolTip("Cameras found on this machine")
        self.resolution_combo = QComboBox()
        self.resolution_combo.addItems(RESOLUTIONS)
        self.resolution_combo.setToolTip("Resolution asked of the camera (it may grant another)")
        self.camera_button = QPushButton("Start camera")
        self.refresh_button = QToolButton()
        self.refresh_button.setText("↻")
        self.refresh_button.setToolTip("Look for cameras again")
        self.open_video_button = QPushButton("Open video…")
        self.open_clip_button = QPushButton("Open 300-VW clip…")
        self.max_speed_box = QCheckBox("Play files as fast as possible")
        self.max_speed_box.setToolTip("Off: files play at their own frame rate. Every frame is processed either way.")

        camera_row = QHBoxLayout()
        camera_row.addWidget(self.camera_combo, 1)
        camera_row.addWidget(self.refresh_button)
        camera_controls = QHBoxLayout()
        camera_controls.addWidget(self.resolution_combo, 1)
        camera_controls.addWidget(self.camera_button)
        files = QHBoxLayout()
        files.addWidget(self.open_video_button)
        files.addWidget(self.open_clip_button)
        layout = QVBoxLayout(self)
        layout.addLayout(camera_row)
        layout.addLayout(camera_controls)
        layout.addLayout(files)
        layout.addWidget(self.max_speed_box)

        self.camera_button.clicked.connect(self._emit_camera)
        self.refresh_button.clicked.connect(self.refresh_clicked)
        self.open_video_button.clicked.connect(self.open_video_clicked)
        self.open_clip_button.clicked.connect(self.open_clip_clicked)
        self.max_speed_box.toggled.connect(self.max_speed_changed)
        self.set_cameras(None)

    def set_cameras(self, cameras: tuple[int, ...] | None) -> None:
        """None while the cameras are being looked for."""
        self.camera_combo.clear()
        if cameras is None:
            self.camera_combo.addItem("Looking for cameras…")
        elif not cameras:
            self.camera_combo.addItem("No camera found")
        for index in cameras or ():
            self.camera_combo.addItem(f"Camera {index}", index)
        present = bool(cameras)
        for widget in (self.camera_combo, self.resolution_combo, self.camera_button):
            widget.setEnabled(present)
        if cameras is not None and not cameras:
            self.camera_combo.setToolTip("No camera is connected: open a video file or a 300-VW clip")

    def select_camera(self, index: int, resolution: str) -> None:
        _select_data(self.camera_combo, index)
        row = self.resolution_combo.findText(resolution)
        if row >= 0:
            self.resolution_combo.setCurrentIndex(row)

    def resolution_text(self) -> str:
        return self.resolution_combo.currentText()

    def _emit_camera(self) -> None:
        index = self.camera_combo.currentData()
        if index is not None:
            self.camera_requested.emit(int(index), parse_resolution(self.resolution_text()))


class ModelPanel(QGroupBox):
    model_requested = Signal(str, str)  # name (with "@precision" unless auto), back-end
    detector_requested = Signal(str, str)  # name, model file ("" for the shipped detectors)
    detector_file_requested = Signal(str)  # the detector whose ONNX file to choose

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Landmark models whose weights are installed")
        self.backend_combo = QComboBox()
        for value, label in BACKEND_CHOICES:
            self.backend_combo.addItem(label, value)
        self.precision_combo = QComboBox()
        for value, label in PRECISION_CHOICES:
            self.precision_combo.addItem(label, value)
        self.detector_combo = QComboBox()
        for name in DETECTOR_NAMES:
            self.detector_combo.addItem(DETECTOR_LABELS.get(name, name), name)
        self.detector_file_button = QToolButton()
        self.detector_file_button.setText("Detector file…")
        self.detector_file_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.detector_file_button)
        for name in DETECTOR_NAMES:
            if name not in SHIPPED_DETECTORS:
                action = menu.addAction(f"{DETECTOR_LABELS[name]} ONNX file…")
                action.triggered.connect(lambda _=False, n=name: self.detector_file_requested.emit(n))
        self.detector_file_button.setMenu(menu)
        self.status_label = QLabel("Loading…")
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("modelStatus")

        detector_row = QHBoxLayout()
        detector_row.addWidget(self.detector_combo, 1)
        detector_row.addWidget(self.detector_file_button)
        form = QFormLayout(self)
        form.addRow("Landmarks", self.model_combo)
        form.addRow("Back-end", self.backend_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("Detector", detector_row)
        form.addRow(self.status_label)

        self._detector_files: dict[str, str] = {}
        self._backend_reasons: dict[str, str | None] = {}
        self._precision_files: dict[str, dict[str, str | None]] = {}
        self._running_model = ""
        self.model_combo.currentIndexChanged.connect(self._emit_model)
        self.backend_combo.currentIndexChanged.connect(self._emit_model)
        self.precision_combo.currentIndexChanged.connect(self._emit_model)
        self.detector_combo.currentIndexChanged.connect(self._emit_detector)
        self.set_detector_files({})

    # -- filling from values ---------------------------------------------------------
    def set_models(self, names: tuple[str, ...], selected: str) -> None:
        """``selected`` may carry a precision (``r18_ffld@int8``): it selects both."""
        names = tuple(dict.fromkeys(_split_precision(name)[0] for name in names))
        selected, precision = _split_precision(selected)
        blocked = self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for name in names:
            self.model_combo.addItem(name, name)
        if not names:
            self.model_combo.addItem("No model installed", None)
        self.model_combo.setEnabled(bool(names))
        _select_data(self.model_combo, selected)
        self.model_combo.blockSignals(blocked)
        _select_data(self.precision_combo, precision)
        self._update_backend_state()

    def set_precision_files(self, files: dict[str, dict[str, str | None]]) -> None:
        """Per model: precision -> None when its file is installed, else why not
        (``models.registry.precision_files``)."""
        self._precision_files = dict(files)
        self._update_precision_state()

    def set_backend_availability(self, reasons: dict[str, str | None]) -> None:
        """Disable the back-ends that cannot run here; their tooltip says why."""
        self._backend_reasons = dict(reasons)
        for row in range(self.backend_combo.count()):
            value = self.backend_combo.itemData(row)
            if value == "auto":
                continue
            reason = reasons.get(value, "not checked")
            _set_item_enabled(self.backend_combo, row, reason is None, reason or f"{BACKEND_LABELS[value]} is available")
        current = self.backend_combo.currentData()
        if current != "auto" and reasons.get(current, "not checked") is not None:
            _select_data(self.backend_combo, "auto")
        self._update_precision_state()

    def select_backend(self, value: str) -> None:
        if not _select_data(self.backend_combo, value):
            _select_data(self.backend_combo, "auto")
        self._update_precision_state()

    def set_detector_files(self, files: dict[str, str]) -> None:
        """The shipped detectors are always offered; RetinaFace and YuNet once the user has chosen their files."""
        self._detector_files = {name: path for name, path in files.items() if path}
        for row in range(self.detector_combo.count()):
            name = self.detector_combo.itemData(row)
            if name in SHIPPED_DETECTORS:
                _set_item_enabled(self.detector_combo, row, True, SHIPPED_TOOLTIPS[name])
                continue
            path = self._detector_files.get(name)
            tooltip = path or f"Choose the {DETECTOR_LABELS[name]} ONNX file with 'Detector file…' first"
            _set_item_enabled(self.detector_combo, row, bool(path), tooltip)

    def detector_file(self, name: str) -> str:
        return self._detector_files.get(name, "")

    def select_detector(self, name: str) -> None:
        _select_data(self.detector_combo, name)

    def show_running(self, name: str, backend: str, seconds: float, cached: bool) -> None:
        self._running_model = name
        base, precision = _split_precision(name)
        _select_data(self.model_combo, base)
        _select_data(self.precision_combo, precision)
        took = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
        how = "from the cache" if cached else f"loaded in {took}"
        self.status_label.setText(f"Running {name} on {BACKEND_LABELS.get(backend, backend)} ({how})")
        self._update_backend_state()

    def show_loading(self, name: str, backend: str) -> None:
        target = "" if name == "mediapipe68" else f" for {BACKEND_LABELS.get(backend, backend)}"
        self.status_label.setText(f"Loading {name}{target}… (the current model keeps running)")

    # -- reading -----------------------------------------------------------------------
    def model(self) -> str:
        return self.model_combo.currentData() or ""

    def backend(self) -> str:
        return self.backend_combo.currentData() or "auto"

    def precision(self) -> str:
        return self.precision_combo.currentData() or "auto"

    def requested_model(self) -> str:
        """The model name as the registry loads it: ``NAME`` or ``NAME@PRECISION``."""
        precision = self.precision()
        return self.model() if precision == "auto" else f"{self.model()}@{precision}"

    def detector(self) -> str:
        return self.detector_combo.currentData() or DEFAULT_DETECTOR

    def _update_backend_state(self) -> None:
        mediapipe = self.model() == "mediapipe68"
        self.backend_combo.setEnabled(not mediapipe and self.model_combo.isEnabled())
        self.backend_combo.setToolTip(
            "mediapipe68 runs on MediaPipe's own CPU engine; the back-end applies to the ONNX models"
            if mediapipe
            else "Engine that runs the ONNX landmark model; unavailable ones say why"
        )
        self._update_precision_state()

    def _update_precision_state(self) -> None:
        """Enable the precisions that the chosen back-end and the model's installed files support;
        the others say why. A selection that became impossible returns to Auto."""
        files = self._precision_files.get(self.model())
        own_engine = files is None or all(reason is not None for reason in files.values())
        self.precision_combo.setEnabled(not own_engine and self.model_combo.isEnabled())
        self.precision_combo.setToolTip(
            f"{self.model() or 'This model'} runs its own float model" if own_engine
            else "Numeric precision of the network; unavailable ones say why"
        )
        for row in range(self.precision_combo.count()):
            value = self.precision_combo.itemData(row)
            if value == "auto":
                continue
            reason = (files or {}).get(value, "not checked") or _backend_precision_problem(
                self.backend(), value, self._backend_reasons
            )
            _set_item_enabled(self.precision_combo, row, reason is None, reason or f"{value.upper()} runs here")
        if self.precision() != "auto" and not _item_enabled(self.precision_combo, self.precision_combo.currentIndex()):
            _select_data(self.precision_combo, "auto")

    def _emit_model(self) -> None:
        self._update_backend_state()
        if self.model():
            self.model_requested.emit(self.requested_model(), self.backend())

    def _emit_detector(self) -> None:
        name = self.detector()
        self.detector_requested.emit(name, self.detector_file(name))


class _ParamSlider(QWidget):
    """A slider over [low, high] (log scale when ``log``), with its value shown beside it."""

    changed = Signal()
    STEPS = 200

    def __init__(self, low: float, high: float, log: bool, unit: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.low, self.high, self.log, self.unit = low, high, log, unit
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, self.STEPS)
        self.label = QLabel()
        self.label.setMinimumWidth(58)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self._moved)

    def _to_value(self, position: int) -> float:
        t = position / self.STEPS
        if self.log:
            return math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))
        return self.low + t * (self.high - self.low)

    def _to_position(self, value: float) -> int:
        value = min(max(value, self.low), self.high)
        if self.log:
            t = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            t = (value - self.low) / (self.high - self.low)
        return round(t * self.STEPS)

    def value(self) -> float:
        """The slider's value, rounded to the precision one slider step gives."""
        digits = 2 if self.log else 3
        return float(f"{self._to_value(self.slider.value()):.{digits}g}")

    def set_value(self, value: float) -> None:
        blocked = self.slider.blockSignals(True)
        self.slider.setValue(self._to_position(value))
        self.slider.blockSignals(blocked)
        self._show()

    def _show(self) -> None:
        self.label.setText(f"{self.value():g} {self.unit}".strip())

    def _moved(self) -> None:
        self._show()
        self.changed.emit()


class TrackingPanel(QGroupBox):
    options_changed = Signal(object)  # PipelineOptions

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Tracking", parent)
        self.smoothing_box = QCheckBox("Smoothing (One Euro filter)")
        self.min_cutoff = _ParamSlider(0.05, 5.0, log=True, unit="Hz")
        self.min_cutoff.setToolTip("Cutoff for a still face: lower = less jitter, more lag on slow motion")
        self.beta = _ParamSlider(0.0, 200.0, log=False, unit="")
        self.beta.setToolTip("How fast the cutoff rises with speed: higher = less lag on fast motion")
        self.d_cutoff = _ParamSlider(0.1, 5.0, log=True, unit="Hz")
        self.d_cutoff.setToolTip("Cutoff of the speed estimate")
        self.redetect_spin = QSpinBox()
        self.redetect_spin.setRange(0, 600)
        self.redetect_spin.setSuffix(" frames")
        self.redetect_spin.setSpecialValueText("only when lost")
        self.redetect_spin.setToolTip("Frames between detector runs while tracking (0: only when a face is lost)")
        self.max_faces_spin = QSpinBox()
        self.max_faces_spin.setRange(1, 32)

        form = QFormLayout(self)
        form.addRow(self.smoothing_box)
        form.addRow("Min cutoff", self.min_cutoff)
        form.addRow("Beta", self.beta)
        form.addRow("D cutoff", self.d_cutoff)
        form.addRow("Re-detect every", self.redetect_spin)
        form.addRow("Max faces", self.max_faces_spin)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(120)
        self._debounce.timeout.connect(lambda: self.options_changed.emit(self.options()))
        self.smoothing_box.toggled.connect(self._changed)
        for slider in (self.min_cutoff, self.beta, self.d_cutoff):
            slider.changed.connect(self._debounce.start)
        self.redetect_spin.valueChanged.connect(self._debounce.start)
        self.max_faces_spin.valueChanged.connect(self._debounce.start)

    def set_options(self, options: PipelineOptions) -> None:
        for widget, value in (
            (self.smoothing_box, options.smoothing),
            (self.redetect_spin, options.tracker.redetect_interval),
            (self.max_faces_spin, options.tracker.max_faces),
        ):
            blocked = widget.blockSignals(True)
            widget.setChecked(value) if isinstance(widget, QCheckBox) else widget.setValue(value)
            widget.blockSignals(blocked)
        self.min_cutoff.set_value(options.one_euro.min_cutoff)
        self.beta.set_value(options.one_euro.beta)
        self.d_cutoff.set_value(options.one_euro.d_cutoff)
        self._enable_sliders()

    def options(self) -> PipelineOptions:
        return PipelineOptions(
            tracker=TrackerOptions(
                redetect_interval=self.redetect_spin.value(), max_faces=self.max_faces_spin.value()
            ),
            smoothing=self.smoothing_box.isChecked(),
            one_euro=OneEuroParams(
                min_cutoff=self.min_cutoff.value(), beta=self.beta.value(), d_cutoff=self.d_cutoff.value()
            ),
        )

    def _enable_sliders(self) -> None:
        for slider in (self.min_cutoff, self.beta, self.d_cutoff):
            slider.setEnabled(self.smoothing_box.isChecked())

    def _changed(self) -> None:
        self._enable_sliders()
        self.options_changed.emit(self.options())


class OverlayPanel(QGroupBox):
    overlay_changed = Signal(object)  # OverlayOptions

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Overlay", parent)
        self.boxes: dict[str, QCheckBox] = {}
        grid = QGridLayout(self)
        for i, (name, text) in enumerate(OVERLAY_LABELS):
            box = QCheckBox(text)
            box.toggled.connect(lambda _=False: self.overlay_changed.emit(self.overlay()))
            self.boxes[name] = box
            grid.addWidget(box, i // 2, i % 2)

    def set_overlay(self, overlay: OverlayOptions) -> None:
        for name, box in self.boxes.items():
            blocked = box.blockSignals(True)
            box.setChecked(bool(getattr(overlay, name)))
            box.blockSignals(blocked)

    def overlay(self) -> OverlayOptions:
        return OverlayOptions(**{name: box.isChecked() for name, box in self.boxes.items()})

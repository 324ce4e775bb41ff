"""The main window: widgets, menus and shortcuts wired to the ``TrackingWorker``.

The window holds no tracking logic: every control becomes a worker request, and
everything the worker emits is only displayed. Errors go to the status bar, never
to a dialog that would stop the stream.
"""
from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.file_actions import FileActions
from app.gui.settings import AppSettings, load_settings, save_settings
from app.gui.values import Environment, FramePacket, ModelInfo, RecordingInfo, SourceInfo, SourceSpec
from app.gui.widgets.error_plot import ErrorPlot
from app.gui.widgets.geometry_panel import GeometryPanel
from app.gui.widgets.panels import ModelPanel, OverlayPanel, SourcePanel, TrackingPanel, parse_resolution
from app.gui.widgets.video_view import VideoView
from app.gui.worker import TrackingWorker
from app.pipeline import PipelineOptions
from app.tracking import TrackerOptions
from models.detectors import DEFAULT_DETECTOR
from models.registry import precision_files

log = logging.getLogger(__name__)

STOP_TIMEOUT_MS = 15000
DISPLAY_WINDOW = 60  # frames over which the displayed FPS and latency are measured
DISPLAY_LABEL_PERIOD_S = 0.25  # the display figures are refreshed at most this often
LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MESSAGE_STYLES = {"info": "", "warning": "color: #b36b00;", "error": "color: #c62828; font-weight: bold;"}
NO_CAMERA_TEXT = "No camera found.\nOpen a video file or a 300-VW clip to start tracking."


class MainWindow(FileActions, QMainWindow):
    def __init__(
        self,
        store: QSettings,
        source: SourceSpec | None = None,
        model: str | None = None,
        backend: str | None = None,
        max_speed: bool | None = None,
        assets_dir: str | Path | None = None,
        open_picker_when_idle: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle("facetrack68")
        self.store = store
        settings = load_settings(store)
        if model:
            settings = replace(settings, model=model)
        if backend:
            settings = replace(settings, backend=backend)
        if max_speed is not None:
            settings = replace(settings, max_speed=max_speed)
        self.settings = settings
        self._open_picker_when_idle = open_picker_when_idle
        self.environment: Environment | None = None
        self.source_info: SourceInfo | None = None
        self.playing = False
        self.recording: RecordingInfo | None = None
        self._recording_started = 0.0
        self.messages: list[tuple[str, str]] = []  # (level, text), newest last
        self.last_packet: FramePacket | None = None
        self.frames_shown = 0
        self._paint_times: deque[float] = deque(maxlen=DISPLAY_WINDOW)
        self._latencies: deque[float] = deque(maxlen=DISPLAY_WINDOW)
        self._display_label_updated = 0.0
        self._updating_slider = False
        self._file_dialog: QFileDialog | None = None
        self._closing = False
        self._source_requested = False

        self._build_widgets()
        self._build_actions()
        self._apply_settings_to_widgets(settings)
        geometry = store.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 780)

        self.worker = TrackingWorker(
            model=settings.model,
            backend=settings.backend,
            detector=settings.detector,
            detector_file=settings.detector_file(settings.detector),
            options=self.tracking_panel.options(),
            overlay=self.overlay_panel.overlay(),
            max_speed=settings.max_speed,
            assets_dir=assets_dir,
        )
        self._connect_worker()
        self.worker.start()
        if source is not None:
            self.open_source(source)

    # -- building ---------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.view = VideoView()
        self.view.frame_painted.connect(self._on_painted)
        self.welcome = QWidget()
        self.welcome_label = QLabel("Starting…")
        self.welcome_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.welcome_label.setWordWrap(True)
        self.welcome_label.setStyleSheet("font-size: 16pt;")
        self.welcome_video_button = QPushButton("Open video…")
        self.welcome_clip_button = QPushButton("Open 300-VW clip…")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.welcome_video_button)
        buttons.addWidget(self.welcome_clip_button)
        buttons.addStretch(1)
        welcome_layout = QVBoxLayout(self.welcome)
        welcome_layout.addStretch(1)
        welcome_layout.addWidget(self.welcome_label)
        welcome_layout.addLayout(buttons)
        welcome_layout.addStretch(2)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.view)

        self.back_button = QToolButton()
        self.play_button = QToolButton()
        self.forward_button = QToolButton()
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setEnabled(False)
        self.seek_slider.setToolTip("Seek (files and clips)")
        self.frame_label = QLabel("–")
        self.frame_label.setMinimumWidth(110)
        self.frame_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.record_button = QToolButton()
        self.snapshot_button = QToolButton()
        transport = QHBoxLayout()
        for widget in (self.back_button, self.play_button, self.forward_button):
            transport.addWidget(widget)
        transport.addWidget(self.seek_slider, 1)
        transport.addWidget(self.frame_label)
        transport.addWidget(self.record_button)
        transport.addWidget(self.snapshot_button)

        self.nme_label = QLabel()
        self.nme_label.setMinimumWidth(230)
        self.error_plot = ErrorPlot()
        self.clip_row = QWidget()
        clip_layout = QHBoxLayout(self.clip_row)
        clip_layout.setContentsMargins(0, 0, 0, 0)
        clip_layout.addWidget(self.nme_label)
        clip_layout.addWidget(self.error_plot, 1)
        self.clip_row.setVisible(False)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        left_layout.addWidget(self.stack, 1)
        left_layout.addLayout(transport)
        left_layout.addWidget(self.clip_row)

        self.source_panel = SourcePanel()
        self.model_panel = ModelPanel()
        self.tracking_panel = TrackingPanel()
        self.overlay_panel = OverlayPanel()
        self.geometry_panel = GeometryPanel()
        side = QWidget()
        side_layout = QVBoxLayout(side)
        for panel in (self.source_panel, self.model_panel, self.tracking_panel, self.overlay_panel, self.geometry_panel):
            side_layout.addWidget(panel)
        side_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(340)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setCollapsible(0, False)
        self.setCentralWidget(splitter)

        status = self.statusBar()
        self.message_label = QLabel()
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(160)
        self.progress_bar.setVisible(False)
        self.recording_label = QLabel()
        self.recording_label.setStyleSheet("color: white; background: #c62828; padding: 1px 6px; border-radius: 3px;")
        self.recording_label.setVisible(False)
        self.display_label = QLabel()
        status.addWidget(self.message_label, 1)
        status.addPermanentWidget(self.progress_bar)
        status.addPermanentWidget(self.recording_label)
        status.addPermanentWidget(self.display_label)
        self._recording_timer = QTimer(self)
        self._recording_timer.setInterval(500)
        self._recording_timer.timeout.connect(self._update_recording_label)

    def _action(self, text: str, shortcut: QKeySequence | str | None, slot, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(f"{tip or text} ({action.shortcut().toString()})" if shortcut else tip or text)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.open_video_action = self._action("Open video…", QKeySequence.StandardKey.Open, self.choose_video)
        self.open_clip_action = self._action("Open 300-VW clip…", "Ctrl+Shift+O", self.choose_clip)
        self.record_dir_action = self._action("Recording folder…", None, self.choose_record_dir)
        self.quit_action = self._action("Quit", "Ctrl+Q", self.close)
        self.play_action = self._action("Play", "Space", self.toggle_play, "Play / pause")
        self.step_forward_action = self._action("Step ▶|", "Right", lambda: self.step(1), "Next frame")
        self.step_back_action = self._action("|◀ Step", "Left", lambda: self.step(-1), "Previous frame (files)")
        self.record_action = self._action("● Record", "Ctrl+R", self.toggle_recording,
                                          "Record the annotated video and the landmark CSV")
        self.record_action.setCheckable(True)
        self.snapshot_action = self._action("Snapshot", "Ctrl+S", self.snapshot, "Save the annotated frame as PNG")

        self.back_button.setDefaultAction(self.step_back_action)
        self.play_button.setDefaultAction(self.play_action)
        self.forward_button.setDefaultAction(self.step_forward_action)
        self.record_button.setDefaultAction(self.record_action)
        self.snapshot_button.setDefaultAction(self.snapshot_action)
        self.play_button.setMinimumWidth(64)

        file_menu = self.menuBar().addMenu("&File")
        for action in (self.open_video_action, self.open_clip_action, self.record_dir_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        play_menu = self.menuBar().addMenu("&Playback")
        for action in (self.play_action, self.step_back_action, self.step_forward_action):
            play_menu.addAction(action)
        play_menu.addSeparator()
        play_menu.addAction(self.record_action)
        play_menu.addAction(self.snapshot_action)
        self._update_transport()

        self.welcome_video_button.clicked.connect(self.choose_video)
        self.welcome_clip_button.clicked.connect(self.choose_clip)
        self.source_panel.open_video_clicked.connect(self.choose_video)
        self.source_panel.open_clip_clicked.connect(self.choose_clip)
        self.source_panel.camera_requested.connect(self._camera_requested)
        self.source_panel.refresh_clicked.connect(self._refresh_environment)
        self.seek_slider.valueChanged.connect(self._slider_moved)

    def _apply_settings_to_widgets(self, settings: AppSettings) -> None:
        self.source_panel.max_speed_box.setChecked(settings.max_speed)
        self.source_panel.select_camera(settings.camera_index, settings.camera_resolution)
        self.model_panel.set_models((settings.model,), settings.model)
        self.model_panel.model_combo.setEnabled(False)  # until the worker reports what is installed
        self.model_panel.select_backend(settings.backend)
        self.model_panel.set_detector_files({"retinaface": settings.retinaface_file, "yunet": settings.yunet_file})
        self.model_panel.select_detector(settings.detector)
        self.tracking_panel.set_options(
            PipelineOptions(
                tracker=TrackerOptions(redetect_interval=settings.redetect_interval, max_faces=settings.max_faces),
                smoothing=settings.smoothing,
                one_euro=settings.one_euro(),
            )
        )
        self.overlay_panel.set_overlay(settings.overlay)

    def _connect_worker(self) -> None:
        w = self.worker
        w.frame_ready.connect(self._on_frame)
        w.environment_ready.connect(self._on_environment)
        w.source_opened.connect(self._on_source_opened)
        w.source_failed.connect(self._on_source_failed)
        w.source_lost.connect(self._on_source_lost)
        w.playing_changed.connect(self._on_playing_changed)
        w.model_loading.connect(self._on_model_loading)
        w.model_progress.connect(self._on_model_progress)
        w.model_ready.connect(self._on_model_ready)
        w.model_failed.connect(self._on_model_failed)
        w.detector_ready.connect(self._on_detector_ready)
        w.detector_failed.connect(self._on_detector_failed)
        w.recording_changed.connect(self._on_recording_changed)
        w.message.connect(self.show_message)
        self.view.area_changed.connect(w.set_display_area)
        area = self.view.device_area()
        w.set_display_area(area.width(), area.height())
        self.model_panel.model_requested.connect(w.set_model)
        self.model_panel.detector_requested.connect(w.set_detector)
        self.model_panel.detector_file_requested.connect(self.choose_detector_file)
        self.tracking_panel.options_changed.connect(w.set_options)
        self.overlay_panel.overlay_changed.connect(w.set_overlay)
        self.source_panel.max_speed_changed.connect(w.set_max_speed)

    # -- user requests -------------------------------------------------------------------
    def open_source(self, spec: SourceSpec, play: bool = True) -> None:
        self._source_requested = True
        self.show_message("info", f"Opening {spec.label}…")
        self.worker.open_source(spec, play)

    def open_video(self, path: str | Path, play: bool = True) -> None:
        self.open_source(SourceSpec("video", str(path)), play)

    def open_clip(self, path: str | Path, play: bool = True) -> None:
        self.open_source(SourceSpec("clip", str(path)), play)

    def _camera_requested(self, index: int, resolution) -> None:
        self.open_source(SourceSpec("camera", camera_index=index, resolution=resolution))

    def _refresh_environment(self) -> None:
        self.source_panel.set_cameras(None)
        self.worker.refresh_environment()

    def toggle_play(self) -> None:
        if self.source_info is None:
            self.choose_video()
            return
        self.worker.toggle_play()

    def step(self, delta: int) -> None:
        self.worker.step(delta)

    def seek(self, index: int) -> None:
        self.worker.seek(index)

    def _slider_moved(self, value: int) -> None:
        if not self._updating_slider:
            self.worker.seek(value)

    # -- what the worker reports ---------------------------------------------------------------
    def show_message(self, level: str, text: str) -> None:
        self.messages.append((level, text))
        del self.messages[:-200]
        self.message_label.setStyleSheet(MESSAGE_STYLES.get(level, ""))
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        log.log(LOG_LEVELS.get(level, logging.INFO), text)

    def _on_environment(self, environment: Environment) -> None:
        first = self.environment is None
        self.environment = environment
        self.source_panel.set_cameras(environment.cameras)
        self.source_panel.select_camera(self.settings.camera_index, self.settings.camera_resolution)
        running = self.model_panel.model() or self.settings.model
        self.model_panel.set_models(environment.models, running)
        self.model_panel.set_backend_availability(environment.backends)
        self.model_panel.set_precision_files(
            {name: precision_files(name, self.worker.assets_dir) for name in environment.models}
        )
        if self.settings.backend != "auto":
            self.model_panel.select_backend(self.settings.backend)
        if not environment.models:
            self.show_message("error", "No landmark model is installed: the video is shown without tracking")
        if first and not self._source_requested:
            self._open_start_source(environment)

    def _open_start_source(self, environment: Environment) -> None:
        """Reopen the last source if it is still there; else a camera; else ask for a file."""
        s = self.settings
        if s.source_kind in ("video", "clip") and s.source_path and Path(s.source_path).exists():
            self.open_source(SourceSpec(s.source_kind, s.source_path), play=False)
            return
        if s.source_kind in ("video", "clip") and s.source_path:
            self.show_message("warning", f"The last source is gone: {s.source_path}")
        if environment.cameras:
            index = s.camera_index if s.camera_index in environment.cameras else environment.cameras[0]
            self.open_source(SourceSpec("camera", camera_index=index,
                                        resolution=parse_resolution(s.camera_resolution)))
            return
        self.welcome_label.setText(NO_CAMERA_TEXT)
        self.show_message("info", "No camera found: open a video file or a 300-VW clip")
        if self._open_picker_when_idle:
            self.choose_video()

    def _on_source_opened(self, info: SourceInfo) -> None:
        self.source_info = info
        spec = info.spec
        if spec.kind == "camera":
            size = f"{spec.resolution[0]}x{spec.resolution[1]}" if spec.resolution else self.settings.camera_resolution
            self.settings = replace(self.settings, source_kind="camera", camera_index=spec.camera_index,
                                    camera_resolution=size)
        else:
            self.settings = replace(self.settings, source_kind=spec.kind, source_path=spec.path)
        if self._file_dialog is not None:
            self._file_dialog.close()
        self.view.clear()
        self.stack.setCurrentWidget(self.view)
        self._paint_times.clear()
        self._latencies.clear()
        self.error_plot.reset(info.frame_count)
        self.clip_row.setVisible(info.has_ground_truth)
        self.nme_label.setText("NME (68 pts, inter-ocular): –")
        self._updating_slider = True
        self.seek_slider.setRange(0, max(0, (info.frame_count or 1) - 1))
        self.seek_slider.setValue(0)
        self._updating_slider = False
        self.setWindowTitle(f"facetrack68 – {Path(spec.path).name if spec.path else spec.label}")
        self._update_transport()
        self.show_message("info", f"Opened {spec.label}")

    def _on_source_failed(self, spec: SourceSpec, message: str) -> None:
        if self.source_info is None:
            self.welcome_label.setText(f"Could not open {spec.label}.\nOpen another video file or 300-VW clip.")

    def _on_source_lost(self, message: str) -> None:
        self.source_info = None
        self._update_transport()
        self.stack.setCurrentWidget(self.welcome)
        self.welcome_label.setText(f"{message}\n\nStart a camera again or open a video file.")
        self._refresh_environment()

    def _on_playing_changed(self, playing: bool) -> None:
        self.playing = playing
        self._update_transport()

    def _update_transport(self) -> None:
        info = self.source_info
        files = info is not None and info.seekable
        self.play_action.setText("Pause" if self.playing else "Play")
        self.play_action.setEnabled(True)
        self.step_forward_action.setEnabled(info is not None)
        self.step_back_action.setEnabled(files)
        self.seek_slider.setEnabled(files)
        self.record_action.setEnabled(info is not None or self.recording is not None)
        self.snapshot_action.setEnabled(info is not None)

    def _on_model_loading(self, name: str, backend: str) -> None:
        self.model_panel.show_loading(name, backend)
        self.progress_bar.setRange(0, 0)  # busy until a fraction arrives
        self.progress_bar.setFormat(f"Loading {name}")
        self.progress_bar.setVisible(True)

    def _on_model_progress(self, fraction: float) -> None:
        if fraction < 0:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 100)
            self.progress_bar.setValue(round(100 * min(1.0, fraction)))

    def _on_model_ready(self, info: ModelInfo) -> None:
        self.progress_bar.setVisible(False)
        self.model_panel.show_running(info.name, info.backend, info.load_seconds, info.cached)
        self.settings = replace(self.settings, model=info.name, backend=info.requested_backend)
        if info.name != "mediapipe68":
            self.model_panel.select_backend(info.requested_backend)

    def _on_model_failed(self, name: str, backend: str, message: str) -> None:
        self.progress_bar.setVisible(False)

    def _on_detector_ready(self, name: str, model_file: str) -> None:
        self.settings = replace(self.settings, detector=name)
        self.model_panel.select_detector(name)

    def _on_detector_failed(self, name: str, model_file: str, message: str) -> None:
        """Show the detector that still runs (the worker falls back to the default one if none does)."""
        self.model_panel.select_detector(self.settings.detector if self.settings.detector != name else DEFAULT_DETECTOR)

    def _on_frame(self, packet: FramePacket) -> None:
        self.worker.frame_shown()
        if self._closing:
            return
        self.last_packet = packet
        self.view.show_packet(packet)
        if self.stack.currentWidget() is not self.view:
            self.stack.setCurrentWidget(self.view)
        if not self.seek_slider.isSliderDown():
            self._updating_slider = True
            self.seek_slider.setValue(packet.index)
            self._updating_slider = False
        total = f" / {packet.frame_count}" if packet.frame_count else ""
        self.frame_label.setText(f"frame {packet.index + 1}{total}")
        self.geometry_panel.show_faces(packet.geometry)
        if packet.accuracy is not None:
            self._show_accuracy(packet)
        if packet.recording is not None and self.recording is not None:
            self.recording = packet.recording

    def _show_accuracy(self, packet: FramePacket) -> None:
        acc = packet.accuracy
        if acc.frame_nme is not None:
            self.error_plot.add(packet.index, acc.frame_nme)
        frame = "miss" if acc.frame_nme is not None and math.isinf(acc.frame_nme) else (
            "–" if acc.frame_nme is None else f"{acc.frame_nme:.4f}")
        mean = "–" if math.isnan(acc.mean_nme) else f"{acc.mean_nme:.4f}"
        self.nme_label.setText(
            f"NME (68 pts, inter-ocular)\nframe {frame} · running mean {mean}\n"
            f"{acc.scored_frames} frames scored, {acc.misses} missed"
        )

    def _on_painted(self, packet: FramePacket, painted_at: float) -> None:
        self.frames_shown += 1
        self._paint_times.append(painted_at)
        self._latencies.append((painted_at - packet.read_time) * 1000.0)
        if painted_at - self._display_label_updated < DISPLAY_LABEL_PERIOD_S:
            return
        self._display_label_updated = painted_at
        if len(self._paint_times) >= 2 and self._paint_times[-1] > self._paint_times[0]:
            fps = (len(self._paint_times) - 1) / (self._paint_times[-1] - self._paint_times[0])
            latency = statistics.median(self._latencies)
            dropped = f" · {packet.dropped_frames} dropped" if packet.dropped_frames else ""
            self.display_label.setText(f"display {fps:.1f} fps · latency {latency:.0f} ms{dropped}")

    # -- settings and closing --------------------------------------------------------------------
    def current_settings(self) -> AppSettings:
        options = self.tracking_panel.options()
        return replace(
            self.settings,
            camera_resolution=self.source_panel.resolution_text() or self.settings.camera_resolution,
            smoothing=options.smoothing,
            min_cutoff=options.one_euro.min_cutoff,
            beta=options.one_euro.beta,
            d_cutoff=options.one_euro.d_cutoff,
            redetect_interval=options.tracker.redetect_interval,
            max_faces=options.tracker.max_faces,
            max_speed=self.source_panel.max_speed_box.isChecked(),
            overlay=self.overlay_panel.overlay(),
        )

    def save(self) -> None:
        self.settings = self.current_settings()
        save_settings(self.store, self.settings)
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the worker (it finishes a running recording) before the window goes."""
        if not self._closing:
            self._closing = True
            self.save()
            if self._file_dialog is not None:
                self._file_dialog.close()
            if self.recording is not None:
                self.show_message("info", "Finishing the recording…")
            if not self.worker.stop(STOP_TIMEOUT_MS):
                log.error("closing while the tracking worker is still busy")
        event.accept()

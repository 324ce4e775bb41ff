"""The window's files: choosing videos, clips, folders and detector files in non-blocking
dialogs, where recordings and snapshots go, and the recording controls.

``FileActions`` is a part of ``app.gui.window.MainWindow`` (a mixin): it uses the window's
``settings``, ``worker``, ``model_panel``, ``record_action``, ``record_button``,
``recording_label``, ``recording`` and ``show_message``.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtWidgets import QFileDialog

from app.gui.values import RecordingInfo
from app.output_paths import OutputCollision, check_outputs
from app.recording import DEFAULT_VIDEO_SUFFIX

VIDEO_FILTER = "Videos (*.mp4 *.m4v *.mov *.avi *.mkv *.webm *.wmv *.mpg *.mpeg *.ts *.flv *.3gp);;All files (*)"


def default_record_dir() -> Path:
    movies = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    return Path(movies or Path.home()) / "facetrack68"


class FileActions:
    """The window's file dialogs, recording and snapshots (see the module docstring)."""

    def _start_dir(self) -> str:
        path = Path(self.settings.source_path) if self.settings.source_path else None
        return str(path.parent) if path and path.parent.is_dir() else str(Path.home())

    def _dialog(self, title: str, mode: QFileDialog.FileMode, name_filter: str | None, on_chosen) -> QFileDialog:
        """A non-blocking file dialog: the stream keeps running while it is open."""
        if self._file_dialog is not None:
            self._file_dialog.close()
        dialog = QFileDialog(self, title, self._start_dir())
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog)
        dialog.setFileMode(mode)
        if mode == QFileDialog.FileMode.Directory:
            dialog.setOption(QFileDialog.Option.ShowDirsOnly)
        if name_filter:
            dialog.setNameFilter(name_filter)
        dialog.fileSelected.connect(on_chosen)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda: setattr(self, "_file_dialog", None))
        self._file_dialog = dialog
        dialog.open()
        return dialog

    @property
    def file_dialog(self) -> QFileDialog | None:
        return self._file_dialog

    def choose_video(self) -> QFileDialog:
        return self._dialog("Open video", QFileDialog.FileMode.ExistingFile, VIDEO_FILTER, self.open_video)

    def choose_clip(self) -> QFileDialog:
        return self._dialog("Open 300-VW clip folder", QFileDialog.FileMode.Directory, None, self.open_clip)

    def choose_record_dir(self) -> QFileDialog:
        return self._dialog("Recording folder", QFileDialog.FileMode.Directory, None, self.set_record_dir)

    def choose_detector_file(self, name: str) -> QFileDialog:
        return self._dialog(f"{name} ONNX file", QFileDialog.FileMode.ExistingFile, "ONNX models (*.onnx)",
                            lambda path: self.set_detector_file(name, path))

    def set_record_dir(self, path: str) -> None:
        self.settings = replace(self.settings, record_dir=str(path))
        self.show_message("info", f"Recordings go to {path}")

    def set_detector_file(self, name: str, path: str) -> None:
        """Offer ``name`` (retinaface / yunet) with this ONNX file and switch to it."""
        files = {"retinaface": self.settings.retinaface_file, "yunet": self.settings.yunet_file, name: str(path)}
        self.settings = replace(self.settings, retinaface_file=files["retinaface"], yunet_file=files["yunet"])
        self.model_panel.set_detector_files(files)
        self.model_panel.select_detector(name)
        self.worker.set_detector(name, str(path))

    def record_paths(self) -> tuple[Path, Path]:
        """A video and a CSV that are not there yet: ``facetrack_<date>_<time>``, with ``_2``, ``_3``,
        ... when a file of that second exists (an earlier recording, or the very video playing)."""
        folder = Path(self.settings.record_dir) if self.settings.record_dir else default_record_dir()
        stem = f"facetrack_{datetime.now():%Y%m%d_%H%M%S}"
        name, number = stem, 1
        while any(os.path.lexists(folder / f"{name}{suffix}") for suffix in (DEFAULT_VIDEO_SUFFIX, ".csv")):
            number += 1
            name = f"{stem}_{number}"
        return folder / f"{name}{DEFAULT_VIDEO_SUFFIX}", folder / f"{name}.csv"

    def toggle_recording(self) -> None:
        if self.recording is not None:
            self.worker.stop_recording()
        else:
            video, landmarks = self.record_paths()
            source = self.source_info.spec.path if self.source_info is not None else ""
            try:  # the command line's check (exit 2 there): no output is the source or the other output
                check_outputs([source] if source else [], {"recording": video, "landmarks": landmarks})
            except OutputCollision as error:
                self.show_message("error", f"Not recording: {error}")
            else:
                self.worker.start_recording(video, landmarks)
        self.record_action.setChecked(self.recording is not None)  # the worker's answer sets it

    def snapshot(self) -> Path:
        folder = Path(self.settings.record_dir) if self.settings.record_dir else default_record_dir()
        path = folder / f"snapshot_{datetime.now():%Y%m%d_%H%M%S_%f}.png"
        self.worker.snapshot(path)
        return path

    def _on_recording_changed(self, info: RecordingInfo | None) -> None:
        started = info is not None and self.recording is None
        self.recording = info
        self.record_action.setChecked(info is not None)
        self.record_action.setText("■ Stop" if info is not None else "● Record")
        self.record_button.setStyleSheet("color: #c62828; font-weight: bold;" if info is not None else "")
        self.recording_label.setVisible(info is not None)
        if started:
            self._recording_started = time.monotonic()
            self._recording_timer.start()
            self._update_recording_label()
        elif info is None:
            self._recording_timer.stop()
        self._update_transport()

    def _update_recording_label(self) -> None:
        if self.recording is None:
            return
        elapsed = int(time.monotonic() - self._recording_started)
        self.recording_label.setText(
            f"● REC {elapsed // 60:02d}:{elapsed % 60:02d} · {self.recording.frames} frames"
        )

"""The desktop window in the real Qt (offscreen), with the real worker thread, models and shared clips."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRect, QSize, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from app.gui.capture import LatestFrameGrabber  # noqa: E402
from app.gui.settings import AppSettings, load_settings, open_qsettings, save_settings  # noqa: E402
from app.gui.values import SourceSpec  # noqa: E402
from app.gui.widgets.video_view import fit_rect  # noqa: E402
from app.overlay import OverlayOptions  # noqa: E402
from app.recording import read_landmark_csv  # noqa: E402
from app.sources import CameraSource, SourceError, VideoFileSource  # noqa: E402
from models.registry import available_models  # noqa: E402
from tests.gui_harness import PLAY_S, START_S, Recorder, errors, make_window, wait_frames  # noqa: E402,F401


def test_starts_without_camera_with_a_message_and_the_file_picker(qtbot, make_window):
    window = make_window(open_picker_when_idle=True)
    qtbot.waitUntil(lambda: window.environment is not None, timeout=START_S * 1000)
    if window.environment.cameras:
        pytest.skip(f"cameras are present here: {window.environment.cameras}")
    assert window.stack.currentWidget() is window.welcome
    assert "No camera found" in window.welcome_label.text()
    assert "No camera found" in window.message_label.text()
    assert not window.source_panel.camera_combo.isEnabled()
    assert window.source_panel.camera_combo.currentText() == "No camera found"
    assert window.file_dialog is not None and window.file_dialog.isVisible()
    assert errors(window) == []
    assert window.environment.models == tuple(available_models())


def test_opens_and_plays_a_talking_clip_frame_by_frame(qtbot, make_window, talking_clip):
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 40)
    assert window.source_info.frame_count == 183
    assert window.stack.currentWidget() is window.view
    indices = recorder.indices
    assert indices == list(range(len(indices))), "a file must be processed frame by frame, none skipped"
    tracked = [p for p in recorder.packets if p.tracked]
    assert len(tracked) == len(recorder.packets)
    assert sum(p.faces >= 1 for p in tracked) >= 0.9 * len(tracked)
    qtbot.waitUntil(lambda: window.frames_shown >= 10, timeout=10000)
    image, area = recorder.packets[-1].image, window.view.device_area()
    assert image.width() == image.height() == min(area.width(), area.height()), "scaled by the worker to fit"
    assert window.view.image_rect().size() == image.size()
    assert window.seek_slider.value() > 0 and "fps" in window.display_label.text()
    assert errors(window) == []

    window.worker.pause()
    qtbot.waitUntil(lambda: not window.playing, timeout=10000)
    count = len(recorder.packets)
    current = recorder.packets[-1].index
    window.step(1)
    qtbot.waitUntil(lambda: len(recorder.packets) == count + 1, timeout=10000)
    assert recorder.packets[-1].index == current + 1
    window.step(-1)
    qtbot.waitUntil(lambda: len(recorder.packets) == count + 2, timeout=10000)
    assert recorder.packets[-1].index == current
    window.seek(150)
    qtbot.waitUntil(lambda: recorder.packets[-1].index == 150, timeout=10000)
    qtbot.wait(300)
    assert not window.playing and recorder.packets[-1].index == 150


def test_switching_model_during_playback_skips_no_frame(qtbot, make_window, talking_clip):
    models = available_models()
    assert len(models) >= 2, (
        f"switching models needs two installed landmark models, available_models() gives {models}: "
        "export a trained network (mnv2_sdd / r18_ffld) into assets/"
    )
    first, second = models[:2]
    window = make_window(model=first, max_speed=False)
    recorder = Recorder(window)
    ready = []
    window.worker.model_ready.connect(ready.append)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 10)
    window.model_panel.model_combo.setCurrentIndex(window.model_panel.model_combo.findData(second))
    qtbot.waitUntil(lambda: recorder.packets[-1].model == second, timeout=PLAY_S * 1000)
    switched_at = len(recorder.packets)
    wait_frames(qtbot, recorder, switched_at + 5)
    window.model_panel.model_combo.setCurrentIndex(window.model_panel.model_combo.findData(first))
    qtbot.waitUntil(lambda: recorder.packets[-1].model == first, timeout=PLAY_S * 1000)

    indices = recorder.indices
    assert indices == list(range(len(indices))), "no frame may be skipped while a model loads"
    models_seen = [p.model for p in recorder.packets]
    assert models_seen[0] == first and second in models_seen and models_seen[-1] == first
    assert all(p.tracked for p in recorder.packets)
    assert ready[-1].name == first and ready[-1].cached, "switching back must reuse the loaded model"
    assert [p for p in recorder.packets if p.model_switch_ms is not None], "switches are timed"
    assert errors(window) == []


def test_records_a_playable_video_and_landmarks_then_stops(qtbot, make_window, talking_clip, tmp_path):
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 5)
    window.toggle_recording()
    qtbot.waitUntil(lambda: window.recording is not None, timeout=10000)
    assert window.recording_label.isVisible() and "REC" in window.recording_label.text()
    qtbot.waitUntil(lambda: sum(p.recording is not None for p in recorder.packets) >= 30, timeout=PLAY_S * 1000)
    window.toggle_recording()
    qtbot.waitUntil(lambda: window.recording is None, timeout=10000)
    assert not window.recording_label.isVisible()

    recorded = [p for p in recorder.packets if p.recording is not None]
    video = Path(recorded[0].recording.video)
    assert video.parent == tmp_path / "recordings" and video.suffix == ".avi"
    with VideoFileSource(video) as source:
        frames = list(source)
    assert len(frames) == len(recorded) == recorded[-1].recording.frames
    assert frames[0].image.shape == (512, 512, 3)
    table = read_landmark_csv(recorded[0].recording.landmarks)
    with_face = {p.index for p in recorded if p.faces}
    assert set(table.frame.tolist()) == with_face
    assert any("Saved recording" in text for _, text in window.messages)


def test_closing_during_a_recording_finishes_the_file(qtbot, make_window, talking_clip):
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 3)
    window.toggle_recording()
    qtbot.waitUntil(lambda: sum(p.recording is not None for p in recorder.packets) >= 15, timeout=PLAY_S * 1000)
    window.close()
    assert not window.worker.isRunning()
    recorded = [p for p in recorder.packets if p.recording is not None]
    with VideoFileSource(recorded[0].recording.video) as source:
        frames = list(source)
    # Frames the worker had already written but the closed window never received count too.
    assert len(recorded) <= len(frames) <= len(recorded) + 2
    assert len(read_landmark_csv(recorded[0].recording.landmarks).frame) >= len(recorded) - 2


def test_a_bad_file_goes_to_the_status_bar_and_playback_continues(qtbot, make_window, talking_clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 100)
    window = make_window()
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 5)
    window.open_video(broken)
    qtbot.waitUntil(lambda: any("broken.mp4" in text for text in errors(window)), timeout=20000)
    assert "broken.mp4" in window.message_label.text()
    count = len(recorder.packets)
    wait_frames(qtbot, recorder, count + 5)
    assert window.source_info.spec.path == str(talking_clip)
    assert recorder.indices == list(range(len(recorder.packets)))


def test_a_bad_file_at_start_keeps_the_picker(qtbot, make_window, tmp_path):
    window = make_window()
    qtbot.waitUntil(lambda: window.environment is not None, timeout=START_S * 1000)
    window.open_video(tmp_path / "missing.mp4")
    qtbot.waitUntil(lambda: bool(errors(window)), timeout=10000)
    assert "missing.mp4" in errors(window)[-1]
    assert window.stack.currentWidget() is window.welcome
    assert "Could not open" in window.welcome_label.text()
    assert window.source_info is None


@pytest.mark.peers("mediapipe")  # with no network installed, the fallback is mediapipe68
def test_a_missing_model_falls_back_and_keeps_tracking(qtbot, make_window, talking_clip, tmp_path):
    empty_assets = tmp_path / "assets"
    empty_assets.mkdir()
    window = make_window(model="mnv2_sdd", assets_dir=empty_assets, max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 10)
    failure = [text for text in errors(window) if "mnv2_sdd" in text]
    assert failure and "not installed" in failure[0]
    fallback = available_models(empty_assets)[0]
    assert all(p.tracked and p.model == fallback for p in recorder.packets)
    assert window.model_panel.model() == fallback

    # A model that fails while another runs: the running one carries on, the stream does not stop.
    window.worker.set_model("r18_ffld", "ort-cpu")
    qtbot.waitUntil(lambda: any("r18_ffld" in text for text in errors(window)), timeout=30000)
    count = len(recorder.packets)
    wait_frames(qtbot, recorder, count + 5)
    assert all(p.model == fallback for p in recorder.packets)
    assert window.model_panel.model() == fallback
    assert recorder.indices == list(range(len(recorder.packets)))


def test_300vw_clip_shows_ground_truth_and_running_nme(qtbot, make_window, data_dir):
    clip = data_dir / "300vw_sample" / "001"
    window = make_window()
    for layer in ("points", "contours"):  # an accurate fit would cover the ground-truth crosses
        window.overlay_panel.boxes[layer].setChecked(False)
    recorder = Recorder(window)
    window.open_clip(clip)
    qtbot.waitUntil(lambda: len([p for p in recorder.packets if p.accuracy]) >= 2, timeout=START_S * 1000)
    assert window.clip_row.isVisible()
    last = recorder.packets[-1].accuracy
    assert last.scored_frames == 2 and last.misses == 0
    assert 0 < last.frame_nme < 0.15 and 0 < last.mean_nme < 0.15
    assert sorted(window.error_plot.errors) == [0, 1]
    assert "running mean" in window.nme_label.text()
    # Ground truth is drawn (magenta crosses) unless switched off.
    with_truth = recorder.packets[-1].image
    window.overlay_panel.boxes["ground_truth"].setChecked(False)
    window.seek(1)
    qtbot.waitUntil(lambda: len(recorder.packets) >= 3, timeout=20000)
    assert _magenta_pixels(with_truth) > 20 * _magenta_pixels(recorder.packets[-1].image) + 20


def _magenta_pixels(image) -> int:
    bits = image.constBits()
    array = np.frombuffer(bits, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    b, g, r = (array[..., k].astype(int) for k in range(3))
    return int(((r > 200) & (b > 200) & (g < 120)).sum())


def test_shortcuts_play_step_snapshot_and_record(qtbot, make_window, talking_clip):
    window = make_window()
    recorder = Recorder(window)
    window.open_video(talking_clip, play=False)
    wait_frames(qtbot, recorder, 1)
    window.activateWindow()
    window.setFocus()
    QTest.keyClick(window, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: recorder.indices[-1] == 1, timeout=20000)
    QTest.keyClick(window, Qt.Key.Key_Left)
    qtbot.waitUntil(lambda: len(recorder.packets) == 3 and recorder.indices[-1] == 0, timeout=20000)
    saved = []
    window.worker.snapshot_saved.connect(saved.append)
    QTest.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: bool(saved), timeout=10000)
    snapshot = cv2.imread(saved[0])
    assert snapshot is not None and snapshot.shape == (512, 512, 3)
    QTest.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.recording is not None, timeout=10000)
    QTest.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.playing, timeout=10000)
    wait_frames(qtbot, recorder, 10)
    QTest.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not window.playing, timeout=10000)
    QTest.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.recording is None, timeout=10000)
    assert errors(window) == []


def test_settings_are_remembered_between_runs(qtbot, make_window, data_dir):
    clip = data_dir / "300vw_sample" / "401"
    window = make_window()
    recorder = Recorder(window)
    window.open_clip(clip)
    wait_frames(qtbot, recorder, 1)
    window.overlay_panel.boxes["box"].setChecked(True)
    window.overlay_panel.boxes["stats_panel"].setChecked(False)
    window.tracking_panel.smoothing_box.setChecked(False)
    window.tracking_panel.redetect_spin.setValue(7)
    window.tracking_panel.max_faces_spin.setValue(2)
    window.source_panel.max_speed_box.setChecked(True)
    window.close()

    again = make_window()
    assert again.overlay_panel.overlay() == OverlayOptions(box=True, stats_panel=False)
    options = again.tracking_panel.options()
    assert not options.smoothing and options.tracker.redetect_interval == 7 and options.tracker.max_faces == 2
    assert again.source_panel.max_speed_box.isChecked()
    qtbot.waitUntil(lambda: again.source_info is not None, timeout=START_S * 1000)
    assert again.source_info.spec == SourceSpec("clip", str(clip))
    assert not again.playing, "a remembered source reopens paused"


def test_settings_round_trip_and_bad_values(tmp_path):
    store = open_qsettings(str(tmp_path / "s.ini"))
    settings = AppSettings(model="r18_ffld", backend="ort-cpu", min_cutoff=1.5, max_faces=3,
                           overlay=OverlayOptions(points=False, confidence_colours=True))
    save_settings(store, settings)
    assert load_settings(open_qsettings(str(tmp_path / "s.ini"))) == settings
    store.setValue("max_faces", "many")
    store.setValue("min_cutoff", "-1")
    loaded = load_settings(store)
    assert loaded.max_faces == AppSettings().max_faces and loaded.min_cutoff == AppSettings().min_cutoff


def test_backend_dropdown_disables_unavailable_backends_with_the_reason(qtbot, make_window):
    import engines

    window = make_window()
    qtbot.waitUntil(lambda: window.environment is not None, timeout=START_S * 1000)
    combo = window.model_panel.backend_combo
    for backend, reason in engines.backend_availability().items():
        item = combo.model().item(combo.findData(backend.value))
        assert item.text() == backend.label
        assert item.isEnabled() == (reason is None)
        if reason is not None:
            assert item.toolTip() == reason


def test_detector_choice_needs_its_file_and_a_bad_one_keeps_the_default(qtbot, make_window, talking_clip,
                                                                        detectors_dir, tmp_path):
    window = make_window()
    combo = window.model_panel.detector_combo
    for shipped in ("auto", "blazeface", "mtcnn"):  # need no file
        assert combo.model().item(combo.findData(shipped)).isEnabled()
    yunet_row = combo.findData("yunet")
    assert not combo.model().item(yunet_row).isEnabled() and "Detector file" in combo.model().item(yunet_row).toolTip()
    recorder = Recorder(window)
    ready, failed = [], []
    window.worker.detector_ready.connect(lambda name, path: ready.append(name))
    window.worker.detector_failed.connect(lambda name, path, message: failed.append(message))
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 3)
    bad = tmp_path / "not_a_model.onnx"
    bad.write_text("nope")
    window.set_detector_file("retinaface", str(bad))
    qtbot.waitUntil(lambda: bool(failed), timeout=30000)
    assert any("retinaface" in text.lower() for text in errors(window))
    assert window.model_panel.detector() == "auto"
    window.set_detector_file("yunet", str(detectors_dir / "yunet_n_640_640.onnx"))
    qtbot.waitUntil(lambda: "yunet" in ready, timeout=30000)
    assert combo.model().item(yunet_row).isEnabled() and window.model_panel.detector() == "yunet"
    window.seek(0)  # a seek re-detects: YuNet finds the face
    count = len(recorder.packets)
    wait_frames(qtbot, recorder, count + 3)
    assert recorder.packets[-1].faces == 1


def test_the_shipped_mtcnn_detector_is_chosen_without_a_file(qtbot, make_window, talking_clip):
    window = make_window()
    assert window.model_panel.detector() == "auto"  # the default: BlazeFace on this 512 px clip
    recorder = Recorder(window)
    ready = []
    window.worker.detector_ready.connect(lambda name, path: ready.append((name, path)))
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 3)
    combo = window.model_panel.detector_combo
    combo.setCurrentIndex(combo.findData("mtcnn"))  # as a user picks it
    qtbot.waitUntil(lambda: ("mtcnn", "") in ready, timeout=30000)
    window.seek(0)  # a seek re-detects, now with MTCNN
    count = len(recorder.packets)
    wait_frames(qtbot, recorder, count + 3)
    assert recorder.packets[-1].faces == 1 and window.settings.detector == "mtcnn"


def test_video_view_scales_with_the_window_and_keeps_the_aspect_ratio(qtbot, make_window, talking_clip):
    assert fit_rect(QSize(640, 480), QRect(0, 0, 800, 800)) == QRect(0, 100, 800, 600)
    assert fit_rect(QSize(1280, 720), QRect(10, 0, 400, 900)) == QRect(10, 337, 400, 225)
    window = make_window()
    recorder = Recorder(window)
    window.open_video(talking_clip, play=False)
    wait_frames(qtbot, recorder, 1)
    sizes = []
    for width, height in ((900, 600), (1500, 1000)):
        window.resize(width, height)
        qtbot.waitUntil(lambda: window.view.width() > 0, timeout=5000)
        QTest.qWait(100)
        rect = window.view.image_rect()
        assert abs(rect.width() - rect.height()) <= 1  # the clip is square
        assert rect.width() == min(window.view.width(), window.view.height())
        sizes.append(rect.width())
    assert sizes[1] > sizes[0]


def test_live_sources_keep_only_the_latest_frame(talking_clip):
    """A real decoder read as a camera (``CameraSource._from_capture``), consumed slowly: stale frames drop."""
    import time

    source = CameraSource._from_capture(cv2.VideoCapture(str(talking_clip)), index=0)
    grabber = LatestFrameGrabber(source, on_frame=lambda: None)
    taken, lags = [], []
    try:
        while True:
            time.sleep(0.03)  # a slow model
            try:
                item = grabber.take()
            except SourceError:  # the "camera" ran out of frames
                break
            if item is not None:
                frame, arrived = item
                taken.append(frame.index)
                lags.append(time.perf_counter() - arrived)
    finally:
        grabber.stop()
    assert grabber.dropped > 0 and len(taken) + grabber.dropped <= 183
    assert taken == sorted(set(taken))
    assert max(lags) < 0.5, "a taken frame is never older than one consumer period (plus scheduling)"
    assert source.closed
    assert math.isfinite(float(np.median(lags)))


def test_a_remembered_detector_file_that_is_gone_falls_back_to_the_default(qtbot, make_window, talking_clip,
                                                                           tmp_path):
    store = open_qsettings(str(tmp_path / "gone.ini"))
    save_settings(store, AppSettings(detector="yunet", yunet_file=str(tmp_path / "deleted_yunet.onnx"),
                                     record_dir=str(tmp_path)))
    window = make_window("gone.ini")
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 5)
    assert any("deleted_yunet.onnx" in text for text in errors(window))
    assert window.model_panel.detector() == "auto"
    assert all(p.tracked for p in recorder.packets) and recorder.packets[-1].faces == 1


def test_model_loading_progress_shows_without_blocking_the_window(qtbot, make_window):
    """The signals a TensorRT engine build sends from the loader thread (no GPU here: sent by hand)."""
    import threading

    window = make_window()
    qtbot.waitUntil(lambda: window.model_panel.status_label.text().startswith("Running"), timeout=START_S * 1000)
    release = threading.Event()

    def build() -> None:
        window.worker.model_loading.emit("mnv2_sdd", "tensorrt")
        window.worker.model_progress.emit(0.25)
        release.wait(10)
        window.worker.model_progress.emit(1.0)

    loader = threading.Thread(target=build)
    loader.start()
    qtbot.waitUntil(lambda: window.progress_bar.isVisible() and window.progress_bar.value() == 25, timeout=5000)
    assert "Loading mnv2_sdd for TensorRT FP16" in window.model_panel.status_label.text()
    window.overlay_panel.boxes["box"].setChecked(True)  # the window answers while the "build" runs
    assert window.overlay_panel.overlay().box
    release.set()
    loader.join()
    qtbot.waitUntil(lambda: window.progress_bar.value() == 100, timeout=5000)


def test_command_line_source_specs(tmp_path, talking_clip, data_dir):
    from app.gui.main import main, source_spec

    assert source_spec("0") == SourceSpec("camera", camera_index=0)
    assert source_spec("camera:2") == SourceSpec("camera", camera_index=2)
    assert source_spec(str(talking_clip)) == SourceSpec("video", str(talking_clip))
    clip = data_dir / "300vw_sample" / "001"
    assert source_spec(str(clip)) == SourceSpec("clip", str(clip))
    if not sys.platform.startswith("linux"):
        return
    env = dict(os.environ)
    try:
        for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
            os.environ.pop(name, None)
        assert main(["run_app.py"]) == 2  # no display: a clear message, not a crash
    finally:
        os.environ.clear()
        os.environ.update(env)

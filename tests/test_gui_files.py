"""The window and the user's files: recordings that never overwrite, unusable folders, a full disk,
truncated and tiny videos, SIGTERM during a recording (real Qt offscreen, real worker and clips)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.conftest import truncated_mjpg  # noqa: E402
from tests.gui_harness import PLAY_S, Recorder, errors, make_window, wait_frames  # noqa: E402,F401


def test_recording_into_an_unusable_folder_is_reported_and_playback_goes_on(qtbot, make_window, talking_clip,
                                                                            tmp_path):
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("x")
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 3)
    window.set_record_dir(str(not_a_folder / "sub"))
    window.toggle_recording()
    qtbot.waitUntil(lambda: any("Cannot record" in text for text in errors(window)), timeout=10000)
    assert window.recording is None and not window.record_action.isChecked()
    count = len(recorder.packets)
    wait_frames(qtbot, recorder, count + 5)
    assert recorder.indices == list(range(len(recorder.packets)))


def test_a_recording_never_overwrites_the_video_playing_or_an_earlier_recording(qtbot, make_window, talking_clip,
                                                                                tmp_path):
    import hashlib
    import shutil
    from datetime import datetime, timedelta

    folder = tmp_path / "recordings"
    folder.mkdir()
    playing = folder / "playing.mp4"
    shutil.copyfile(talking_clip, playing)
    # Every name the next minutes would give is taken: the video (hard links to the one playing) and
    # the CSV (an earlier recording's).
    start = datetime.now()
    for second in range(-2, 400):
        stem = f"facetrack_{start + timedelta(seconds=second):%Y%m%d_%H%M%S}"
        os.link(playing, folder / f"{stem}.avi")
        (folder / f"{stem}.csv").write_text("frame\n")

    def state():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    before = state()
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(folder / f"facetrack_{start:%Y%m%d_%H%M%S}.avi")
    wait_frames(qtbot, recorder, 3)
    window.toggle_recording()
    qtbot.waitUntil(lambda: sum(p.recording is not None for p in recorder.packets) >= 5, timeout=PLAY_S * 1000)
    window.toggle_recording()
    qtbot.waitUntil(lambda: window.recording is None, timeout=10000)
    recorded = next(p.recording for p in recorder.packets if p.recording is not None)
    video, landmarks = Path(recorded.video), Path(recorded.landmarks)
    assert video.name not in before and landmarks.name not in before
    assert video.stem.endswith("_2") and landmarks.stem == video.stem
    after = state()
    assert {name: after[name] for name in before} == before
    assert errors(window) == []


def _written_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def test_a_full_disk_while_recording_stops_the_recording_with_a_true_figure_and_tracking_goes_on(
    qtbot, make_window, talking_clip
):
    """A full disk without root: this process's file-size limit (RLIMIT_FSIZE) is lowered to 100 kB while it
    records, with SIGXFSZ ignored, so writes past it fail with EFBIG as they fail with ENOSPC on a full
    drive. The landmark file fills first (the video's failure shows a little later, see app/recording.py)."""
    import resource
    import signal

    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 3)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, limits[1]))
    try:
        window.toggle_recording()
        qtbot.waitUntil(lambda: any("Recording stopped" in text for text in errors(window)), timeout=PLAY_S * 1000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    qtbot.waitUntil(lambda: window.recording is None, timeout=10000)
    message = window.message_label.text()
    assert message == errors(window)[-1] and "File too large" in message and ".csv" in message
    kept = re.search(r"Kept (\S+) and (\S+) \((\d+) frames\)", message)
    assert kept, message
    assert int(kept.group(3)) == _written_frames(kept.group(1))
    assert not any("Finishing the recording failed" in text for text in errors(window))
    assert not window.record_action.isChecked() and not window.recording_label.isVisible()
    count = len(recorder.packets)
    wait_frames(qtbot, recorder, count + 5)  # tracking goes on
    assert recorder.indices == list(range(len(recorder.packets))) and recorder.packets[-1].tracked


def test_a_truncated_video_ends_with_its_warning_in_the_status_bar(qtbot, make_window, talking_clip, tmp_path):
    clip = truncated_mjpg(talking_clip, tmp_path / "cut.avi", keep=0.3)
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(clip)
    qtbot.waitUntil(lambda: any("End of" in text for _, text in window.messages), timeout=PLAY_S * 1000)
    qtbot.wait(300)
    last = len(recorder.packets)
    assert re.fullmatch(rf"End of cut.avi: video ended at frame {last} of 183: the file looks truncated .*",
                        window.message_label.text())
    assert window.messages[-1][0] == "warning" and errors(window) == []


@pytest.mark.parametrize("size", [(640, 3), (3, 3)])
def test_frames_a_few_pixels_high_play_without_errors(qtbot, make_window, tmp_path, size):
    clip = tmp_path / "thin.avi"
    writer = cv2.VideoWriter(str(clip), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(20):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()
    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(clip)
    wait_frames(qtbot, recorder, 20)
    assert all(p.tracked for p in recorder.packets) and errors(window) == []


def test_sigterm_closes_the_window_and_finishes_the_recording(qtbot, make_window, talking_clip):
    import signal

    from app.gui.main import close_on_signals

    window = make_window(max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 3)
    previous = close_on_signals(window)
    try:
        window.toggle_recording()
        qtbot.waitUntil(lambda: sum(p.recording is not None for p in recorder.packets) >= 10, timeout=PLAY_S * 1000)
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=20000)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert not window.worker.isRunning()
    recorded = [p for p in recorder.packets if p.recording is not None]
    assert len(recorded) <= _written_frames(recorded[0].recording.video) <= len(recorded) + 2
    assert ("info", "Finishing the recording…") in window.messages

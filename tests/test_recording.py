"""Video and landmark recording: round trips, bad input, and surviving SIGKILL.

Run as a script to repeat the container/codec measurement behind app/recording.py:
    PYTHONPATH=. .venv/bin/python tests/test_recording.py
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.recording import (
    CSV_HEADER,
    GEOMETRY_COLUMNS,
    LandmarkCsvWriter,
    RecordingError,
    VideoRecorder,
    complete_avi_frames,
    read_landmark_csv,
)
from app.sources import VideoFileSource
from app.types import FaceResult, Frame, FrameResult
from models.datasets import data_root
from models.types import Landmarks

REPO = Path(__file__).resolve().parent.parent
SOURCE_VIDEO = data_root() / "videos" / "talking_d3.mp4"  # 512x512, 30 fps

# A recording process: stamps each frame's index as a bar code, writes it (and a CSV
# row), prints the index once write() has returned; stops and idles after `stop_after`
# frames (0: never); `pace` 1 writes in real time.
CHILD = r"""
import sys, time
import cv2, numpy as np
from app.recording import LandmarkCsvWriter, VideoRecorder
from app.types import FaceResult, Frame, FrameResult
from models.types import Landmarks
out, writer_spec, width, height, fps, stop_after, pace, csv_path, video = sys.argv[1:]
width, height, fps, stop_after, pace = int(width), int(height), float(fps), int(stop_after), int(pace)
capture = cv2.VideoCapture(video)
frames = [cv2.resize(capture.read()[1], (width, height)) for _ in range(30)]
if writer_spec == "recorder":
    writer = VideoRecorder(out, fps, (width, height))
else:
    api, fourcc = writer_spec.split(":")
    writer = cv2.VideoWriter(out, getattr(cv2, api), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened()
landmarks = LandmarkCsvWriter(csv_path) if csv_path != "-" else None
start = time.monotonic()
i = 0
while True:
    image = frames[i % 30].copy()
    for bit in range(12):
        image[0:32, bit * 32:(bit + 1) * 32] = 255 if (i >> bit) & 1 else 0
    writer.write(image)
    if landmarks:
        points = np.full((68, 2), float(i))
        frame = Frame(image, i, i / fps)
        face = FaceResult(1, Landmarks(points), Landmarks(points))
        landmarks.write(FrameResult(frame, (face,)))
    print(i, flush=True)
    i += 1
    if i == stop_after:
        print("idle", flush=True)
        time.sleep(600)
    if pace:
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
"""


def bar_code(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(12) if image[4:28, bit * 32 + 4 : bit * 32 + 28].mean() > 127)


def decoded_indices(path: Path) -> list[int]:
    capture = cv2.VideoCapture(str(path))
    indices = []
    while capture.isOpened():
        ok, image = capture.read()
        if not ok:
            break
        indices.append(bar_code(image))
    capture.release()
    return indices


def record_then_kill(out: Path, writer_spec="recorder", size=(512, 512), fps=30.0, stop_after=0, kill_at=0,
                     pace=False, csv_path: Path | None = None) -> int:
    """Run CHILD and SIGKILL it when it idles (stop_after) or has written kill_at frames.
    Returns how many write() calls had returned."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-c", CHILD, str(out), writer_spec, str(size[0]), str(size[1]), str(fps),
            str(stop_after), str(int(pace)), str(csv_path) if csv_path else "-", str(SOURCE_VIDEO)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env)
    watchdog = threading.Timer(120, child.kill)
    watchdog.start()
    written = 0
    try:
        for line in child.stdout:
            if line.strip() == "idle":
                break
            written = int(line) + 1
            if kill_at and written >= kill_at:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        watchdog.cancel()
    assert child.returncode == -signal.SIGKILL, "the recording process did not run until killed"
    return written


@pytest.fixture(scope="module")
def source_frames():
    capture = cv2.VideoCapture(str(SOURCE_VIDEO))
    frames = [capture.read()[1] for _ in range(40)]
    capture.release()
    return frames


# -- SIGKILL ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix, max_lost", [(".avi", 2), (".mkv", 30)])
def test_recording_survives_sigkill(tmp_path, suffix, max_lost):
    """Killed mid-recording, the file plays back every frame but the last second (.avi: all but one)."""
    out, csv_path = tmp_path / f"killed{suffix}", tmp_path / "killed.csv"
    written = record_then_kill(out, stop_after=90, csv_path=csv_path)
    assert written == 90
    indices = decoded_indices(out)
    assert indices == list(range(len(indices))), "frames decoded out of order or damaged"
    assert written - len(indices) <= max_lost
    if suffix == ".avi":  # what a failed recording reports as kept: the frames a reader decodes
        assert complete_avi_frames(out) == len(indices)
    table = read_landmark_csv(csv_path)  # flushed every frame: nothing lost
    assert table.frame.tolist() == list(range(90)) and not table.incomplete_last_row
    np.testing.assert_allclose(table.points[:, 0, 0], np.arange(90))
    with VideoFileSource(out) as source:  # the app reads it too, frame count unknown, seeking works
        assert source.frame_count is None
        assert source.frame_at(len(indices) - 1).index == len(indices) - 1
        assert bar_code(source.frame_at(10).image) == 10
        assert bar_code(source.step_back().image) == 9


# -- video round trip and bad input -------------------------------------------------
@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_video_round_trip(tmp_path, source_frames, suffix):
    path = tmp_path / f"out{suffix}"
    with VideoRecorder(path, 30, (512, 512)) as recorder:
        for image in source_frames:
            recorder.write(image)
        assert recorder.frames_written == 40
    with VideoFileSource(path) as source:
        assert (source.frame_count, source.fps, source.frame_size) == (40, 30.0, (512, 512))
        frames = list(source)
    assert len(frames) == 40
    for frame, original in zip(frames, source_frames):
        assert cv2.PSNR(frame.image, original) > 30


def test_avi_keeps_odd_frame_sizes(tmp_path, source_frames):
    path = tmp_path / "odd.avi"
    with VideoRecorder(path, 25, (341, 255)) as recorder:
        for image in source_frames[:5]:
            recorder.write(cv2.resize(image, (341, 255)))
    with VideoFileSource(path) as source:
        assert (source.frame_count, source.frame_size, source.fps) == (5, (341, 255), 25.0)


def test_wrong_size_frames_are_letterboxed_or_rejected(tmp_path, source_frames, caplog):
    path = tmp_path / "sizes.avi"
    with VideoRecorder(path, 30, (640, 480)) as recorder:
        recorder.write(source_frames[0])  # 512x512 into 640x480: scaled to 480x480, bars left and right
        recorder.write(cv2.cvtColor(cv2.resize(source_frames[1], (640, 480)), cv2.COLOR_BGR2GRAY))
        recorder.write(cv2.cvtColor(cv2.resize(source_frames[2], (640, 480)), cv2.COLOR_BGR2BGRA))
        assert (recorder.frames_written, recorder.frames_resized) == (3, 1)
    assert "frame is 512x512 but the recording is 640x480" in caplog.text
    with VideoFileSource(path) as source:
        first = source.read().image
        assert source.frame_size == (640, 480) and sum(1 for _ in source) == 2
    assert first[:, :70].max() < 30 and first[:, -70:].max() < 30  # black bars
    assert cv2.PSNR(first[:, 80:560], cv2.resize(source_frames[0], (480, 480))) > 30
    with VideoRecorder(tmp_path / "strict.avi", 30, (640, 480), on_size_mismatch="reject") as recorder:
        with pytest.raises(ValueError, match="frame is 512x512 but the recording is 640x480"):
            recorder.write(source_frames[0])
        with pytest.raises(ValueError, match="must be uint8"):
            recorder.write(np.zeros((480, 640, 3), np.float32))


def test_bad_recording_requests(tmp_path):
    with pytest.raises(RecordingError, match="container '.mp4' is not supported; use .avi"):
        VideoRecorder(tmp_path / "x.mp4", 30, (640, 480))
    with pytest.raises(RecordingError, match="folder .*absent does not exist"):
        VideoRecorder(tmp_path / "absent" / "x.avi", 30, (640, 480))
    with pytest.raises(RecordingError, match="fps must be positive"):
        VideoRecorder(tmp_path / "x.avi", 0, (640, 480))
    with pytest.raises(RecordingError, match="folder .*absent does not exist"):
        LandmarkCsvWriter(tmp_path / "absent" / "x.csv")


def test_close_twice_is_harmless_and_write_after_close_is_an_error(tmp_path, source_frames):
    recorder = VideoRecorder(tmp_path / "a.avi", 30, (512, 512))
    recorder.write(source_frames[0])
    recorder.close()
    recorder.close()
    with pytest.raises(RecordingError, match="already closed"):
        recorder.write(source_frames[0])
    writer = LandmarkCsvWriter(tmp_path / "a.csv")
    writer.close()
    writer.close()
    with pytest.raises(RecordingError, match="already closed"):
        writer.write(FrameResult(Frame(source_frames[0], 0, 0.0), ()))


# -- landmark CSV -------------------------------------------------------------------
def make_results(n_frames=6):
    rng = np.random.default_rng(3)
    image = np.zeros((4, 4, 3), np.uint8)
    results = []
    for index in range(n_frames):
        faces = []
        for track_id in ((1, 2) if index % 3 else ()):  # frames 0 and 3 have no face
            shown = Landmarks(rng.uniform(0, 1000, (68, 2)), rng.uniform(0, 1, 68))
            raw = Landmarks(shown.points + 1.5, shown.confidence)
            faces.append(FaceResult(track_id, shown, raw))
        results.append(FrameResult(Frame(image, index, index / 30), tuple(faces)))
    return results


def test_landmark_csv_round_trip(tmp_path):
    results = make_results()
    path = tmp_path / "marks.csv"
    with LandmarkCsvWriter(path) as writer:
        for result in results:
            writer.write(result)
        assert writer.rows_written == 8
    header = path.read_text().splitlines()[0]
    assert header.startswith("frame,time,face_id,x0,y0,x1,y1,") and header.endswith(",x67,y67,c0," + ",".join(
        f"c{i}" for i in range(1, 68)) + "," + ",".join(GEOMETRY_COLUMNS) + "," + ",".join(f"v{i}" for i in range(68)))
    assert header.split(",") == CSV_HEADER and len(CSV_HEADER) == 3 + 136 + 68 + len(GEOMETRY_COLUMNS) + 68
    assert not np.isfinite(read_landmark_csv(path).visible).any()  # these models do not tell
    table = read_landmark_csv(path)
    assert len(table) == 8
    assert table.frame.tolist() == [1, 1, 2, 2, 4, 4, 5, 5] and table.face_id.tolist() == [1, 2] * 4
    np.testing.assert_allclose(table.time, table.frame / 30, atol=1e-6)
    faces = [face for result in results for face in result.faces]
    np.testing.assert_allclose(table.points, np.stack([f.landmarks.points for f in faces]), atol=5e-4)
    np.testing.assert_allclose(table.confidence, np.stack([f.landmarks.confidence for f in faces]), atol=5e-5)
    assert table.rows_of_frame(4).tolist() == [4, 5] and table.rows_of_frame(3).size == 0


def test_landmark_csv_raw_option(tmp_path):
    results = make_results()
    with LandmarkCsvWriter(tmp_path / "raw.csv", raw=True) as writer:
        writer.write(results[1])
    table = read_landmark_csv(tmp_path / "raw.csv")
    np.testing.assert_allclose(table.points[0], results[1].faces[0].raw_landmarks.points, atol=5e-4)


def test_reader_skips_a_cut_off_last_line_and_rejects_bad_files(tmp_path):
    path = tmp_path / "marks.csv"
    with LandmarkCsvWriter(path) as writer:
        for result in make_results():
            writer.write(result)
    text = path.read_text()
    path.write_text(text[: len(text) - 300])  # the process died while writing the last row
    table = read_landmark_csv(path)
    assert len(table) == 7 and table.incomplete_last_row
    lines = text.splitlines()
    lines[3] = lines[3].replace(",", ",x", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="marks.csv, line 4: malformed row"):
        read_landmark_csv(path)
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="not a landmark CSV"):
        read_landmark_csv(path)


# -- the measurement behind the default (run this file as a script) ------------------
CANDIDATES = [
    (".avi", "CAP_OPENCV_MJPEG:MJPG", "avi MJPG, OpenCV writer"),
    (".avi", "CAP_FFMPEG:MJPG", "avi MJPG, FFmpeg"),
    (".mkv", "CAP_FFMPEG:MJPG", "mkv MJPG, FFmpeg"),
    (".avi", "CAP_FFMPEG:XVID", "avi XVID, FFmpeg"),
    (".mkv", "CAP_FFMPEG:mp4v", "mkv mp4v, FFmpeg"),
    (".mp4", "CAP_FFMPEG:mp4v", "mp4 mp4v, FFmpeg"),
]


def measure(tmp: Path, trials=3, seed=0) -> None:
    """Real-time recording (30 fps) killed after a random 40-200 frames; frames lost per run."""
    rng = np.random.default_rng(seed)
    print("writer                      size      lost per run (killed after N frames)      KiB/frame")
    for suffix, spec, label in CANDIDATES:
        for size in ((640, 480), (1280, 720)):
            runs, kib = [], []
            for _ in range(trials):
                out = tmp / f"m{suffix}"
                out.unlink(missing_ok=True)
                written = record_then_kill(out, spec, size, kill_at=int(rng.integers(40, 201)), pace=True)
                indices = decoded_indices(out)
                in_order = indices == list(range(len(indices)))
                runs.append(f"{written - len(indices)}/{written}{'' if in_order else '!order'}")
                if indices:
                    kib.append(out.stat().st_size / 1024 / len(indices))
            per_frame = f"{np.mean(kib):6.1f}" if kib else "     -"
            print(f"{label:27s} {f'{size[0]}x{size[1]}':9s} {'  '.join(runs):40s} {per_frame}", flush=True)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        measure(Path(folder))


# -- a really full disk ---------------------------------------------------------------
@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 1 MiB tmpfs. Mounting needs root (CAP_SYS_ADMIN), so this runs where the tests run as root and is
    skipped elsewhere; tests/test_cli.py and tests/test_gui.py get their full disk from RLIMIT_FSIZE, which
    works for any user."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_a_really_full_disk_stops_the_recording_and_says_so(tiny_filesystem, source_frames, suffix):
    path = tiny_filesystem / f"full{suffix}"
    recorder = VideoRecorder(path, 30, (512, 512))
    with pytest.raises(RecordingError) as error:
        for i in range(200):
            recorder.write(source_frames[i % len(source_frames)])
    kept = recorder.frames_kept
    assert f"recording to {path} stopped: the disk is full" in str(error.value)
    assert f"keeps the first {kept} of {recorder.frames_written} frames" in str(error.value)
    assert 5 <= kept == len(decoded_indices(path)) and recorder.closed
    csv_path = tiny_filesystem / "full.csv"
    with pytest.raises(RecordingError, match=f"writing {csv_path} failed: the disk is full"):
        LandmarkCsvWriter(csv_path)

"""The command line end to end, with the real detector and model on a real clip."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.recording import read_landmark_csv
from tests.conftest import truncated_mjpg


def _frame_count(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.peers("mediapipe")  # the model is mediapipe68
@pytest.mark.parametrize("detector", ["blazeface", "retinaface"])
def test_track_writes_a_playable_video_and_landmarks_on_nearly_every_frame(
    tmp_path, talking_clip, detectors_dir, detector, capsys
):
    video, csv = tmp_path / "o.mkv", tmp_path / "o.csv"
    args = ["track", str(talking_clip), "--model", "mediapipe68", "--out", str(video), "--landmarks", str(csv),
            "--detector", detector]
    if detector == "retinaface":
        args += ["--detector-model", str(detectors_dir / "retinaface_mbnet0.25.onnx")]
    assert main(args) == 0
    source_frames = _frame_count(talking_clip)
    assert _frame_count(video) == source_frames
    table = read_landmark_csv(csv)
    frames_with_face = len(np.unique(table.frame))
    assert frames_with_face >= 0.98 * source_frames
    assert table.points.shape[1:] == (68, 2) and np.all(np.isfinite(table.points))
    assert "coverage=" in capsys.readouterr().out


def test_track_stops_after_max_frames(tmp_path, talking_clip):
    csv = tmp_path / "o.csv"
    assert main(["track", str(talking_clip), "--landmarks", str(csv), "--max-frames", "5", "--no-smooth"]) == 0
    assert set(read_landmark_csv(csv).frame) <= set(range(5))


@pytest.mark.parametrize(
    "args, message",
    [
        (["track", "no/such/video.mp4"], "no/such/video.mp4"),
        (["track", "99"], "camera 99"),
        (["track", "{clip}", "--model", "no_such_model"], "no_such_model"),
        (["track", "{clip}", "--detector", "retinaface", "--detector-model", "missing.onnx"], "missing.onnx"),
    ],
)
def test_bad_input_exits_with_a_message_naming_the_problem(args, message, talking_clip, capsys):
    args = [a.replace("{clip}", str(talking_clip)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_an_empty_folder_is_refused_clearly(tmp_path, capsys):
    assert main(["track", str(tmp_path)]) == 2
    err = capsys.readouterr().err.lower()
    assert str(tmp_path).lower() in err and ("empty" in err or "no image" in err)


def test_bench_prints_per_stage_latency(talking_clip):
    out = subprocess.run(
        [sys.executable, "-m", "app", "bench", str(talking_clip), "--max-frames", "20", "--warmup", "2",
         "--model-only", "5"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "model=r18_ffld backend=" in out.stdout  # the default: the most accurate shipped network
    for stage in ("detect", "align", "infer", "decode", "smooth", "render", "FPS"):
        assert stage in out.stdout
    assert re.search(r"model only, batch 1, 5 runs: network \+ preprocessing median [\d.]+ ms, p95 [\d.]+ ms; "
                     r"decode median [\d.]+ ms", out.stdout)


@pytest.mark.parametrize(
    "args, option, wanted",
    [
        (["track", "{clip}", "--max-faces", "0"], "--max-faces", "an integer >= 1"),
        (["track", "{clip}", "--max-faces", "-1"], "--max-faces", "an integer >= 1"),
        (["track", "{clip}", "--max-frames", "-5"], "--max-frames", "an integer >= 1"),
        (["track", "{clip}", "--min-cutoff", "-1"], "--min-cutoff", "a number > 0"),
        (["track", "{clip}", "--min-cutoff", "0"], "--min-cutoff", "a number > 0"),
        (["track", "{clip}", "--beta", "nan"], "--beta", "a number >= 0"),
        (["track", "{clip}", "--redetect-interval", "-2"], "--redetect-interval", "an integer >= 0"),
        (["bench", "{clip}", "--warmup", "-1"], "--warmup", "an integer >= 0"),
        (["bench", "{clip}", "--model-only", "-3"], "--model-only", "an integer >= 0"),
        (["evaluate", "--dataset", "x", "--limit", "0"], "--limit", "an integer >= 1"),
        (["evaluate", "--dataset", "x", "--threshold", "inf"], "--threshold", "a number > 0"),
        (["eval300vw", "{clip}", "--max-faces", "0"], "--max-faces", "an integer >= 1"),
        (["synth-clips", "--frames", "1"], "--frames", "an integer >= 2"),
        (["synth-clips", "--count", "two"], "--count", "an integer >= 1"),
    ],
)
def test_nonsense_numbers_are_refused_at_parse_time_with_one_kind_of_message(
    args, option, wanted, talking_clip, capsys
):
    args = [a.replace("{clip}", str(talking_clip)) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be {wanted}, got '{args[-1]}'" in err


@pytest.mark.parametrize("mode", [[], ["--vs-mediapipe"], ["--precisions", "fp32"]])
@pytest.mark.parametrize("resize, wanted", [("640by480", "a size like 640x480 (width x height)"),
                                            ("-640x480", "a size of at least 16x16 (width x height)"),
                                            ("0x480", "a size of at least 16x16 (width x height)"),
                                            ("640x", "a size like 640x480 (width x height)")])
def test_bench_resize_is_checked_at_parse_time_in_every_mode(mode, resize, wanted, talking_clip, capsys):
    """Issue 31: without --vs-mediapipe a bad --resize was ignored (exit 0)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(talking_clip), *mode, f"--resize={resize}", "--max-frames", "2"])
    assert exit_info.value.code == 2
    assert f"argument --resize: must be {wanted}, got '{resize}'" in capsys.readouterr().err


def test_bench_resize_applies_without_vs_mediapipe(talking_clip, monkeypatch, capsys):
    from app.cli import bench

    seen = []
    handle = bench.TrackingSession.handle
    monkeypatch.setattr(bench.TrackingSession, "handle",
                        lambda self, frame: seen.append(frame.image.shape) or handle(self, frame))
    assert main(["bench", str(talking_clip), "--resize", "320x240", "--max-frames", "2", "--warmup", "0",
                 "--model-only", "0"]) == 0
    assert seen and set(seen) == {(240, 320, 3)}
    assert " resize=320x240 " in capsys.readouterr().out


# A full disk without root: the child process lowers its own file-size limit (RLIMIT_FSIZE) and ignores
# SIGXFSZ, so writes past the limit fail with EFBIG ("File too large") as they fail with ENOSPC on a full
# drive; OpenCV's writers report neither. Works for any user, in CI too.
SIZE_LIMITED = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from app.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _track_size_limited(limit_bytes, *args):
    return subprocess.run([sys.executable, "-c", SIZE_LIMITED, str(limit_bytes), "track", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_a_full_disk_stops_the_recording_with_an_error_naming_the_file_and_a_true_frame_count(
    tmp_path, talking_clip, suffix
):
    video = tmp_path / f"X{suffix}"
    out = _track_size_limited(400_000, talking_clip, "--out", video, "--model", "mnv2_sdd")
    assert out.returncode == 2, out.stderr
    match = re.search(rf"error: recording to {re.escape(str(video))} stopped: the file stopped growing.*"
                      r"keeps the first (\d+) of \d+ frames, which play", out.stderr)
    assert match, out.stderr
    kept = int(match.group(1))
    assert 5 <= kept == _frame_count(video) < _frame_count(talking_clip)


def test_a_full_disk_while_writing_landmarks_names_the_csv(tmp_path, talking_clip):
    csv = tmp_path / "X.csv"
    out = _track_size_limited(100_000, talking_clip, "--landmarks", csv, "--model", "mnv2_sdd")
    assert out.returncode == 2
    assert f"error: writing {csv} failed: File too large" in out.stderr
    table = read_landmark_csv(csv)  # what was written reads back
    assert len(table) > 10 and np.all(np.isfinite(table.points))


def test_a_truncated_video_gives_complete_outputs_a_summary_and_the_problems_exit_code(tmp_path, talking_clip, capsys):
    """An MJPG .avi cut to 30% of its bytes: every readable frame is tracked and recorded, then exit 3."""
    clip = truncated_mjpg(talking_clip, tmp_path / "cut.avi", keep=0.3)
    readable = _frame_count(clip)
    video, csv = tmp_path / "o.avi", tmp_path / "o.csv"
    code = main(["track", str(clip), "--out", str(video), "--landmarks", str(csv), "--model", "mnv2_sdd"])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert f"frames={readable} " in captured.out
    assert re.search(rf"warning: video ended at frame {readable} of 183: the file looks truncated", captured.err)
    assert _frame_count(video) == readable
    assert set(read_landmark_csv(csv).frame) <= set(range(readable))


@pytest.mark.parametrize("size", [(3, 3), (640, 3), (3, 480), (2, 2), (640, 1)])
def test_frames_a_few_pixels_wide_or_high_are_tracked_and_recorded_without_a_crash(tmp_path, size, capsys):
    width, height = size
    clip = tmp_path / "thin.avi"
    writer = cv2.VideoWriter(str(clip), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for i in range(5):
        writer.write(np.full((height, width, 3), 40 * i, np.uint8))
    writer.release()
    folder = tmp_path / "one"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((height, width, 3), 128, np.uint8))
    for source, frames, code in ((clip, 5, 0), (folder, 1, 3 if min(size) < 2 else 0)):
        video = tmp_path / "o.avi"
        assert main(["track", str(source), "--out", str(video), "--model", "mnv2_sdd"]) == code
        out = capsys.readouterr().out
        assert (f"frames={frames} with_face=0" in out) if code == 0 else "frames=0" in out
        assert _frame_count(video) == (frames if code == 0 else 0) or not video.exists()
        video.unlink(missing_ok=True)


def test_sigterm_finishes_the_files_like_ctrl_c(tmp_path, talking_clip):
    """SIGTERM mid-run: exit 143 with a message, the .mkv finished (every recorded frame plays), the CSV whole."""
    import os
    import signal
    import time

    video, csv = tmp_path / "t.mkv", tmp_path / "t.csv"
    child = subprocess.Popen(
        [sys.executable, "-m", "app", "track", str(talking_clip), "--out", str(video), "--landmarks", str(csv),
         "--model", "mnv2_sdd"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not csv.exists() or csv.stat().st_size < 40_000):  # about 20 frames
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 143, err
    assert "terminated (SIGTERM): files finished" in err
    table = read_landmark_csv(csv)
    assert not table.incomplete_last_row
    recorded = int(table.frame.max()) + 1
    assert recorded < 150 and 0 <= _frame_count(video) - recorded <= 1  # the CSV row may follow its frame
    assert os.path.getsize(video) > 0


@pytest.mark.parametrize("model", ["r18_ffld", pytest.param("mediapipe68", marks=pytest.mark.peers("mediapipe"))])
def test_stderr_has_no_native_log_lines_and_no_message_twice(talking_clip, model):
    """MediaPipe's TFLite/absl lines only with --verbose; a back-end fallback is said once (not also logged).

    With a network of ours and the default detector (ONNX BlazeFace, MTCNN) no mediapipe graph starts
    at all, so there are no native lines to show even with --verbose, and mediapipe is never imported."""
    def track(*extra):
        code = ("import sys\nfrom app.cli import main\nrc = main(sys.argv[1:])\n"
                "print('mediapipe imported' if 'mediapipe' in sys.modules else 'no mediapipe', file=sys.stderr)\n"
                "sys.exit(rc)")
        out = subprocess.run([sys.executable, "-c", code, *extra, "track", str(talking_clip), "--max-frames", "20",
                              "--model", model, "--backend", "tensorrt"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        *lines, imported = out.stderr.splitlines()
        assert imported == ("mediapipe imported" if model == "mediapipe68" else "no mediapipe"), out.stderr
        return lines

    lines = track()
    native = ("XNNPACK", "absl", "W0000", "I0000", "inference_feedback_manager", "landmark_projection")
    assert not [line for line in lines if any(word in line for word in native)], lines
    said = [line.removeprefix("WARNING: ") for line in lines]
    assert len(said) == len(set(said)), lines
    if model == "r18_ffld" and not select_backend_available("tensorrt"):  # on the CPU, INT8 is the default
        assert said == ["TensorRT FP16 is unavailable (TensorRT is not installed).",
                        "Running r18_ffld.int8.onnx on ONNX Runtime CPU instead of TensorRT FP16."]
    verbose = track("--verbose")
    if model == "mediapipe68":  # its graph logs as it starts: shown with --verbose only
        assert any("XNNPACK" in line for line in verbose)
    else:
        assert not [line for line in verbose if any(word in line for word in native)], verbose


def select_backend_available(name: str) -> bool:
    from engines import Backend
    from engines.select import backend_availability

    return backend_availability()[Backend(name)] is None


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in: a read-only tmp folder, or /sys when running as root
    (root ignores permission bits; sysfs refuses new files to everyone)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("video_name", ["{ro}/o.avi", "{tmp}/o.mp4"])
def test_a_video_that_cannot_be_written_says_why_and_leaves_no_landmark_file(tmp_path, talking_clip, capsys,
                                                                            video_name):
    video = video_name.format(ro=_unwritable_folder(tmp_path), tmp=tmp_path)
    csv = tmp_path / "o.csv"
    assert main(["track", str(talking_clip), "--out", video, "--landmarks", str(csv), "--max-frames", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot record {video}: ")
    assert ("is not writable (Permission denied)" in err) if video.endswith(".avi") else "'.mp4' is not supported" in err
    assert not csv.exists()


def test_the_default_detector_tracks_the_street_crowd_with_one_id_per_face(data_dir, capsys):
    """1080p, 6-9 small faces: the default install finds them (MTCNN) and keeps their ids."""
    clip = data_dir / "videos" / "street_multiface.mp4"
    assert main(["track", str(clip), "--max-frames", "12"]) == 0
    out = capsys.readouterr().out
    stats = dict(re.findall(r"(\w+)=([\d.]+)", out))
    assert float(stats["faces_per_frame"]) >= 5
    assert int(stats["track_ids"]) <= int(stats["most_at_once"]) + 1


def test_an_unknown_detector_is_refused_with_the_choices(talking_clip, capsys):
    assert main(["track", str(talking_clip), "--detector", "haar"]) == 2
    err = capsys.readouterr().err
    assert "haar" in err and "mtcnn" in err

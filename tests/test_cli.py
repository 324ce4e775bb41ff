"""The command line end to end, with the real detector and model on a real clip."""
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from app.cli import main
from app.recording import read_landmark_csv


def _frame_count(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


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

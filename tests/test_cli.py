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

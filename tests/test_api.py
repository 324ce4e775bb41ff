"""The library API (app.api): the README's example as written, and track_video against `track --landmarks`."""
from __future__ import annotations

import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from app.api import Tracker, TrackerBusy
from app.recording import CSV_CELL_FORMATS, CSV_HEADER, read_landmark_csv
from app.types import FrameResult
from models.datasets import PROJECT_ROOT

FRAMES = 8  # few frames: the machine is shared


def readme_example() -> str:
    section = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_as_written(monkeypatch, capsys):
    pytest.importorskip("pandas")
    code = readme_example()
    clip = re.search(r'track_video\("([^"]+)"', code).group(1)
    monkeypatch.chdir(PROJECT_ROOT)  # its paths are the README's, relative to the project root
    if not (PROJECT_ROOT / clip).is_file():
        pytest.skip(f"the README's clip {clip} is not at that path here (shared data elsewhere)")
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    nose = [line for line in printed if " s  face " in line]
    assert len(nose) == 10 and nose[0].startswith("0.00 s  face ") and nose[1].startswith("0.04 s  face ")
    assert len(namespace["table"]) == 10 and list(namespace["table"].columns) == CSV_HEADER
    assert len(namespace["still"]) == 1 and namespace["tracker"].closed


def test_track_video_gives_the_landmarks_of_track_and_the_csv_columns(tmp_path, talking_clip):
    """Same clip, model and detector: the API's landmarks are the CSV's (which rounds to 0.001 px);
    to_dataframe / to_parquet have the CSV's columns and values (within the CSV's rounding)."""
    csv = tmp_path / "out.csv"
    subprocess.run([sys.executable, "-m", "app", "track", str(talking_clip), "--model", "r18_ffld",
                    "--detector", "auto", "--landmarks", str(csv), "--max-frames", str(FRAMES)],
                   check=True, capture_output=True, timeout=300)
    cli = read_landmark_csv(csv)
    with Tracker(model="r18_ffld", detector="auto") as tracker:
        results = list(tracker.track_video(talking_clip, max_frames=FRAMES))
        assert all(isinstance(r, FrameResult) for r in results)
        rows = [(r.frame.index, r.frame.timestamp, f.track_id, f.landmarks) for r in results for f in r.faces]
        assert len(rows) == len(cli) == FRAMES
        assert [r[0] for r in rows] == cli.frame.tolist() and [r[2] for r in rows] == cli.face_id.tolist()
        np.testing.assert_allclose([r[1] for r in rows], cli.time, atol=5e-7)  # the video's clock, not invented
        points = np.stack([r[3].points for r in rows])
        assert np.abs(points - cli.points).max() <= 5e-4 + 1e-9  # the CSV's rounding, nothing more
        assert np.abs(np.stack([r[3].confidence for r in rows]) - cli.confidence).max() <= 5e-5 + 1e-9

        pd = pytest.importorskip("pandas")
        table = tracker.to_dataframe()
        written = pd.read_csv(csv)
        assert list(table.columns) == list(written.columns) == CSV_HEADER
        for name, spec in zip(CSV_HEADER, CSV_CELL_FORMATS):
            ours, theirs = table[name].astype(float).to_numpy(), written[name].astype(float).to_numpy()
            assert (np.isnan(ours) == np.isnan(theirs)).all(), name
            digits = int(spec[1:-1]) if spec.endswith("f") else 0
            assert np.nanmax(np.abs(ours - theirs), initial=0) <= 0.5 * 10.0**-digits + 1e-9, name
        pq = pytest.importorskip("pyarrow.parquet")
        parquet = pq.read_table(tracker.to_parquet(tmp_path / "out.parquet")).to_pandas()
        assert list(parquet.columns) == CSV_HEADER
        np.testing.assert_array_equal(parquet.astype(float).to_numpy(), table.astype(float).to_numpy())


def test_frames_timestamps_and_one_call_at_a_time(talking_clip):
    with Tracker(model="r18_ffld") as tracker:
        images = [r.frame.image for r in tracker.track_video(talking_clip, max_frames=3)]
        with pytest.raises(ValueError, match="timestamps"):
            next(tracker.track_video(images))  # bare images: no clock to take the times from
        assert [r.frame.timestamp for r in tracker.track_video([(1.5, images[0]), (1.7, images[1])])] == [1.5, 1.7]
        assert [r.frame.timestamp for r in tracker.track_video(images, fps=10)] == [0.0, 0.1, 0.2]

        running = tracker.track_video(images, fps=10)
        next(running)
        with pytest.raises(TrackerBusy):
            tracker.track_image(images[0])  # this thread's unfinished iterator holds the tracker
        errors: list[BaseException] = []
        other = threading.Thread(target=lambda: _catch(errors, lambda: tracker.track_image(images[0])))
        other.start()
        other.join()
        assert len(errors) == 1 and isinstance(errors[0], TrackerBusy)
        running.close()
        faces = tracker.track_image(images[0])
        assert len(faces) == 1 and faces[0].landmarks.points.shape == (68, 2)
    assert tracker.closed
    with pytest.raises(RuntimeError, match="closed"):
        tracker.track_image(images[0])


def _catch(errors: list[BaseException], call) -> None:
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - handed to the test thread
        errors.append(error)

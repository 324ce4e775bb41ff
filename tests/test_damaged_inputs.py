"""Issue 31: damage inside an input is skipped, named (file and frames), counted, and exit 3.

The damaged clip is a copy of a real shared clip (talking_d18.mp4: 216 frames, 480x480, H.264)
with random bytes over 15-20% of its length (fixed seed): OpenCV fails to decode a run of
frames there and decodes the frames after it again.
"""
import numpy as np
import pytest

from app.cli import main
from app.recording import read_landmark_csv
from app.sources import VideoFileSource, frames_to_end

DECLARED = 216


def damaged_copy(source, path, start: float, stop: float, seed: int = 0):
    """``source`` copied to ``path`` with random bytes over ``start``..``stop`` of its length."""
    data = bytearray(source.read_bytes())
    a, b = int(len(data) * start), int(len(data) * stop)
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def damaged(data_dir, tmp_path_factory):
    return damaged_copy(data_dir / "videos" / "talking_d18.mp4", tmp_path_factory.mktemp("damaged") / "mid.mp4",
                        0.15, 0.20)


def test_a_video_damaged_in_the_middle_is_read_past_the_damage(damaged):
    with VideoFileSource(damaged) as source:
        assert source.frame_count == DECLARED
        frames = [frame.index for frame in frames_to_end(source)]
        lost = source.skipped_frames
        assert lost and 0 < lost[0] and lost[-1] < 100  # inside the damaged stretch, not at the end
        assert frames[-1] == DECLARED - 1 and source.truncated_at is None  # read to the end, numbers kept
        assert sorted(set(frames) | set(lost)) == list(range(DECLARED)) and not set(frames) & set(lost)
        assert frames == sorted(frames)
        assert len(source.problems) == 1  # one message for the file, naming it and every lost frame
        problem = source.problems[0]
        assert str(damaged) in problem and f"{len(lost)} frames" in problem and str(lost[0]) in problem
        assert source.frame_count == DECLARED
        # stepping to a lost frame gives the next frame that decodes; a frame after the damage seeks exactly
        after = source.frame_at(lost[-1] - 1 if lost[-1] - 1 not in lost else lost[-1])
        assert after is not None and after.index not in lost
        assert source.frame_at(150).index == 150
        # stepping back over the damage lands on the frame before it (the GUI's left arrow)
        after_gap = min(f for f in frames if f > lost[0])
        assert source.frame_at(after_gap).index == after_gap
        assert source.step_back().index == lost[0] - 1


def test_track_keeps_the_frames_after_the_damage_names_the_lost_ones_and_exits_3(damaged, tmp_path, capsys):
    csv = tmp_path / "mid.csv"
    code = main(["track", str(damaged), "--landmarks", str(csv), "--max-frames", "70"])
    captured = capsys.readouterr()
    assert code == 3
    with VideoFileSource(damaged) as source:
        for _ in frames_to_end(source):
            pass
        lost = source.skipped_frames
    tracked = set(read_landmark_csv(csv).frame.tolist())
    assert max(tracked) > lost[-1] + 10 and not tracked & set(lost)  # frames after the damage are tracked
    assert f"skipped_frames={len(lost)}" in captured.out
    assert f"warning: {damaged}: {len(lost)} frames (" in captured.err and "could not be decoded" in captured.err


def test_damage_up_to_the_end_of_the_frames_is_a_truncation(data_dir, tmp_path):
    """Damage over the last frames' data: the header's count is not reached, so the file is
    reported as truncated, as before (nothing decodes after the damage)."""
    from app.sources.video import _mp4_top_level_boxes

    source = data_dir / "videos" / "talking_d18.mp4"
    moov = next(offset for kind, offset, _ in _mp4_top_level_boxes(source) if kind == b"moov")
    mdat = next(offset for kind, offset, _ in _mp4_top_level_boxes(source) if kind == b"mdat")
    assert mdat < moov
    size = source.stat().st_size
    clip = damaged_copy(source, tmp_path / "end.mp4", (moov - (moov - mdat) // 10) / size, moov / size)
    with VideoFileSource(clip) as video:
        frames = [frame.index for frame in frames_to_end(video)]
        assert frames[-1] < DECLARED - 5
        assert any("looks truncated" in p for p in video.problems)


# -- one policy for bad frames in every command (defect 5) -------------------------------------


@pytest.fixture()
def clip_with_a_bad_image(data_dir, tmp_path):
    """A copy of the real 300-VW sample clip 001 (imgs/ layout, frames 6 and 9) whose first image is garbage."""
    import shutil

    root = tmp_path / "clips"
    shutil.copytree(data_dir / "300vw_sample" / "001", root / "001")
    bad = root / "001" / "imgs" / "000006.jpg"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return root / "001", bad


def test_a_bad_image_in_a_300vw_clip_is_skipped_by_track_with_exit_3(clip_with_a_bad_image, tmp_path, capsys):
    clip, bad = clip_with_a_bad_image
    csv = tmp_path / "clip.csv"
    assert main(["track", str(clip), "--landmarks", str(csv)]) == 3  # was: error, exit 2
    captured = capsys.readouterr()
    assert set(read_landmark_csv(csv).frame.tolist()) == {1}  # the other frame is tracked
    assert f"cannot decode image {bad} (frame 0)" in captured.err and "skipped_frames=1" in captured.out


def test_a_bad_image_in_a_300vw_clip_is_named_by_eval300vw_with_exit_3(clip_with_a_bad_image, tmp_path, capsys):
    clip, bad = clip_with_a_bad_image
    code = main(["eval300vw", str(clip.parent), "--out", str(tmp_path / "run"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 3, captured.err  # was: the clip cut short, exit 0
    assert "1 frame(s) skipped" in captured.err and f"warning: 001: cannot decode image {bad}" in captured.err
    assert str(bad) in (tmp_path / "run" / "report.md").read_text()


def test_evaluate_names_an_image_without_its_pts_and_exits_3(helen_test_dir, tmp_path, capsys):
    import shutil

    from models.datasets import list_annotated

    for item in list_annotated(helen_test_dir)[:2]:
        shutil.copy(item.image_path, tmp_path)
        shutil.copy(item.pts_path, tmp_path)
    lonely = list_annotated(helen_test_dir)[2].image_path
    shutil.copy(lonely, tmp_path / "zz_lonely.jpg")
    code = main(["evaluate", "--model", "r18_ffld", "--dataset", str(tmp_path), "--mode", "gt5",
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 3  # was: 0, the image left out without a word
    assert "skipped=1" in captured.out and "zz_lonely.jpg: no zz_lonely.pts beside it" in captured.out


def test_a_batch_manifest_of_the_wrong_shape_is_refused_with_a_message(tmp_path, capsys):
    from app.batch.manifest import Manifest

    for text in ("[1, 2]", '{"inputs": [1]}', '{"inputs": {"a": 3}}'):
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(ValueError, match="is not a batch manifest"):
            Manifest(tmp_path)

"""Frame sources on real files from the shared data, and on broken copies made in tmp_path."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.sources import (
    CameraSource,
    Clip300VWSource,
    ImageFolderSource,
    SourceError,
    TruncatedVideoError,
    VideoFileSource,
    is_300vw_clip,
    list_cameras,
    open_source,
)
from models.datasets import data_root
from models.pts import read_pts, write_pts

VIDEOS = data_root() / "videos"
TALKING = VIDEOS / "talking_d0.mp4"  # 78 frames, 25 fps, 512x512, H.264, 'moov' at the end
SAMPLE = data_root() / "300vw_sample"


def read_all(source) -> list:
    return list(source)


@pytest.fixture(scope="module")
def talking_frames():
    """Every frame of TALKING, decoded straight with OpenCV (the reference)."""
    capture = cv2.VideoCapture(str(TALKING))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) == 78
    return frames


# -- MP4 surgery for the truncation tests -----------------------------------------
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"}


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None):
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        yield kind, offset, header, size
        offset += size


def faststart(data: bytes) -> bytes:
    """Move the 'moov' index in front of the media data (as ``-movflags faststart`` does)."""
    top = list(mp4_boxes(data))
    moov_kind, moov_at, _, moov_size = next(b for b in top if b[0] == b"moov")
    moov = bytearray(data[moov_at : moov_at + moov_size])

    def shift(start, end):
        for kind, at, header, size in mp4_boxes(moov, start, end):
            if kind in _MP4_CONTAINERS:
                shift(at + header, at + size)
            elif kind in (b"stco", b"co64"):
                fmt, width = (">I", 4) if kind == b"stco" else (">Q", 8)
                for k in range(struct.unpack(">I", moov[at + 12 : at + 16])[0]):
                    o = at + 16 + k * width
                    moov[o : o + width] = struct.pack(fmt, struct.unpack(fmt, moov[o : o + width])[0] + moov_size)

    shift(0, len(moov))
    head = b"".join(data[at : at + size] for kind, at, _, size in top if kind in (b"ftyp", b"free"))
    rest = b"".join(data[at : at + size] for kind, at, _, size in top if kind not in (b"ftyp", b"free", b"moov"))
    return head + bytes(moov) + rest


# -- video files --------------------------------------------------------------------
def test_video_file_reads_every_frame_with_file_timestamps(talking_frames):
    with VideoFileSource(TALKING) as source:
        assert (source.frame_count, source.fps, source.frame_size) == (78, 25.0, (512, 512))
        assert not source.is_live and source.seekable
        frames = read_all(source)
        assert source.read() is None
    assert [f.index for f in frames] == list(range(78))
    times = np.array([f.timestamp for f in frames])
    np.testing.assert_allclose(times, np.arange(78) / 25.0, atol=1e-6)
    assert np.all(np.diff(times) > 0)
    for frame, reference in zip(frames, talking_frames):
        assert frame.image.dtype == np.uint8 and frame.image.shape == (512, 512, 3)
        assert np.array_equal(frame.image, reference)
        assert frame.ground_truth is None
    assert not frames[0].image.flags.writeable


@pytest.mark.parametrize("history_bytes", [0, 64 * 2**20], ids=["no-history", "history"])
def test_video_seek_and_step_back_give_the_exact_frames(talking_frames, history_bytes):
    with VideoFileSource(TALKING, history_bytes=history_bytes) as source:
        for index in (40, 3, 77, 76, 0, 41, 20):
            frame = source.frame_at(index)
            assert frame.index == index and np.array_equal(frame.image, talking_frames[index])
            assert frame.timestamp == pytest.approx(index / 25.0)
        source.seek(30)
        assert source.position == 30
        for index in (30, 31, 32):
            assert source.read().index == index
        for index in (31, 30, 29):
            back = source.step_back()
            assert back.index == index and np.array_equal(back.image, talking_frames[index])
        assert source.read().index == 30  # forward again after stepping back
        source.seek(0)
        source.read()
        assert source.step_back() is None
        with pytest.raises(IndexError, match="frame 78 is out of range .* 78 frames"):
            source.seek(78)
        with pytest.raises(IndexError):
            source.seek(-1)


def test_other_real_videos_open_with_declared_counts():
    for name, count, size in [("street_multiface.mp4", 105, (1920, 1080)), ("talking_s20.mp4", 297, (480, 908))]:
        with open_source(VIDEOS / name) as source:
            assert isinstance(source, VideoFileSource)
            assert source.frame_count == count and source.frame_size == size


def test_missing_folder_empty_and_text_files_give_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="video file not found: .*absent.mp4"):
        VideoFileSource(tmp_path / "absent.mp4")
    with pytest.raises(SourceError, match="is a folder, not a video file"):
        VideoFileSource(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty \(0 bytes\)"):
        VideoFileSource(tmp_path / "empty.mp4")
    (tmp_path / "notes.avi").write_text("this is not a video\n" * 100)
    with pytest.raises(SourceError, match="notes.avi: it is not a video"):
        VideoFileSource(tmp_path / "notes.avi")


def test_mp4_cut_in_half_does_not_open_and_says_truncated(tmp_path):
    data = TALKING.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cannot open video .*half.mp4: its MP4 index \(the 'moov' atom\) "
                                          r"is missing: the file looks truncated"):
        open_source(half)


def test_mp4_with_moov_atom_cut_does_not_open_and_says_truncated(tmp_path):
    data = TALKING.read_bytes()
    _, moov_at, _, moov_size = next(b for b in mp4_boxes(data) if b[0] == b"moov")
    assert moov_at + moov_size == len(data)  # the index is the last box of this file
    cut = tmp_path / "no_moov.mp4"
    cut.write_bytes(data[:moov_at])
    with pytest.raises(SourceError, match="'moov' atom\\) is missing: the file looks truncated"):
        VideoFileSource(cut)


def test_truncated_video_that_opens_reports_where_it_ended_and_keeps_frames(tmp_path, talking_frames):
    whole = faststart(TALKING.read_bytes())
    (tmp_path / "whole.mp4").write_bytes(whole)
    with VideoFileSource(tmp_path / "whole.mp4") as source:  # the relocation itself is lossless
        assert sum(1 for _ in source) == 78
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    kept = []
    with VideoFileSource(cut) as source:
        assert source.frame_count == 78  # what the header declares
        with pytest.raises(TruncatedVideoError) as error:
            for frame in source:
                kept.append(frame)
        read = error.value.frames_read
        assert 10 < read < 70 and len(kept) == read and error.value.declared == 78
        assert str(error.value).startswith(f"video ended at frame {read} of 78: the file looks truncated")
        assert source.frame_count == read and source.read() is None  # reported once, then a normal end
        assert np.array_equal(source.frame_at(read - 1).image, talking_frames[read - 1])
    for frame in kept:
        assert np.array_equal(frame.image, talking_frames[frame.index])


def test_seeking_past_a_truncation_reports_it(tmp_path):
    whole = faststart(TALKING.read_bytes())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with VideoFileSource(cut, history_bytes=0) as source:
        with pytest.raises(TruncatedVideoError, match=r"video ended at frame \d+ of 78"):
            source.frame_at(70)
        assert source.frame_count < 70


def test_truncated_avi_reports_where_it_ended(tmp_path, talking_frames):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25, (512, 512))
    for image in talking_frames[:40]:
        writer.write(image)
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with VideoFileSource(path) as source:
        assert source.frame_count == 40
        with pytest.raises(TruncatedVideoError, match=r"video ended at frame (1\d|2\d) of 40"):
            read_all(source)


# -- image folders ------------------------------------------------------------------
@pytest.fixture
def image_folder(tmp_path, talking_frames):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):  # frame2 must come before frame10: natural order
        cv2.imwrite(str(folder / f"frame{i}.png"), talking_frames[i][::2, ::2])
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_image_folder_in_natural_order_with_fps_timestamps(image_folder, talking_frames):
    with ImageFolderSource(image_folder, fps=10) as source:
        assert (source.frame_count, source.fps, source.problems) == (12, 10.0, [])
        frames = read_all(source)
        assert [f.index for f in frames] == list(range(12))
        assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(12)])
        for frame in frames:
            assert np.array_equal(frame.image, talking_frames[frame.index][::2, ::2])
        assert source.frame_at(5).index == 5 and source.step_back().index == 4
        assert source.read().index == 5


def test_empty_and_missing_image_folders(tmp_path):
    with pytest.raises(SourceError, match="no images in folder"):
        ImageFolderSource(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="no images in folder"):
        open_source(tmp_path)
    with pytest.raises(SourceError, match="image folder not found"):
        ImageFolderSource(tmp_path / "absent")


def _spoil(folder):
    """Four bad files among the 12 frames: garbage bytes, a header-only JPEG, a PNG cut short, a 1x1 image."""
    (folder / "frame2.png").write_bytes(b"garbage, no image signature")
    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    (folder / "frame3.png").unlink()
    (folder / "frame3.jpg").write_bytes(jpeg[: jpeg.index(b"\xff\xda")])  # every header, no image data
    header = (folder / "frame5.png").read_bytes()[:16]
    (folder / "frame5.png").write_bytes(header + b"\0" * 200)
    cv2.imwrite(str(folder / "frame8.png"), np.zeros((1, 1, 3), np.uint8))
    return {2: "frame2.png", 3: "frame3.jpg", 5: "frame5.png", 8: "frame8.png"}


def test_one_rule_for_bad_images_skip_report_carry_on_numbered_by_file(image_folder, caplog):
    """Every bad file is skipped, named once in ``problems`` and the log; the others keep their file's number."""
    bad = _spoil(image_folder)
    with ImageFolderSource(image_folder) as source:
        assert source.frame_count == 12
        frames = read_all(source)
        assert [f.index for f in frames] == [i for i in range(12) if i not in bad]
        assert all(f.image.shape == (256, 256, 3) for f in frames)
        assert len(source.problems) == 4
        for problem, (index, name) in zip(source.problems, sorted(bad.items())):
            assert name in problem and f"(frame {index})" in problem and problem.endswith("skipped")
        assert "1x1 pixels is too small" in source.problems[3]
        assert source.frame_at(5).index == 6  # a bad frame's number gives the next good one
        assert source.step_back().index == 4  # stepping back jumps over bad files too
        source.frame_at(9)
        assert source.step_back().index == 7
        read_all(source)
        assert len(source.problems) == 4  # each reported once
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 4


def test_folder_with_only_unreadable_images(tmp_path):
    (tmp_path / "a.jpg").write_text("text")
    with pytest.raises(SourceError, match="none of the 1 image files .* is a readable image"):
        ImageFolderSource(tmp_path)


def test_a_folder_of_bad_images_tracks_to_the_end_and_exits_with_the_problems_code(image_folder, capsys):
    from app.cli import main

    bad = _spoil(image_folder)
    csv = image_folder.parent / "o.csv"
    assert main(["track", str(image_folder), "--landmarks", str(csv), "--model", "mnv2_sdd"]) == 3
    captured = capsys.readouterr()
    assert "frames=8 " in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4 and all(name in w for w, name in zip(warnings, bad.values()))


# -- 300-VW clips -------------------------------------------------------------------
@pytest.mark.parametrize("clip, numbers, size", [("001", [6, 9], (720, 1280, 3)), ("401", [731, 732], (512, 700, 3))])
def test_300vw_sample_clip_ground_truth_equals_read_pts(clip, numbers, size):
    folder = SAMPLE / clip
    assert is_300vw_clip(folder)
    with open_source(folder) as source:
        assert isinstance(source, Clip300VWSource) and source.layout == "imgs"
        assert source.frame_count == 2 and source.frame_numbers == numbers and source.clip_id == clip
        assert source.annotation_problems == []
        frames = read_all(source)
    for frame, number in zip(frames, numbers):
        assert frame.image.shape == size
        assert np.array_equal(frame.ground_truth, read_pts(folder / f"annot/{number:06d}.pts"))
        assert frame.timestamp == pytest.approx((number - 1) / 30.0)
    assert frames[1].timestamp > frames[0].timestamp


MALFORMED = {
    4: "version: 1\nn_points: 68\n{\n" + "1 2\n" * 60 + "}\n",  # wrong count
    7: "version: 1\nn_points: 68\n{\n" + "one two\n" * 68 + "}\n",  # text instead of numbers
    9: "version: 1\nn_points: 68\n" + "1 2\n" * 68,  # missing braces
}


@pytest.fixture
def video_clip(tmp_path, talking_frames):
    """A 300-VW clip in the real layout: vid.avi (20 frames) + annot/, with bad annotations."""
    clip = tmp_path / "042"
    (clip / "annot").mkdir(parents=True)
    writer = cv2.VideoWriter(str(clip / "vid.avi"), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (512, 512))
    for image in talking_frames[:20]:
        writer.write(image)
    writer.release()
    rng = np.random.default_rng(1)
    for number in range(1, 21):
        if number in MALFORMED:
            (clip / "annot" / f"{number:06d}.pts").write_text(MALFORMED[number])
        elif number != 12:  # 000012.pts missing
            write_pts(clip / "annot" / f"{number:06d}.pts", rng.uniform(0, 511, (68, 2)))
    write_pts(clip / "annot" / "000025.pts", rng.uniform(0, 511, (68, 2)))  # beyond the video
    return clip


def test_300vw_video_layout_with_malformed_annotations_keeps_going(video_clip):
    with open_source(video_clip) as source:
        assert isinstance(source, Clip300VWSource) and source.layout == "video"
        assert source.frame_count == 20 and source.fps == 25.0
        frames = read_all(source)
        problems = {p.frame_number: p for p in source.annotation_problems}
    assert len(frames) == 20
    assert sorted(problems) == [4, 7, 9, 12, 25]
    assert "n_points says 68 but 60 points are listed" in problems[4].message
    assert "point 1 is not two numbers: 'one two'" in problems[7].message
    assert "missing opening brace" in problems[9].message
    assert problems[12].message.endswith("000012.pts: missing")
    assert "no such frame in the video (20 frames)" in problems[25].message
    for number in (4, 7, 9, 12):
        assert problems[number].path.name == f"{number:06d}.pts"
        assert str(problems[number].path) in problems[number].message
    for frame in frames:
        number = frame.index + 1
        if number in problems:
            assert frame.ground_truth is None
        else:
            assert np.array_equal(frame.ground_truth, read_pts(video_clip / f"annot/{number:06d}.pts"))
    assert [f.timestamp for f in frames] == pytest.approx([i / 25 for i in range(20)])


def test_300vw_imgs_layout_with_a_malformed_annotation(tmp_path):
    clip = tmp_path / "001"
    shutil.copytree(SAMPLE / "001", clip)
    (clip / "annot" / "000009.pts").chmod(0o644)
    (clip / "annot" / "000009.pts").write_text(MALFORMED[7])
    with Clip300VWSource(clip) as source:
        frames = read_all(source)
        assert [p.path.name for p in source.annotation_problems] == ["000009.pts"]
    assert np.array_equal(frames[0].ground_truth, read_pts(SAMPLE / "001/annot/000006.pts"))
    assert frames[1].ground_truth is None and frames[1].image.shape == (720, 1280, 3)


def test_300vw_folder_without_video_or_imgs(tmp_path):
    (tmp_path / "annot").mkdir()
    with pytest.raises(SourceError, match="neither vid.avi nor an imgs/ folder"):
        Clip300VWSource(tmp_path)
    with pytest.raises(SourceError, match="has no annot/ folder"):
        Clip300VWSource(SAMPLE)


# -- open_source, cameras -----------------------------------------------------------
def absent_camera_index() -> int:
    return next(i for i in range(3, 64) if not Path(f"/dev/video{i}").exists())


def test_open_source_dispatch(image_folder):
    for spec, kind in ((str(TALKING), VideoFileSource), (image_folder, ImageFolderSource),
                       (SAMPLE / "401", Clip300VWSource)):
        with open_source(spec) as source:
            assert isinstance(source, kind)
        assert source.closed
    with pytest.raises(SourceError, match="holds 300-VW clip folders \\(001, 401\\): open one of them"):
        open_source(SAMPLE)
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source("/nonexistent/clip.mp4")


@pytest.mark.parametrize("spec", ["{i}", "camera:{i}", "CAMERA:{i}", "int"])
def test_camera_that_does_not_exist_fails_at_open_quietly(capfd, spec):
    index = absent_camera_index()
    spec = index if spec == "int" else spec.format(i=index)
    with pytest.raises(SourceError, match=f"camera {index} is not available \\(no such device"):
        open_source(spec)
    with pytest.raises(SourceError, match=f"camera {index} is not available"):
        CameraSource(index, width=1280, height=720, fps=30)
    assert capfd.readouterr().err == ""


def test_list_cameras_is_quiet_and_lists_only_openable_devices(capfd):
    cameras = list_cameras()
    assert capfd.readouterr().err == ""
    if not list(Path("/dev").glob("video*")):
        assert cameras == []
    assert all(c.width > 0 and c.height > 0 and c.name for c in cameras)


def test_camera_read_path_timestamps_and_unplug_error():
    """CameraSource's read loop on a real capture (a file stands in for the device, which ends like an unplug)."""
    capture = cv2.VideoCapture(str(VIDEOS / "talking_d18.mp4"))
    with CameraSource._from_capture(capture, 0) as camera:
        assert camera.is_live and not camera.seekable and camera.frame_count is None
        assert camera.frame_size == (480, 480) and camera.fps == 30.0
        frames = []
        with pytest.raises(SourceError, match="camera 0 stopped delivering frames after 215 .*unplugged"):
            for frame in camera:
                frames.append(frame)
    assert len(frames) == 215  # one frame went to the open-time check
    times = np.array([f.timestamp for f in frames])
    assert times[0] == 0.0 and np.all(np.diff(times) >= 0)
    assert [f.index for f in frames] == list(range(215))


def test_sources_have_no_finaliser_whoever_opens_one_closes_it():
    """Issue 32: no ``__del__`` doing I/O at a time the garbage collector picks; a source dropped
    unclosed stays open (its owner's bug, visible), and ``with`` closes it at a known point."""
    import gc
    import inspect

    import app.sources as sources

    classes = [c for c in vars(sources).values() if inspect.isclass(c) and issubclass(c, sources.FrameSource)]
    assert {c.__name__ for c in classes} >= {"FrameSource", "VideoFileSource", "ImageFolderSource",
                                             "Clip300VWSource", "CameraSource"}
    assert [c.__name__ for c in classes for k in c.__mro__ if "__del__" in vars(k)] == []
    source = open_source(TALKING)
    capture = source._capture
    del source
    gc.collect()
    assert capture.isOpened()  # nothing closed it behind its owner's back
    capture.release()
    with open_source(SAMPLE / "001") as clip:
        frames = list(clip)
    assert clip.closed and len(frames) == clip.frame_count


def test_close_twice_and_read_after_close():
    source = open_source(TALKING)
    source.close()
    source.close()
    assert source.closed
    with pytest.raises(SourceError, match="talking_d0.mp4 is closed"):
        source.read()

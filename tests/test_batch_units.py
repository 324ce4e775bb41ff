"""The batch command's parts that need no Ray: discovery, chunk plans, id stitching, part files."""
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.batch.inputs import CLIP_300VW, IMAGES, VIDEO, discover_inputs
from app.batch.parts import ChunkState, InputParts
from app.batch.plan import Chunk, plan_chunks
from app.batch.rows import ChunkRows, FaceBoxes
from app.batch.schema import FACE_COLUMNS, FrameRecord, parquet_schema, records_to_table
from app.batch.stitch import Stitcher
from app.batch.worker import ChunkResult
from app.recording import CSV_HEADER, read_landmark_csv
from app.types import BlinkEvent, FaceGeometry, FaceResult, HeadPose
from models.types import Landmarks


def face(track_id, x, y, size=100.0):
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 17), np.linspace(0, 1, 4)), -1).reshape(-1, 2)[:68]
    points = np.array([x, y]) + size * grid
    marks = Landmarks(points, np.full(68, 0.9))
    return FaceResult(track_id, marks, marks)


def record(index, *faces):
    return FrameRecord(index, index / 25.0, tuple(faces))


def test_chunks_cover_every_frame_once_and_overlap_the_chunk_before():
    chunks = plan_chunks("a", 100, chunk_frames=30, overlap=8)
    assert [(c.start, c.stop, c.first) for c in chunks] == [(0, 30, 0), (30, 60, 22), (60, 90, 52), (90, 100, 82)]
    assert plan_chunks("a", None) == [Chunk("a", 0, 0, None, 0)]
    assert plan_chunks("a", 5, chunk_frames=30, overlap=8)[0].planned_frames == 5
    with pytest.raises(ValueError):
        plan_chunks("a", 10, chunk_frames=0)


def test_discovery_finds_videos_clips_image_folders_and_list_files(tmp_path, data_dir):
    root = tmp_path / "collection"
    (root / "talks" / "day1").mkdir(parents=True)
    (root / "talks" / "day1" / "a.mp4").write_bytes(b"x")
    (root / "talks" / "a.avi").write_bytes(b"x")
    (root / "talks" / "notes.txt").write_text("not a list when found in a folder")
    shutil.copytree(data_dir / "300vw_sample" / "001", root / "clips" / "001")
    (root / "stills").mkdir()
    shutil.copy(data_dir / "300vw_sample" / "001" / "imgs" / "000006.jpg", root / "stills" / "x.jpg")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "b.mp4").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.mp4").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# more\nother/a.mp4\n\ncollection/talks/a.avi\nmissing.mp4\n")
    items = discover_inputs([root, listing], out_dir=root / "out")
    assert [(i.key, i.kind) for i in items] == [
        ("clips/001", CLIP_300VW), ("stills", IMAGES), ("talks/a", VIDEO), ("talks/day1/a", VIDEO),
        ("a", VIDEO), ("missing", VIDEO),  # a.avi listed again: once; a missing path is reported when run
    ]
    assert items[4].path == tmp_path / "other" / "a.mp4"
    twice = discover_inputs([tmp_path / "other" / "a.mp4", root / "talks" / "a.avi"])
    assert [i.key for i in twice] == ["a", "a~2"]


def chunk_result(chunk, written, warmup=()):
    return ChunkResult(chunk, frames=np.array([r.index for r in written]), boxes=FaceBoxes.from_records(written),
                       warmup=FaceBoxes.from_records(list(warmup)), rows=ChunkRows.from_records(written))


def test_stitching_keeps_face_ids_across_chunks_in_any_arrival_order():
    c0, c1 = Chunk("v", 0, 0, 4), Chunk("v", 1, 4, 8, warmup=2)
    # Worker A ran chunk 0 (local ids 7, 8); worker B ran chunk 1 (its ids 31, 32 swapped in order)
    r0 = chunk_result(c0, [record(i, face(7, 10 + i, 10), face(8, 300, 300)) for i in range(4)])
    r1 = chunk_result(
        c1,
        [record(i, face(31, 300, 300), face(32, 10 + i, 10), *([face(33, 600, 50)] if i == 6 else []))
         for i in range(4, 8)],
        warmup=[record(i, face(31, 300, 300), face(32, 10 + i, 10)) for i in (2, 3)],
    )
    stitcher = Stitcher(overlap=2)
    stitcher.add(r1)
    assert stitcher.ready() == [] and stitcher.waiting == 1
    stitcher.add(r0)
    (done0, ids0), (done1, ids1) = stitcher.ready()
    assert (done0, done1) == (r0, r1)
    assert ids0 == {7: 1, 8: 2}
    assert ids1 == {32: 1, 31: 2, 33: 3}  # same faces, same ids after the boundary; a new face, the next id
    rows = r1.rows.renamed(ids1)
    assert rows.table.column("face_id").to_pylist() == [2, 1, 2, 1, 2, 1, 3, 2, 1]
    csv_ids = [int(line.split(b",")[2]) for line in rows.csv.splitlines()[1:]]
    assert csv_ids == rows.table.column("face_id").to_pylist()
    stitcher.add(chunk_result(Chunk("v", 3, 12, 16, warmup=2), []))  # past an end found meanwhile
    stitcher.discard(from_index=2)
    assert stitcher.waiting == 0


def test_parts_are_written_once_resumed_from_and_concatenated(tmp_path):
    schema = parquet_schema({"source": "v.mp4"})
    parts = InputParts(tmp_path, "sub/v", schema)
    chunks = [[record(0, face(1, 10, 10)), record(1)], [record(2, face(1, 12, 10), face(2, 300, 300))]]
    for index, records in enumerate(chunks):
        rows = ChunkRows.from_records(records)
        faces = sum(len(r.faces) for r in records)
        parts.write_chunk(ChunkState(index, len(records), faces, records[-1].index, 3), rows)
    parts.write_chunk(ChunkState(0, 2, 1, 1, 2), ChunkRows.from_records(chunks[0]))  # a re-run chunk replaces its files
    done = parts.done_chunks()
    assert [s.index for s in done] == [0, 1]
    tail = parts.tail(done, overlap=4)
    assert tail.next_id == 3 and list(tail.boxes.frame) == [2, 2] and list(tail.boxes.face_id) == [1, 2]
    np.testing.assert_allclose(tail.boxes.box[0], [12, 10, 112, 110], atol=1e-4)
    parts.finalize(len(done))
    assert not (tmp_path / ".parts").exists()
    table = read_landmark_csv(tmp_path / "sub" / "v.csv")
    assert list(table.frame) == [0, 2, 2] and list(table.face_id) == [1, 1, 2]
    frame = pd.read_parquet(tmp_path / "sub" / "v.parquet")
    landmark_columns = CSV_HEADER[: 3 + 3 * 68]
    assert list(frame.columns) == landmark_columns + [c.name for c in FACE_COLUMNS] + [f"v{i}" for i in range(68)]
    assert list(frame["frame"]) == [0, 2, 2]
    expected = np.hstack([table.points.reshape(3, -1), table.confidence])
    np.testing.assert_allclose(frame[landmark_columns[3:]].to_numpy(), expected, atol=1e-3)
    assert frame["yaw"].isna().all()  # these faces carry no geometry: nulls, as the CSV's empty cells
    metadata = pq.read_schema(tmp_path / "sub" / "v.parquet").metadata
    assert json.loads(metadata[b"source"]) == "v.mp4"


def test_the_command_reports_missing_inputs_and_refuses_empty_collections_without_starting_ray(tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "gone.mp4"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "failed: gone: no such file or folder" in err
    entry = json.loads((out / "manifest.json").read_text())["inputs"]["gone"]
    assert entry["status"] == "failed" and "gone.mp4" in entry["reason"]
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no inputs found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # refused at parse time, like every numeric option
        main(["batch", str(tmp_path / "gone.mp4"), "--out", str(out), "--workers", "0"])
    assert exit_info.value.code == 2
    assert "argument --workers: must be an integer >= 1, got '0'" in capsys.readouterr().err


def test_face_geometry_becomes_parquet_columns():
    pose = HeadPose(12.5, -3.0, 1.5, np.eye(3), np.array([1.0, 2.0, 600.0]), np.eye(3), 0.01)
    blink = BlinkEvent(start_frame=4, end_frame=6, start_time=0.16, end_time=0.28)
    with_pose = dataclasses.replace(face(1, 10, 10), geometry=FaceGeometry(pose, 0.31, 0.29, 0.1, False, blink, 1))
    without = dataclasses.replace(face(2, 300, 300), geometry=FaceGeometry(None, float("nan"), 0.2, 0.0, True))
    table = records_to_table([record(7, with_pose, without)], parquet_schema()).to_pandas()
    assert table.loc[0, ["yaw", "pitch", "roll", "tz"]].tolist() == pytest.approx([12.5, -3.0, 1.5, 600.0])
    assert table.loc[0, "blink_end"] and table.loc[0, "blink_frames"] == 3 and not table.loc[0, "eyes_closed"]
    assert table.loc[1, ["yaw", "ear_left"]].isna().all() and table.loc[1, "ear_right"] == pytest.approx(0.2)
    assert table.loc[1, "eyes_closed"] and not table.loc[1, "blink_end"]


@pytest.mark.parametrize("option, message", [
    (["--model", "no_such_model"], "no_such_model"),
    (["--detector", "retinaface", "--detector-model", "missing.onnx"], "missing.onnx"),
    (["--detector", "no_such_detector"], "no_such_detector"),
])
def test_bad_pipeline_options_fail_with_their_own_message_before_ray_starts(
    tmp_path, talking_clip, option, message, capsys
):
    from app.cli import main

    assert main(["batch", str(talking_clip), "--out", str(tmp_path / "out"), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_a_worker_notices_when_its_driver_has_ended():
    """Issue 31: a batch worker beside its driver exits once the driver is gone (SIGKILLed), instead
    of computing chunks nobody collects until Ray reaps it a minute or two later."""
    import subprocess
    import threading
    import time

    from app.batch.worker import watch_driver

    driver = subprocess.Popen(["sleep", "60"])  # a real process standing for the driver
    gone = threading.Event()
    watch_driver(driver.pid, gone.set, interval=0.05)
    time.sleep(0.3)
    assert not gone.is_set()  # it runs: the worker stays
    killed = time.monotonic()
    driver.kill()  # not reaped yet: a zombie counts as ended
    assert gone.wait(5.0) and time.monotonic() - killed < 2.0
    driver.wait()

"""Per-point visibility (``Landmarks.visible``, SGFA's score maps) from the model to the user: the
landmark CSV and Parquet columns, the overlay's hollow rings, and the tracker's lost-face rule."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from app.batch.schema import FrameRecord, parquet_schema, records_to_table
from app.overlay import draw_landmarks
from app.recording import LandmarkCsvWriter, read_landmark_csv
from app.tracking import FaceTracker, TrackerOptions
from app.types import FaceResult, Frame, FrameResult
from models.types import Landmarks


def _face(visible: np.ndarray | None) -> Landmarks:
    rng = np.random.default_rng(0)
    points = rng.uniform(100, 300, (68, 2))
    confidence = np.where(visible, 0.9, 0.1) if visible is not None else np.full(68, 0.9)
    return Landmarks(points, confidence, visible)


HIDDEN = np.arange(68) % 3 == 0  # a third of the points hidden


def test_csv_and_parquet_carry_which_points_are_hidden(tmp_path):
    seen, untold = _face(~HIDDEN), _face(None)
    result = FrameResult(Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0),
                         (FaceResult(1, seen, seen), FaceResult(2, untold, untold)))
    with LandmarkCsvWriter(tmp_path / "v.csv") as writer:
        writer.write(result)
    table = read_landmark_csv(tmp_path / "v.csv")
    np.testing.assert_array_equal(table.visible[0], (~HIDDEN).astype(float))
    assert np.isnan(table.visible[1]).all()
    parquet = records_to_table([FrameRecord(0, 0.0, result.faces)], parquet_schema())
    assert parquet.schema.field("v0").type == pa.bool_()
    assert parquet.column("v0").to_pylist() == [False, None] and parquet.column("v1").to_pylist() == [True, None]


def test_old_csv_files_without_visibility_columns_still_read(tmp_path):
    from app.recording import CSV_HEADER_V1

    row = ["0", "0.0", "1"] + ["1.0"] * 136 + ["0.5"] * 68 + [""] * (len(CSV_HEADER_V1) - 3 - 204)
    (tmp_path / "old.csv").write_text(",".join(CSV_HEADER_V1) + "\n" + ",".join(row) + "\n")
    table = read_landmark_csv(tmp_path / "old.csv")
    assert len(table) == 1 and np.isnan(table.visible).all() and table.confidence[0, 0] == 0.5


def test_hidden_points_are_drawn_as_hollow_rings():
    points = np.array([[20.0, 20.0], [60.0, 20.0]])
    image = draw_landmarks(np.zeros((40, 80, 3), np.uint8), points, radius=4, visible=np.array([True, False]))
    assert image[20, 20].any()  # a seen point: a filled dot
    assert not image[20, 60].any() and image[20, 64:66].any()  # a hidden one: empty centre, a ring


def test_a_face_with_hidden_low_confidence_points_keeps_its_track_while_enough_are_seen():
    tracker = FaceTracker(TrackerOptions(min_confidence=0.25))
    shape = (400, 400, 3)
    partly = _face(~HIDDEN)
    assert partly.mean_confidence < 0.7 and not tracker.is_lost(partly, shape)
    # the same low confidences without visibility are judged over every point
    dim = Landmarks(partly.points, np.full(68, 0.2))
    assert tracker.is_lost(dim, shape)
    mostly_hidden = np.arange(68) < 60
    assert tracker.is_lost(_face(~mostly_hidden), shape)  # 8 of 68 seen: under a quarter

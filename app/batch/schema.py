"""The Parquet table: one row per face per frame.

Columns, in order: ``frame`` (int64), ``time`` (float64, seconds), ``face_id`` (int32),
``x0, y0, ..., x67, y67`` (float32, 0-based frame pixels), ``c0 ... c67`` (float32,
confidence in [0, 1]) -- the names and order of the landmark CSV -- then one column per
entry of ``FACE_COLUMNS``: the face geometry of ``app.geometry`` (``yaw``, ``pitch``,
``roll`` in degrees, ``tx``, ``ty``, ``tz`` in mm, ``ear_left``, ``ear_right``, ``mouth_open``,
``eyes_closed``, ``blink_end``: true on the frame a blink ends, with ``blink_frames`` its
closed frames; null where not computed, as the CSV's empty cells), and last ``v0 ... v67`` (bool:
true where the model sees the point, false where it says it is hidden; null for models that do
not tell, as the CSV's empty cells). A per-face quantity added
to ``FaceResult`` later becomes a column by adding one ``FaceColumn`` there. The Parquet file
has no running blink count: chunks start their tracks afresh, so a count would restart at
each chunk; sum ``blink_end`` per ``face_id`` instead (the CSV's ``blinks`` column, written
per chunk, counts from the chunk's start). The file's metadata holds the input's path, the
model and the settings id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from app.recording import CSV_HEADER
from app.types import FaceResult
from models.landmarks68 import NUM_LANDMARKS


@dataclass(frozen=True)
class FrameRecord:
    """One frame's tracked faces, without its image: what the row writers take."""

    index: int
    time: float
    faces: tuple[FaceResult, ...]


@dataclass(frozen=True)
class FaceColumn:
    name: str
    type: pa.DataType
    value: Callable[[FaceResult], object]  # None: null in this row


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _pose(attribute: str, index: int | None = None) -> Callable[[FaceResult], object]:
    def value(face: FaceResult) -> float | None:
        pose = face.geometry.pose if face.geometry is not None else None
        if pose is None:
            return None
        v = getattr(pose, attribute)
        return _finite(v if index is None else v[index])

    return value


def _geometry(attribute: str) -> Callable[[FaceResult], object]:
    return lambda face: None if face.geometry is None else _finite(getattr(face.geometry, attribute))


def _blink_frames(face: FaceResult) -> int | None:
    blink = face.geometry.blink if face.geometry is not None else None
    return None if blink is None else blink.end_frame - blink.start_frame + 1


FACE_COLUMNS: tuple[FaceColumn, ...] = (
    FaceColumn("yaw", pa.float32(), _pose("yaw")),
    FaceColumn("pitch", pa.float32(), _pose("pitch")),
    FaceColumn("roll", pa.float32(), _pose("roll")),
    FaceColumn("tx", pa.float32(), _pose("translation", 0)),
    FaceColumn("ty", pa.float32(), _pose("translation", 1)),
    FaceColumn("tz", pa.float32(), _pose("translation", 2)),
    FaceColumn("ear_left", pa.float32(), _geometry("ear_left")),
    FaceColumn("ear_right", pa.float32(), _geometry("ear_right")),
    FaceColumn("mouth_open", pa.float32(), _geometry("mouth_opening")),
    FaceColumn("eyes_closed", pa.bool_(), lambda f: None if f.geometry is None else bool(f.geometry.eyes_closed)),
    FaceColumn("blink_end", pa.bool_(), lambda f: None if f.geometry is None else f.geometry.blink is not None),
    FaceColumn("blink_frames", pa.int32(), _blink_frames),
)

_POINT_COLUMNS = CSV_HEADER[3 : 3 + 2 * NUM_LANDMARKS]
_CONFIDENCE_COLUMNS = CSV_HEADER[3 + 2 * NUM_LANDMARKS : 3 + 3 * NUM_LANDMARKS]
_VISIBILITY_COLUMNS = CSV_HEADER[-NUM_LANDMARKS:]


def encode_metadata(metadata: dict) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in metadata.items()}


def parquet_schema(metadata: dict | None = None) -> pa.Schema:
    fields = [pa.field("frame", pa.int64()), pa.field("time", pa.float64()), pa.field("face_id", pa.int32())]
    fields += [pa.field(name, pa.float32()) for name in _POINT_COLUMNS + _CONFIDENCE_COLUMNS]
    fields += [pa.field(column.name, column.type) for column in FACE_COLUMNS]
    fields += [pa.field(name, pa.bool_()) for name in _VISIBILITY_COLUMNS]
    return pa.schema(fields, metadata=encode_metadata(metadata) if metadata else None)


def records_to_table(records: list[FrameRecord], schema: pa.Schema) -> pa.Table:
    rows = [(record, face) for record in records for face in record.faces]
    faces = [face for _, face in rows]
    points = np.array([f.landmarks.points for f in faces], np.float32).reshape(len(rows), 2 * NUM_LANDMARKS)
    confidence = np.array([f.landmarks.confidence for f in faces], np.float32).reshape(len(rows), NUM_LANDMARKS)
    columns = [
        np.array([r.index for r, _ in rows], np.int64),
        np.array([r.time for r, _ in rows], np.float64),
        np.array([f.track_id for f in faces], np.int32),
    ]
    columns += list(np.ascontiguousarray(points.T)) + list(np.ascontiguousarray(confidence.T))
    columns += [[column.value(face) for face in faces] for column in FACE_COLUMNS]
    columns += [[None if f.landmarks.visible is None else bool(f.landmarks.visible[i]) for f in faces]
                for i in range(NUM_LANDMARKS)]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)


def read_metadata(schema: pa.Schema) -> dict:
    return {key.decode(): json.loads(value) for key, value in (schema.metadata or {}).items()}

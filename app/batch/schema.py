"""The Parquet table: one row per face per frame.

Columns, in order: ``frame`` (int64), ``time`` (float64, seconds), ``face_id`` (int32),
``x0, y0, ..., x67, y67`` (float32, 0-based frame pixels), ``c0 ... c67`` (float32,
confidence in [0, 1]) -- the names and order of the landmark CSV -- then one column per
entry of ``FACE_COLUMNS``. A per-face quantity added to ``FaceResult`` later (head pose,
blink) becomes a column by adding one ``FaceColumn`` there. The file's metadata holds the
input's path, the model and the settings id.
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


FACE_COLUMNS: tuple[FaceColumn, ...] = ()

_POINT_COLUMNS = CSV_HEADER[3 : 3 + 2 * NUM_LANDMARKS]
_CONFIDENCE_COLUMNS = CSV_HEADER[3 + 2 * NUM_LANDMARKS :]


def encode_metadata(metadata: dict) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in metadata.items()}


def parquet_schema(metadata: dict | None = None) -> pa.Schema:
    fields = [pa.field("frame", pa.int64()), pa.field("time", pa.float64()), pa.field("face_id", pa.int32())]
    fields += [pa.field(name, pa.float32()) for name in _POINT_COLUMNS + _CONFIDENCE_COLUMNS]
    fields += [pa.field(column.name, column.type) for column in FACE_COLUMNS]
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
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)


def read_metadata(schema: pa.Schema) -> dict:
    return {key.decode(): json.loads(value) for key, value in (schema.metadata or {}).items()}

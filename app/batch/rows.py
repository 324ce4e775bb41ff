"""A chunk's output as the worker sends it, and giving its faces their final ids.

The worker encodes its frames itself (a Parquet table and the landmark CSV, written by
``LandmarkCsvWriter`` exactly as ``track`` writes it) with its own local face ids, plus the
faces' boxes for matching. The driver then only renames ids: one column of the table and
one field per CSV line. This keeps the driver's work per face small (it is the one place
every frame passes through; docs/SCALING.md).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from app.batch.schema import FrameRecord, parquet_schema, records_to_table
from app.recording import CSV_HEADER, LandmarkCsvWriter
from app.types import Frame, FrameResult

_FACE_ID_FIELD = CSV_HEADER.index("face_id")
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


@dataclass(frozen=True)
class FaceBoxes:
    """One row per face per frame: frame index, face id, landmark box (x1, y1, x2, y2)."""

    frame: np.ndarray  # (n,) int64
    face_id: np.ndarray  # (n,) int64
    box: np.ndarray  # (n, 4) float64

    @classmethod
    def empty(cls) -> "FaceBoxes":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)))

    @classmethod
    def from_records(cls, records: list[FrameRecord]) -> "FaceBoxes":
        rows = [(r.index, f.track_id, f.box) for r in records for f in r.faces]
        if not rows:
            return cls.empty()
        frame, face_id, box = zip(*rows)
        return cls(np.array(frame, np.int64), np.array(face_id, np.int64), np.array(box, np.float64).reshape(-1, 4))

    def __len__(self) -> int:
        return len(self.frame)

    def where(self, mask: np.ndarray) -> "FaceBoxes":
        return FaceBoxes(self.frame[mask], self.face_id[mask], self.box[mask])

    def renamed(self, mapping: dict[int, int]) -> "FaceBoxes":
        return FaceBoxes(self.frame, np.array([mapping[i] for i in self.face_id], np.int64), self.box)


@dataclass(frozen=True)
class ChunkRows:
    """The rows of a chunk's written frames in both output formats."""

    table: pa.Table  # Parquet rows (schema without metadata)
    csv: bytes  # the landmark CSV, header line included

    @classmethod
    def from_records(cls, records: list[FrameRecord]) -> "ChunkRows":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "rows.csv"
            with LandmarkCsvWriter(path) as writer:
                for record in records:
                    writer.write(FrameResult(Frame(_NO_IMAGE, record.index, record.time), record.faces))
            csv = path.read_bytes()
        return cls(records_to_table(records, parquet_schema()), csv)

    def renamed(self, mapping: dict[int, int]) -> "ChunkRows":
        """The same rows with face ids ``mapping[local id]``."""
        if not len(self.table):
            return self
        ids = self.table.column("face_id").to_numpy()
        table = self.table.set_column(
            self.table.schema.get_field_index("face_id"), "face_id",
            pa.array(np.array([mapping[int(i)] for i in ids], np.int32)),
        )
        header, *lines = self.csv.rstrip(b"\n").split(b"\n")
        out = [header]
        for line in lines:
            fields = line.split(b",", _FACE_ID_FIELD + 1)
            fields[_FACE_ID_FIELD] = b"%d" % mapping[int(fields[_FACE_ID_FIELD])]
            out.append(b",".join(fields))
        return ChunkRows(table, b"\n".join(out) + b"\n")

"""Putting one input's chunks back together: in order, each frame once, face ids kept.

Chunks finish in any order; ``Stitcher.ready`` hands them back in index order. A chunk's
own track ids are local to its worker; the stitcher renames them: a track seen in the
overlap frames (the chunk's warm-up) gets the id of the face the previous chunk wrote
there when their landmark boxes overlap (mean IoU over the frames both saw, at least
``MATCH_IOU``, best pairs first); any other track gets the next new id. New ids are
handed out in order of first appearance, so the first chunk reproduces ``track``'s ids.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from app.batch.worker import ChunkResult, FrameRecord
from app.tracking import box_iou

MATCH_IOU = 0.5


@dataclass
class Tail:
    """What the next chunk needs from the written ones: the last frames' boxes, the next id."""

    boxes: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict)  # frame -> [(face id, box)]
    next_id: int = 1


def match_ids(tail: Tail, warmup: list[FrameRecord]) -> dict[int, int]:
    """{local id: written id} for the warm-up tracks that continue a written face."""
    scores: dict[tuple[int, int], list[float]] = {}
    for record in warmup:
        written = tail.boxes.get(record.index, [])
        for face in record.faces:
            for face_id, box in written:
                scores.setdefault((face.track_id, face_id), []).append(box_iou(face.box, box))
    pairs = sorted(((float(np.mean(v)), local, known) for (local, known), v in scores.items()), reverse=True)
    mapping: dict[int, int] = {}
    for score, local, known in pairs:
        if score >= MATCH_IOU and local not in mapping and known not in mapping.values():
            mapping[local] = known
    return mapping


class Stitcher:
    def __init__(self, overlap: int, next_index: int = 0, tail: Tail | None = None) -> None:
        self.overlap = overlap
        self.next_index = next_index  # the chunk to write next
        self.tail = tail or Tail()
        self._waiting: dict[int, ChunkResult] = {}

    def add(self, result: ChunkResult) -> None:
        self._waiting[result.chunk.index] = result

    def ready(self) -> list[tuple[ChunkResult, list[FrameRecord]]]:
        """The chunks now writable in order, each with its frames under the final face ids."""
        out = []
        while self.next_index in self._waiting:
            result = self._waiting.pop(self.next_index)
            out.append((result, self._rename(result)))
            self.next_index += 1
        return out

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _rename(self, result: ChunkResult) -> list[FrameRecord]:
        mapping = match_ids(self.tail, result.warmup)
        renamed = []
        for record in result.frames:
            faces = []
            for face in record.faces:
                if face.track_id not in mapping:
                    mapping[face.track_id] = self.tail.next_id
                    self.tail.next_id += 1
                faces.append(dataclasses.replace(face, track_id=mapping[face.track_id]))
            renamed.append(dataclasses.replace(record, faces=tuple(faces)))
        if renamed:
            self.tail.boxes = {
                r.index: [(f.track_id, f.box) for f in r.faces] for r in renamed[-self.overlap:] if self.overlap
            }
        return renamed

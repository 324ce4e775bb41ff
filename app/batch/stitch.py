"""Putting one input's chunks back together: in order, each frame once, face ids kept.

Chunks finish in any order; ``Stitcher.ready`` hands them back in index order with the
renaming of their faces. A chunk's own track ids are local to its worker: a track seen in
the overlap frames (the chunk's warm-up) gets the id of the face the previous chunk wrote
there when their landmark boxes overlap (mean IoU over the frames both saw, at least
``MATCH_IOU``, best pairs first); any other track gets the next new id. New ids are handed
out in order of first appearance, so the first chunk reproduces ``track``'s ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.batch.rows import FaceBoxes
from app.batch.worker import ChunkResult
from models.boxes import box_iou

MATCH_IOU = 0.5


@dataclass
class Tail:
    """What the next chunk needs from the written ones: the faces of the last frames, the next id."""

    boxes: FaceBoxes = field(default_factory=FaceBoxes.empty)  # final ids
    next_id: int = 1


def match_ids(written: FaceBoxes, warmup: FaceBoxes) -> dict[int, int]:
    """{local id: written id} for the warm-up tracks that continue a written face."""
    scores: dict[tuple[int, int], list[float]] = {}
    for i in range(len(warmup)):
        for j in np.flatnonzero(written.frame == warmup.frame[i]):
            key = (int(warmup.face_id[i]), int(written.face_id[j]))
            scores.setdefault(key, []).append(box_iou(warmup.box[i], written.box[j]))
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

    def ready(self) -> list[tuple[ChunkResult, dict[int, int]]]:
        """The chunks now writable in order, each with {local id: final id} for its faces."""
        out = []
        while self.next_index in self._waiting:
            result = self._waiting.pop(self.next_index)
            out.append((result, self._rename(result)))
            self.next_index += 1
        return out

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def discard(self, from_index: int = 0) -> None:
        """Forget waiting chunks from ``from_index`` on (the input ended before them, or failed)."""
        self._waiting = {i: r for i, r in self._waiting.items() if i < from_index}

    def _rename(self, result: ChunkResult) -> dict[int, int]:
        mapping = match_ids(self.tail.boxes, result.warmup)
        for local in result.boxes.face_id:  # in order of first appearance
            if int(local) not in mapping:
                mapping[int(local)] = self.tail.next_id
                self.tail.next_id += 1
        if len(result.frames):
            recent = result.boxes.frame > result.frames[-1] - self.overlap
            self.tail.boxes = result.boxes.where(recent).renamed(mapping)
        return mapping

"""Cutting an input into chunks of frames that workers run independently.

Chunk ``i`` writes frames ``[start, stop)``. Every chunk but the first also runs the
``warmup`` frames before ``start`` (the overlap with the chunk before): it starts there
with a fresh pipeline (detection on its first frame), so by ``start`` its tracks and
smoothing have settled, and the overlap frames, seen by both chunks, are where the
stitcher matches its faces to the previous chunk's ids. Overlap frames are written once,
by the earlier chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CHUNK_FRAMES = 300
DEFAULT_OVERLAP = 8


@dataclass(frozen=True)
class Chunk:
    key: str  # the input's key
    index: int
    start: int
    stop: int | None  # one past the last frame written; None: to the end of the input
    warmup: int = 0

    @property
    def first(self) -> int:
        """The first frame the worker runs."""
        return self.start - self.warmup

    @property
    def planned_frames(self) -> int:
        return 0 if self.stop is None else self.stop - self.start


def plan_chunks(key: str, frames: int | None, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
                overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    """Chunks covering ``frames`` frames (one open-ended chunk when the count is unknown)."""
    if chunk_frames < 1 or overlap < 0:
        raise ValueError(f"chunk frames must be >= 1 and overlap >= 0, got {chunk_frames} and {overlap}")
    if frames is None:
        return [Chunk(key, 0, 0, None)]
    starts = range(0, max(frames, 1), chunk_frames)
    return [
        Chunk(key, i, start, min(start + chunk_frames, frames), min(overlap, start))
        for i, start in enumerate(starts)
    ]

"""The worker: loads the pipeline once, then runs chunks of frames.

``ChunkWorker`` is a plain class (tested without Ray); ``runner`` wraps it as a Ray actor
that Ray restarts when its process dies, re-running the chunk it was on. Frames are decoded
here, beside the data; only the tracked faces travel back (about 2 KB per face per frame).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass, field

from app.batch.inputs import InputItem
from app.batch.plan import Chunk
from app.batch.probe import InputInfo, open_input, probe_input
from app.pipeline_args import pipeline_from_args
from app.sources import SourceError, TruncatedVideoError
from app.types import FaceResult


@dataclass(frozen=True)
class FrameRecord:
    """One frame's tracked faces, without its image."""

    index: int
    time: float
    faces: tuple[FaceResult, ...]


@dataclass
class ChunkResult:
    chunk: Chunk
    frames: list[FrameRecord] = field(default_factory=list)  # start..stop-1, as far as the input went
    warmup: list[FrameRecord] = field(default_factory=list)  # first..start-1, for matching face ids
    end_of_input: int | None = None  # the input holds only this many frames (it ended inside the plan)
    problems: list[str] = field(default_factory=list)  # truncation, frames that could not be decoded
    error: str | None = None  # the chunk could not run at all
    worker: str = ""
    seconds: float = 0.0


class ChunkWorker:
    def __init__(self, pipeline_args: argparse.Namespace) -> None:
        self.pipeline = pipeline_from_args(pipeline_args, on_message=lambda m: print(m, file=sys.stderr))
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def pid(self) -> int:
        return os.getpid()

    def probe(self, item: InputItem) -> InputInfo:
        return probe_input(item)

    def run_chunk(self, item: InputItem, chunk: Chunk) -> ChunkResult:
        started = time.perf_counter()
        result = ChunkResult(chunk, worker=self.name)
        try:
            with open_input(item) as source:
                self._run(source, chunk, result)
        except (SourceError, OSError, ValueError) as error:
            result.error = str(error)
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, source, chunk: Chunk, result: ChunkResult) -> None:
        self.pipeline.reset()  # a chunk starts with detection, whatever ran before
        index = chunk.first
        if index > 0:
            try:
                source.seek(index)
            except IndexError:  # the input ends before this chunk
                result.end_of_input = source.frame_count
                return
        while chunk.stop is None or index < chunk.stop:
            try:
                frame = source.read()
            except TruncatedVideoError as error:
                result.end_of_input = error.frames_read
                result.problems.append(str(error))
                return
            except SourceError as error:  # one undecodable image: skip it, keep the rest
                result.problems.append(str(error))
                index += 1
                if source.frame_count is not None and index >= source.frame_count:
                    break
                source.seek(index)
                continue
            if frame is None:
                result.end_of_input = index
                return
            faces = self.pipeline.process(frame).faces
            record = FrameRecord(frame.index, frame.timestamp, faces)
            (result.warmup if frame.index < chunk.start else result.frames).append(record)
            index = frame.index + 1

    def close(self) -> None:
        self.pipeline.close()

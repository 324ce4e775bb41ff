"""The worker: loads the pipeline once, then runs chunks of frames.

``ChunkWorker`` is a plain class (tested without Ray); ``runner`` wraps it as a Ray actor
that Ray restarts when its process dies, re-running the chunk it was on. Frames are decoded
here, beside the data, and the rows are encoded here too (``ChunkRows``); only those travel
back (about 2.3 KB per face per frame: CSV + Arrow), never images.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from app.batch.inputs import InputItem
from app.batch.plan import Chunk
from app.batch.probe import InputInfo, open_input, probe_input
from app.batch.rows import ChunkRows, FaceBoxes
from app.batch.schema import FrameRecord
from app.cli.pipeline_args import pipeline_from_args
from app.sources import SourceError, TruncatedVideoError
from engines.ort import THREADS_ENV


@dataclass
class ChunkResult:
    """What a chunk sends back. Face ids are the worker's own until the stitcher renames them."""

    chunk: Chunk
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # frames written: start..stop-1
    boxes: FaceBoxes = field(default_factory=FaceBoxes.empty)  # their faces
    warmup: FaceBoxes = field(default_factory=FaceBoxes.empty)  # faces of first..start-1, for matching ids
    rows: ChunkRows | None = None
    end_of_input: int | None = None  # the input holds only this many frames (it ended inside the plan)
    problems: list[str] = field(default_factory=list)  # truncation, images that could not be decoded
    skipped: list[int] = field(default_factory=list)  # frames of start..stop-1 that could not be read
    lost: list[int] = field(default_factory=list)  # those of them lost to damage in a video
    error: str | None = None  # the chunk could not run at all
    worker: str = ""
    seconds: float = 0.0


DRIVER_CHECK_S = 1.0  # how often a worker checks that its driver still runs


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    try:  # a zombie (killed, not yet reaped) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def watch_driver(pid: int, on_gone, interval: float = DRIVER_CHECK_S) -> threading.Thread:
    """A daemon thread that calls ``on_gone()`` once process ``pid`` (the driver, on this
    machine) has ended: Ray reaps the actors of a SIGKILLed driver only after a minute or two,
    and they would keep decoding and computing chunks that nobody collects."""
    def watch() -> None:
        while _process_alive(pid):
            time.sleep(interval)
        on_gone()

    thread = threading.Thread(target=watch, name="driver-watch", daemon=True)
    thread.start()
    return thread


def _driver_gone() -> None:
    print("batch worker: the driver has ended; exiting", file=sys.stderr)
    os._exit(1)


class ChunkWorker:
    def __init__(self, pipeline_args: argparse.Namespace, driver: tuple[str, int] | None = None) -> None:
        """``driver``: (host, pid) of the driver; a worker on that host exits when the driver has ended."""
        # One Ray CPU per worker: one ONNX Runtime thread each, so N workers do not run N x cores threads.
        os.environ.setdefault(THREADS_ENV, "1")
        if driver is not None and driver[0] == socket.gethostname():
            watch_driver(driver[1], _driver_gone)
        self.pipeline = pipeline_from_args(pipeline_args, on_message=lambda m: print(m, file=sys.stderr))
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def pid(self) -> int:
        return os.getpid()

    def probe(self, item: InputItem) -> InputInfo:
        return probe_input(item)

    def run_chunk(self, item: InputItem, chunk: Chunk) -> ChunkResult:
        started = time.perf_counter()
        result = ChunkResult(chunk, worker=self.name)
        written: list[FrameRecord] = []
        warmup: list[FrameRecord] = []
        try:
            with open_input(item) as source:
                try:
                    self._run(source, chunk, result, written, warmup)
                finally:
                    self._collect_problems(source, chunk, result)
        except (SourceError, OSError, ValueError) as error:
            result.error = str(error)
        result.frames = np.array([r.index for r in written], np.int64)
        result.boxes = FaceBoxes.from_records(written)
        result.warmup = FaceBoxes.from_records(warmup)
        result.rows = ChunkRows.from_records(written)
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, source, chunk: Chunk, result: ChunkResult, written: list[FrameRecord],
             warmup: list[FrameRecord]) -> None:
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
            if chunk.stop is not None and frame.index >= chunk.stop:
                break  # frames were skipped up to the next chunk's: that frame is the next chunk's
            faces = self.pipeline.process(frame).faces
            record = FrameRecord(frame.index, frame.timestamp, faces)
            (warmup if frame.index < chunk.start else written).append(record)
            index = frame.index + 1

    @staticmethod
    def _collect_problems(source, chunk: Chunk, result: ChunkResult) -> None:
        """What the source skipped on its own (bad images, a damaged stretch of a video): the
        frames of this chunk's own range, and the problems that name them (the video's one
        message about its lost frames is left to the driver, which joins every chunk's)."""
        stop = chunk.stop if chunk.stop is not None else float("inf")
        result.skipped = [f for f in source.skipped_frames if chunk.start <= f < stop]
        lost = source.lost_frames_problem
        if lost is not None:  # a video (or a 300-VW clip's video): what it skipped is its lost frames
            result.lost = list(result.skipped)
        for problem in source.problems:
            if problem != lost and problem not in result.problems:
                result.problems.append(problem)

    def close(self) -> None:
        self.pipeline.close()

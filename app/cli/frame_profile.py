"""Where a frame's time goes: ``python -m app.cli.frame_profile SOURCE [pipeline options]``.

Runs the same per-frame loop as ``track`` (``TrackingSession.handle``: pipeline, overlay, moving
statistics) and times each piece of it by wrapping the pieces of *this* session's objects (no
global patching): reading and decoding the video frame, detection (with its colour conversion
and letterbox), the tracker's planning and bookkeeping (when to detect, matching, losing tracks),
the alignment warp, the network's pre-processing, the network itself, decoding, smoothing, the
overlay and the statistics. Prints a Markdown table of milliseconds per frame (median and mean
over the frames where a piece ran, and its share of the mean frame).
"""
from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict
from typing import Callable

import numpy as np

from app.cli.pipeline_args import add_pipeline_arguments, pipeline_from_args
from app.session import TrackingSession
from app.sources import open_source

PIECES = ("read frame", "detect", "track bookkeeping", "align (warp)", "preprocess", "network", "decode", "smooth",
          "overlay + stats", "other")


class _Clock:
    def __init__(self) -> None:
        self.frame: dict[str, float] = defaultdict(float)

    def wrap(self, piece: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.frame[piece] += 1e3 * (time.perf_counter() - start)

        return timed


def instrument(session: TrackingSession, clock: _Clock) -> None:
    """Wrap the per-frame pieces of ``session``'s own objects with ``clock``."""
    pipeline, model = session.pipeline, session.pipeline.model
    pipeline.detector.detect = clock.wrap("detect", pipeline.detector.detect)
    pipeline.tracker.plan = clock.wrap("track bookkeeping", pipeline.tracker.plan)
    pipeline.tracker.update = clock.wrap("track bookkeeping", pipeline.tracker.update)
    pipeline._crop = clock.wrap("align (warp)", pipeline._crop)
    pipeline._face_result = clock.wrap("smooth", pipeline._face_result)
    model.decode = clock.wrap("decode", model.decode)
    runner = getattr(model, "_runner", None)
    if runner is not None and hasattr(model, "preprocess"):
        model.preprocess = clock.wrap("preprocess", model.preprocess)
        runner.infer = clock.wrap("network", runner.infer)
    else:  # a model with its own engine (mediapipe68): preprocessing is inside
        model.infer = clock.wrap("network", model.infer)


def profile(session: TrackingSession, source, frames: int, warmup: int) -> dict[str, list[float]]:
    """Per-piece milliseconds for each timed frame (pieces that did not run on a frame get 0)."""
    clock = _Clock()
    instrument(session, clock)
    rows: dict[str, list[float]] = {piece: [] for piece in (*PIECES, "total")}
    iterator = iter(source)
    for index in range(warmup + frames):
        clock.frame.clear()
        start = time.perf_counter()
        try:
            frame = clock.wrap("read frame", next)(iterator)
        except StopIteration:
            break
        handled = time.perf_counter()
        rendered = session.handle(frame)
        total = 1e3 * (time.perf_counter() - start)
        handle_ms = 1e3 * (time.perf_counter() - handled)
        if index < warmup:
            continue
        timings = rendered.result.timings
        inside = sum(clock.frame[p] for p in PIECES if p not in ("read frame", "overlay + stats", "other"))
        clock.frame["overlay + stats"] = max(0.0, handle_ms - _pipeline_ms(timings))
        clock.frame["other"] = max(0.0, total - clock.frame["read frame"] - clock.frame["overlay + stats"] - inside)
        for piece in PIECES:
            rows[piece].append(clock.frame.get(piece, 0.0))
        rows["total"].append(total)
    return rows


def _pipeline_ms(timings) -> float:
    """The pipeline's own share of ``handle``: every stage but the overlay."""
    return timings.total - timings.render


def format_table(rows: dict[str, list[float]]) -> str:
    total = np.mean(rows["total"]) if rows["total"] else float("nan")
    lines = ["| piece | runs | median ms (when run) | mean ms per frame | share |", "|---|---:|---:|---:|---:|"]
    for piece, values in rows.items():
        values = np.asarray(values)
        ran = values[values > 0]
        median = f"{np.median(ran):.2f}" if ran.size else "-"
        mean = values.mean() if values.size else float("nan")
        lines.append(f"| {piece} | {ran.size}/{values.size} | {median} | {mean:.2f} | {100 * mean / total:.0f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli.frame_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="video file, image folder, 300-VW clip or camera index")
    add_pipeline_arguments(parser)
    parser.add_argument("--max-frames", type=int, default=300, help="frames to time (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="frames run before timing starts (default 10)")
    args = parser.parse_args(argv)
    with open_source(args.source) as source, TrackingSession(pipeline_from_args(args), stats_window=60) as session:
        model = session.pipeline.model
        rows = profile(session, source, args.max_frames, args.warmup)
        precision = getattr(model, "precision", "fp32")  # also runs on code from before precisions existed
        print(f"source={args.source} frames={len(rows['total'])} model={model.name} backend={model.backend} "
              f"precision={precision} detector={args.detector} cpu={platform.processor() or platform.machine()}")
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

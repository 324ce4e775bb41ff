"""``python -m app bench``: per-stage latency (median, p95) and end-to-end FPS of the pipeline."""
from __future__ import annotations

import argparse
import platform

from tqdm import tqdm

from app.pipeline_args import add_pipeline_arguments, pipeline_from_args
from app.session import TrackingSession
from app.sources import open_source
from app.stats import format_bench_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="video file, image folder, 300-VW clip or camera index")
    add_pipeline_arguments(parser)
    parser.add_argument("--max-frames", type=int, default=300, help="frames to time (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="frames run before timing starts (default 10)")


def run(args: argparse.Namespace) -> int:
    with open_source(args.source) as source, TrackingSession(pipeline_from_args(args), stats_window=None) as session:
        backend = session.pipeline.model.backend
        for index, frame in enumerate(tqdm(source, total=args.warmup + args.max_frames, unit="frame", disable=None)):
            if index == args.warmup:
                session.stats.reset()
            if index >= args.warmup + args.max_frames:
                break
            session.handle(frame)
        summary = session.stats.summary()
    print(f"model={args.model} backend={backend} detector={args.detector} source={args.source} "
          f"frames={summary.frames} cpu={platform.processor() or platform.machine()}")
    print(format_bench_table(summary))
    return 0

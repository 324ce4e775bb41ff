"""``python -m app bench``: per-stage latency (median, p95) and end-to-end FPS of the pipeline.

Then, unless ``--model-only 0``, the landmark model alone at batch 1 on one real aligned
crop (the first face the pipeline found): the network with its preprocessing, and the
decoding, each timed ``--model-only`` times.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from tqdm import tqdm

from app.argtypes import non_negative_int, positive_int
from app.pipeline_args import add_pipeline_arguments, pipeline_from_args
from app.session import TrackingSession
from app.sources import frames_to_end, open_source
from app.stats import format_bench_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="video file, image folder, 300-VW clip or camera index")
    add_pipeline_arguments(parser)
    parser.add_argument("--max-frames", type=positive_int, default=300, help="frames to time (default 300)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="frames run before timing starts (default 10)")
    parser.add_argument("--model-only", type=non_negative_int, default=200, metavar="N",
                        help="then time the model alone N times at batch 1 (default 200; 0: skip)")


def _median_p95_ms(seconds: list[float]) -> str:
    median, p95 = 1e3 * np.percentile(seconds, (50, 95))  # as app.stats computes the stage table
    return f"median {median:.2f} ms, p95 {p95:.2f} ms"


def time_model(model, crop, runs: int) -> tuple[list[float], list[float]]:
    """Seconds per call of ``model.infer([crop])`` and of ``model.decode(raw, [crop])``, after 10 warm-up calls."""
    for _ in range(10):
        model.decode(model.infer([crop]), [crop])
    infer, decode = [], []
    for _ in range(runs):
        start = time.perf_counter()
        raw = model.infer([crop])
        middle = time.perf_counter()
        model.decode(raw, [crop])
        infer.append(middle - start)
        decode.append(time.perf_counter() - middle)
    return infer, decode


def run(args: argparse.Namespace) -> int:
    from models.align import align_from_landmarks

    crop = None
    with open_source(args.source) as source, TrackingSession(pipeline_from_args(args), stats_window=None) as session:
        pipeline = session.pipeline
        backend = pipeline.model.backend
        for index, frame in enumerate(tqdm(frames_to_end(source), total=args.warmup + args.max_frames, unit="frame", disable=None)):
            if index == args.warmup:
                session.stats.reset()
            if index >= args.warmup + args.max_frames:
                break
            faces = session.handle(frame).result.faces
            if crop is None and faces:
                crop = align_from_landmarks(frame.image, faces[0].raw_landmarks.points, pipeline.model.input_size)
        summary = session.stats.summary()
        print(f"model={args.model} backend={backend} detector={args.detector} source={args.source} "
              f"frames={summary.frames} cpu={platform.processor() or platform.machine()}")
        print(format_bench_table(summary))
        if args.model_only > 0 and crop is not None:
            infer, decode = time_model(pipeline.model, crop, args.model_only)
            print(f"model only, batch 1, {args.model_only} runs: network + preprocessing {_median_p95_ms(infer)}; "
                  f"decode {_median_p95_ms(decode)}")
    return 0

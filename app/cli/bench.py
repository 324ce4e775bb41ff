"""``python -m app bench``: per-stage latency (median, p95) and end-to-end FPS of the pipeline.

Then, unless ``--model-only 0``, the landmark model alone at batch 1 on one real aligned
crop (the first face the pipeline found): the network with its preprocessing, and the
decoding, each timed ``--model-only`` times. ``--precisions fp32,int8`` times the network alone at
each precision instead, in alternating rounds of one run (``app.cli.bench_compare``).

``--resize 640x480``: each frame resized as it is read (in every mode).
``--vs-mediapipe``: decode the frames once (resized, with ``--resize``), then alternate ``--rounds`` rounds
of MediaPipe Face Mesh's own tracking graph and our ``Pipeline.process`` on the same frames, and
print each one's median ms per frame, the frames with a face and the ratio (``app.cli.bench_compare``).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from tqdm import tqdm

from app.cli.argtypes import frame_size, non_negative_int, positive_int
from app.cli.pipeline_args import add_pipeline_arguments, pipeline_from_args
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
    parser.add_argument("--precisions", default=None, metavar="LIST",
                        help="time the network alone at each of these precisions in one run (e.g. fp32,int8)")
    import importlib.util  # find_spec only: importing mediapipe here would slow every command's start

    peers = "" if importlib.util.find_spec("mediapipe") else (
        "; needs mediapipe, not installed here: pip install -e '.[peers]'")
    parser.add_argument("--vs-mediapipe", action="store_true",
                        help="alternate rounds of MediaPipe Face Mesh (tracking) and our pipeline on the same frames"
                             + peers)
    parser.add_argument("--rounds", type=positive_int, default=3, help="rounds for --vs-mediapipe and --precisions (default 3)")
    parser.add_argument("--resize", type=frame_size, default=None, metavar="WxH",
                        help="resize each decoded frame to WxH (e.g. 640x480) before the pipeline sees it; "
                             "with --vs-mediapipe, before the rounds")


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


def _precision_models(args: argparse.Namespace) -> dict:
    from engines.precision import resolve_precision
    from models.registry import load_landmark_model, split_model_name

    base, flip, _ = split_model_name(args.model)
    names = [p.strip().lower() for p in args.precisions.split(",") if p.strip()]
    if not names:
        raise ValueError("--precisions names no precision")
    models = {}
    try:
        for precision in names:
            resolve_precision(precision)
            models[precision] = load_landmark_model(
                base + ("+flip" if flip else ""), backend=args.backend, precision=precision, strict_precision=True
            )
    except BaseException:
        for model in models.values():
            model.close()
        raise
    return models


def _run_vs_mediapipe(args: argparse.Namespace) -> int:
    from app.cli.bench_compare import decode_frames, vs_mediapipe
    from engines.base import BackendUnavailable
    from models.mediapipe68 import mediapipe_available

    if not mediapipe_available():  # before any frame is decoded (exit status 2, the message says how)
        raise BackendUnavailable(
            "bench --vs-mediapipe needs mediapipe 0.10.21, which the core install leaves out: "
            "install the 'peers' extra (pip install -e '.[peers]')"
        )

    with open_source(args.source) as source:
        frames = decode_frames(source, args.max_frames, args.resize)  # (w, h) from argtypes.frame_size
    if not frames:
        raise ValueError(f"no frames could be read from {args.source}")
    with pipeline_from_args(args) as pipeline:
        model = pipeline.model
        height, width = frames[0].image.shape[:2]
        print(f"source={args.source} frames={len(frames)} size={width}x{height} model={model.name} "
              f"backend={model.backend} precision={model.precision} detector={args.detector} "
              f"cpu={platform.processor() or platform.machine()}")
        vs_mediapipe(pipeline, frames, args.rounds, f"{model.name} ({model.precision})")
    return 0


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from app.cli.bench_compare import resized
    from models.align import align_from_landmarks

    if args.vs_mediapipe:
        return _run_vs_mediapipe(args)
    crop = None
    with open_source(args.source) as source, TrackingSession(pipeline_from_args(args), stats_window=None) as session:
        pipeline = session.pipeline
        backend = pipeline.model.backend
        for index, frame in enumerate(tqdm(frames_to_end(source), total=args.warmup + args.max_frames, unit="frame", disable=None)):
            if index == args.warmup:
                session.stats.reset()
            if index >= args.warmup + args.max_frames:
                break
            if args.resize is not None:
                frame = dataclasses.replace(frame, image=resized(frame.image, args.resize))
            faces = session.handle(frame).result.faces
            if crop is None and faces:
                crop = align_from_landmarks(frame.image, faces[0].raw_landmarks.points, pipeline.model.input_size)
        summary = session.stats.summary()
        size = f" resize={args.resize[0]}x{args.resize[1]}" if args.resize else ""
        print(f"model={args.model} backend={backend} precision={pipeline.model.precision} "
              f"detector={args.detector} source={args.source}{size} "
              f"frames={summary.frames} cpu={platform.processor() or platform.machine()}")
        print(format_bench_table(summary))
        if args.precisions and crop is not None:
            from app.cli.bench_compare import network_precisions

            models = _precision_models(args)
            try:
                network_precisions(models, crop, max(args.model_only, 50), rounds=max(args.rounds, 5))
            finally:
                for model in models.values():
                    model.close()
        elif args.model_only > 0 and crop is not None:
            infer, decode = time_model(pipeline.model, crop, args.model_only)
            print(f"model only, batch 1, {args.model_only} runs: network + preprocessing {_median_p95_ms(infer)}; "
                  f"decode {_median_p95_ms(decode)}")
    return 0

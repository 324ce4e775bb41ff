"""Command-line options shared by every command that builds a pipeline."""
from __future__ import annotations

import argparse
from typing import Callable

from app.pipeline import DEFAULT_DETECTOR, Pipeline, PipelineOptions, build_pipeline
from app.smoothing import OneEuroParams
from app.tracking import TrackerOptions
from models.detectors import DETECTOR_NAMES
from models.registry import default_model


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline")
    model = default_model()
    group.add_argument("--model", default=model, help=f"landmark model (default {model}: the first installed network)")
    group.add_argument("--backend", default="auto", help="auto, tensorrt, ort-cuda or ort-cpu (default auto)")
    group.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"{', '.join(DETECTOR_NAMES)} (default {DEFAULT_DETECTOR}: BlazeFace up to 720p, MTCNN "
                       "above; mtcnn: small faces, crowds)")
    group.add_argument("--detector-model", default=None, help="ONNX file for retinaface / yunet")
    group.add_argument("--no-smooth", action="store_true", help="switch the One Euro filter off")
    group.add_argument("--min-cutoff", type=float, default=OneEuroParams.min_cutoff, help="One Euro min cutoff (Hz)")
    group.add_argument("--beta", type=float, default=OneEuroParams.beta, help="One Euro speed coefficient")
    group.add_argument("--redetect-interval", type=int, default=TrackerOptions.redetect_interval,
                       help="frames between detector runs while tracking (0: only when lost)")
    group.add_argument("--detect-every-frame", action="store_true", help="no tracking: detect on every frame")
    group.add_argument("--max-faces", type=int, default=TrackerOptions.max_faces)


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(
        tracker=TrackerOptions(
            redetect_interval=args.redetect_interval,
            detect_every_frame=args.detect_every_frame,
            max_faces=args.max_faces,
        ),
        smoothing=not args.no_smooth,
        one_euro=OneEuroParams(min_cutoff=args.min_cutoff, beta=args.beta),
    )


def pipeline_from_args(args: argparse.Namespace, on_message: Callable[[str], None] | None = None) -> Pipeline:
    return build_pipeline(
        model=args.model,
        backend=args.backend,
        detector=args.detector,
        detector_model=args.detector_model,
        options=options_from_args(args),
        on_message=on_message,
    )

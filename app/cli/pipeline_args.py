"""Command-line options shared by every command that builds a pipeline."""
from __future__ import annotations

import argparse
from typing import Callable

from app.cli.argtypes import field_of_view, non_negative_float, non_negative_int, positive_float, positive_int
from app.geometry.face import GeometryOptions
from app.geometry.pose import DEFAULT_FOV_DEG, PoseOptions
from app.pipeline import DEFAULT_DETECTOR, Pipeline, PipelineOptions, PipelineSpec, build_pipeline
from app.smoothing import OneEuroParams
from app.tracking import TrackerOptions
from models.detectors import DETECTOR_NAMES
from models.registry import default_model


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline")
    model = default_model()
    group.add_argument("--model", default=model, help=f"landmark model (default {model}: the first installed network)")
    group.add_argument("--backend", default="auto", help="auto, tensorrt, ort-cuda, ort-cpu or openvino (default auto)")
    add_precision_argument(group)
    group.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"{', '.join(DETECTOR_NAMES)} (default {DEFAULT_DETECTOR}: BlazeFace up to 720p, MTCNN "
                       "above and where BlazeFace finds none; mtcnn: small faces, crowds)")
    group.add_argument("--detector-model", default=None, help="ONNX file for retinaface / yunet")
    group.add_argument("--no-smooth", action="store_true", help="switch the One Euro filter off")
    group.add_argument("--min-cutoff", type=positive_float, default=OneEuroParams.min_cutoff, help="One Euro min cutoff (Hz)")
    group.add_argument("--beta", type=non_negative_float, default=OneEuroParams.beta, help="One Euro speed coefficient")
    group.add_argument("--redetect-interval", type=non_negative_int, default=TrackerOptions.redetect_interval,
                       help="frames between detector runs while tracking (0: only when lost)")
    group.add_argument("--detect-every-frame", action="store_true", help="no tracking: detect on every frame")
    group.add_argument("--max-faces", type=positive_int, default=TrackerOptions.max_faces,
                       help=f"most faces tracked at once (default {TrackerOptions.max_faces})")
    group.add_argument("--fov", type=field_of_view, default=DEFAULT_FOV_DEG,
                       help="camera horizontal field of view in degrees, for head pose (default %(default)s)")
    group.add_argument("--no-geometry", action="store_true", help="no head pose, openness or blinks")


def add_precision_argument(group) -> None:
    """``--precision``: auto, fp32, fp16 or int8 (``engines.precision``)."""
    from engines.precision import PRECISION_CHOICES

    group.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                       help="network precision: ONNX Runtime CPU runs fp32 and int8, TensorRT fp16; auto (default): "
                            "the back-end's default, on the CPU int8 where the model ships an INT8 file within its "
                            "accuracy bar. A name suffix (r18_ffld@fp32) overrides it")


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions.of(redetect_interval=args.redetect_interval, detect_every_frame=args.detect_every_frame,
                              max_faces=args.max_faces, smoothing=not args.no_smooth, min_cutoff=args.min_cutoff,
                              beta=args.beta,
                              geometry=GeometryOptions(enabled=not args.no_geometry, pose=PoseOptions(fov_deg=args.fov)))


def spec_from_args(args: argparse.Namespace) -> PipelineSpec:
    """The pipeline the options of ``add_pipeline_arguments`` describe."""
    return PipelineSpec(model=args.model, backend=args.backend, precision=args.precision, detector=args.detector,
                        detector_model=args.detector_model, options=options_from_args(args))


def pipeline_from_args(args: argparse.Namespace, on_message: Callable[[str], None] | None = None) -> Pipeline:
    return build_pipeline(spec_from_args(args), on_message=on_message)

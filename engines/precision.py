"""Numeric precisions, and which back-end runs which.

ONNX Runtime CPU runs the FP32 file and an INT8 (QDQ) copy of it; OpenVINO runs the FP32 file
and an INT8 IR of its own (NNCF); TensorRT builds FP16 engines
from the FP32 file (an INT8 TensorRT path, with TensorRT's own calibration, may come later);
ONNX Runtime CUDA runs the FP32 file. ``precision_problem`` says why a pair cannot run, for
error messages and the window's tooltips.
"""
from __future__ import annotations

from enum import Enum

from engines.base import Backend


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


PRECISION_CHOICES = ("auto", *(p.value for p in Precision))
SUPPORTED: dict[Backend, tuple[Precision, ...]] = {
    Backend.TENSORRT: (Precision.FP16,),
    Backend.ORT_CUDA: (Precision.FP32,),
    Backend.ORT_CPU: (Precision.FP32, Precision.INT8),
    Backend.OPENVINO: (Precision.FP32, Precision.INT8),
}
_WHY_NOT = {
    (Backend.TENSORRT, Precision.INT8): "TensorRT runs FP16 engines here; its INT8 path (TensorRT calibration) "
    "is not built yet",
    (Backend.TENSORRT, Precision.FP32): "TensorRT engines are built in FP16 here",
    (Backend.ORT_CUDA, Precision.FP16): "ONNX Runtime CUDA runs the FP32 file here",
    (Backend.ORT_CUDA, Precision.INT8): "ONNX Runtime CUDA runs the FP32 file here (INT8 runs on ONNX Runtime CPU)",
    (Backend.ORT_CPU, Precision.FP16): "ONNX Runtime CPU has no fast FP16 kernels: use fp32 or int8",
    (Backend.OPENVINO, Precision.FP16): "OpenVINO on the CPU runs fp32 or int8 here",
}


class PrecisionUnavailable(ValueError):
    """A precision the chosen back-end (or any available one) cannot run. The message says why."""


def resolve_precision(precision: Precision | str | None) -> Precision | None:
    """``Precision`` for a name or member; None for "auto" or None. Unknown names raise ``ValueError``."""
    if precision is None or isinstance(precision, Precision):
        return precision
    if str(precision).lower() == "auto":
        return None
    try:
        return Precision(str(precision).lower())
    except ValueError:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISION_CHOICES)}") from None


def precision_problem(backend: Backend, precision: Precision) -> str | None:
    """None when ``backend`` runs ``precision``, else why not."""
    if precision in SUPPORTED[backend]:
        return None
    return _WHY_NOT.get((backend, precision), f"{backend.label} does not run {precision.value}")


def default_precision(backend: Backend, int8_preferred: bool) -> Precision:
    """What ``backend`` runs when no precision is asked for: its only one, or on a CPU back-end
    (ONNX Runtime, OpenVINO) INT8 when the model offers that back-end an INT8 file that met its
    accuracy bar, else FP32."""
    if backend in (Backend.ORT_CPU, Backend.OPENVINO):
        return Precision.INT8 if int8_preferred else Precision.FP32
    return SUPPORTED[backend][0]

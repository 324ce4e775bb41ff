"""Inference back-ends (ONNX Runtime CPU / CUDA, TensorRT FP16) behind one ``Runner`` contract.

Importing ``engines`` is cheap: the contract (``engines.base``) is loaded at once, everything
else (and with it onnxruntime, onnx, tensorrt, CUDA) only when first used.
"""

from __future__ import annotations

import importlib

from engines.base import Backend, BackendUnavailable, ModelFileError, Runner, TensorSpec

_LAZY = {
    "open_runner": "engines.select",
    "backend_availability": "engines.select",
    "resolve_backend": "engines.select",
    "Precision": "engines.precision",
    "PrecisionUnavailable": "engines.precision",
    "PRECISION_CHOICES": "engines.precision",
    "OrtRunner": "engines.ort",
    "check_model_file": "engines.base",
    "TrtRunner": "engines.trt",
    "build_engine": "engines.trt",
    "EngineBuildError": "engines.trt",
    "EngineLoadError": "engines.trt",
}

__all__ = ["Backend", "BackendUnavailable", "ModelFileError", "Runner", "TensorSpec", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'engines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

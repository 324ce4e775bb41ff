"""The contract every inference back-end implements: named tensors in, named tensors out.

Runners own their session or engine (and, for TensorRT, the stream and buffers) and
free them in ``close()``; use them as context managers. Pre- and post-processing stay
outside: a runner only moves arrays through a network.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Backend(str, Enum):
    TENSORRT = "tensorrt"  # TensorRT FP16 engine
    ORT_CUDA = "ort-cuda"  # ONNX Runtime, CUDA execution provider
    ORT_CPU = "ort-cpu"  # ONNX Runtime, CPU execution provider

    @property
    def label(self) -> str:
        return {"tensorrt": "TensorRT FP16", "ort-cuda": "ONNX Runtime CUDA", "ort-cpu": "ONNX Runtime CPU"}[
            self.value
        ]


class BackendUnavailable(RuntimeError):
    """The back-end cannot run here (library or GPU missing, engine build failed)."""


class ModelFileError(RuntimeError):
    """A model file that is missing, unreadable or not a valid model. The message names it."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or None / str for dynamic dimensions
    dtype: np.dtype


class Runner(ABC):
    backend: Backend
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int | None = None  # largest batch the runner accepts (TensorRT profiles); None: any
    precision: str = "fp32"  # engines.precision.Precision value of what runs (set by open_runner)

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; ``feed`` maps input names to arrays, the result maps output names to arrays."""

    @abstractmethod
    def close(self) -> None:
        """Free the session / engine and every buffer. Idempotent."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

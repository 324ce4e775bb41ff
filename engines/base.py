"""The contract every inference back-end implements: named tensors in, named tensors out.

Runners own their session or engine (and, for TensorRT, the stream and buffers) and
free them in ``close()``; use them as context managers. Pre- and post-processing stay
outside: a runner only moves arrays through a network.

Also home of the two checks every back-end shares: ``check_model_file`` (is this path a
loadable ONNX file at all?) and ``check_feed`` (does a feed match the runner's input
specs?). onnx is imported inside the function that needs it, so importing this module
stays cheap.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np


# on_progress(phase, done, total) -> False to cancel: an engine build's progress (TensorRT), where
# done / total is the fraction of the whole build and ``phase`` names the step running now.
# Called from TensorRT's builder threads: a GUI must hand it over to its own thread.
ProgressCallback = Callable[[str, int, int], "bool | None"]


class Backend(str, Enum):
    TENSORRT = "tensorrt"  # TensorRT FP16 engine
    ORT_CUDA = "ort-cuda"  # ONNX Runtime, CUDA execution provider
    ORT_CPU = "ort-cpu"  # ONNX Runtime, CPU execution provider
    OPENVINO = "openvino"  # OpenVINO, CPU

    @property
    def label(self) -> str:
        return {"tensorrt": "TensorRT FP16", "ort-cuda": "ONNX Runtime CUDA", "ort-cpu": "ONNX Runtime CPU", "openvino": "OpenVINO CPU"}[
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
    choice: object | None = None  # engines.cpu_choice.CpuChoice when a measurement chose this runner

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


def format_shape(shape: Sequence) -> str:
    """``(N, 3, 64, 64)``: dynamic dimensions shown by their symbol, or ``?``."""
    dims = [str(d) if isinstance(d, (int, np.integer)) else (d if isinstance(d, str) and d else "?") for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_model_file(path: str | Path) -> Path:
    """Return ``path`` if it is a readable ONNX model; else raise ``ModelFileError`` naming it and the problem.

    Parses the protobuf (without external weights) so random bytes, a text file or an
    empty file are caught before any back-end tries (and fails) to build from them.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"model path is not a file: {path}")
    try:
        if path.stat().st_size == 0:
            raise ModelFileError(f"model file is empty: {path}")
        model = onnx.load_model(str(path), load_external_data=False)
    except PermissionError as exc:
        raise ModelFileError(f"model file is not readable: {path} ({exc.strerror})") from exc
    except DecodeError as exc:
        raise ModelFileError(f"not an ONNX model (protobuf parsing failed): {path}") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from exc
    if not model.graph.node or not model.graph.output:
        raise ModelFileError(f"not an ONNX model (no graph found): {path}")
    return path


def check_feed(specs: Sequence[TensorSpec], feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate ``feed`` against the input specs; return it as C-contiguous arrays.

    Raises ``ValueError`` naming the tensor and its expected shape and dtype when an
    input is missing or unknown, or has the wrong dtype, rank or a static dimension.
    Arrays are never cast silently.
    """
    if not isinstance(feed, Mapping):
        raise TypeError(f"feed must map input names to arrays, got {type(feed).__name__}")
    expected = ", ".join(f"{s.name!r} {format_shape(s.shape)} {np.dtype(s.dtype)}" for s in specs)
    unknown = sorted(set(feed) - {s.name for s in specs})
    if unknown:
        raise ValueError(f"unknown input {unknown[0]!r}; the model's inputs are: {expected}")
    checked = {}
    for spec in specs:
        want = f"expected shape {format_shape(spec.shape)} and dtype {np.dtype(spec.dtype)}"
        if spec.name not in feed:
            raise ValueError(f"missing input {spec.name!r}: {want}")
        array = np.asarray(feed[spec.name])
        if array.dtype != spec.dtype:
            raise ValueError(f"input {spec.name!r} has dtype {array.dtype}, {want}")
        static_ok = all(
            not isinstance(d, (int, np.integer)) or int(d) < 0 or int(d) == n for d, n in zip(spec.shape, array.shape)
        )
        if array.ndim != len(spec.shape) or not static_ok:
            raise ValueError(f"input {spec.name!r} has shape {format_shape(array.shape)}, {want}")
        checked[spec.name] = np.ascontiguousarray(array)
    return checked

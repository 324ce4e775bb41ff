"""ONNX Runtime back-end (CPU, and CUDA where onnxruntime-gpu is installed).

onnxruntime is imported inside the functions that need it, so importing this module
stays cheap.
"""

from __future__ import annotations

import os

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Backend, BackendUnavailable, ModelFileError, Runner, TensorSpec, check_feed, check_model_file

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

# ONNX Runtime's type strings -> numpy dtypes.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def ort_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (empty if it is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


THREADS_ENV = "FACETRACK_ORT_THREADS"  # intra-op threads when none are given (e.g. 1 in each batch worker)


def default_threads() -> int | None:
    """``$FACETRACK_ORT_THREADS`` as a thread count, or None (ORT's default: one per core)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV} must be an integer >= 1, got {value!r}")
    return int(value)


SPIN_ENV = "FACETRACK_ORT_SPIN"  # 1: intra-op threads busy-wait between operators (ORT's own default)


def default_spin() -> bool:
    """``$FACETRACK_ORT_SPIN`` as a switch (1 or 0); off when unset."""
    value = os.environ.get(SPIN_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{SPIN_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


class OrtRunner(Runner):
    """An ONNX Runtime session. ``threads`` sets intra-op threads (None: ``$FACETRACK_ORT_THREADS``
    if set, else ORT's default).

    ``spin``: let idle intra-op threads busy-wait for the next operator (ORT's default). Off
    here unless asked for (None: ``$FACETRACK_ORT_SPIN``): the app shares a few cores with video
    decoding and painting, and a spinning thread that loses its core stalls every operator
    (measured in docs/RESULTS.md).
    """

    def __init__(
        self,
        model_path: str | Path,
        backend: Backend | str = Backend.ORT_CPU,
        threads: int | None = None,
        spin: bool | None = None,
    ):
        import onnxruntime

        self._session = None
        self.backend = Backend(backend)
        self.model_path = Path(model_path)
        if self.backend is Backend.ORT_CPU:
            providers = [CPU_PROVIDER]
        elif self.backend is Backend.ORT_CUDA:
            if CUDA_PROVIDER not in onnxruntime.get_available_providers():
                raise BackendUnavailable("onnxruntime-gpu is not installed (no CUDA execution provider)")
            providers = [CUDA_PROVIDER, CPU_PROVIDER]
        else:
            raise ValueError(
                f"OrtRunner runs {Backend.ORT_CPU.value!r} or {Backend.ORT_CUDA.value!r}, not {self.backend.value!r}"
            )
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        threads = threads if threads is not None else default_threads()
        spin = default_spin() if spin is None else spin

        check_model_file(self.model_path)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        # One operator at a time: these graphs are chains, and a second (inter-op) pool would
        # only compete with the intra-op threads for the same few cores.
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(self.model_path), sess_options=options, providers=providers
            )
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ModelFileError(f"ONNX Runtime cannot load {self.model_path}: {exc}") from exc
        if self.backend is Backend.ORT_CUDA and CUDA_PROVIDER not in self._session.get_providers():
            self._session = None
            raise BackendUnavailable("the CUDA execution provider could not start (CUDA or cuDNN libraries missing?)")

        self.inputs = tuple(_spec(arg) for arg in self._session.get_inputs())
        self.outputs = tuple(_spec(arg) for arg in self._session.get_outputs())
        self._output_names = [s.name for s in self.outputs]

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise RuntimeError(f"runner for {self.model_path} is closed")
        checked = check_feed(self.inputs, feed)
        results = self._session.run(self._output_names, checked)
        return dict(zip(self._output_names, results))

    def close(self) -> None:
        self._session = None


def _spec(arg) -> TensorSpec:
    try:
        dtype = np.dtype(_ORT_DTYPES[arg.type])
    except KeyError:
        raise ModelFileError(
            f"tensor {arg.name!r} has type {arg.type}, which facetrack68 runners do not handle"
        ) from None
    return TensorSpec(arg.name, tuple(arg.shape), dtype)

"""OpenVINO back-end (CPU): reads our ONNX files (and OpenVINO IR ``.xml``) directly.

openvino is imported inside the functions that need it, so importing this module stays cheap.
Threads: ``threads`` or ``$FACETRACK_ORT_THREADS`` (the same knob as ONNX Runtime), else
OpenVINO's default; latency hint, one request at a time, f32 inference precision (not the bf16
OpenVINO picks by itself on AMX CPUs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Backend, BackendUnavailable, ModelFileError, Runner, TensorSpec, check_feed, check_model_file
from engines.ort import default_threads


def openvino_problem() -> str | None:
    """None when the openvino package imports, else why not."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"OpenVINO is not installed ({exc})"
    return None


class OpenVinoRunner(Runner):
    backend = Backend.OPENVINO

    def __init__(self, model_path: str | Path, threads: int | None = None):
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailable(f"OpenVINO is not installed ({exc})") from exc
        self._request = None
        self.model_path = Path(model_path)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        threads = threads if threads is not None else default_threads()
        if self.model_path.suffix != ".xml":
            check_model_file(self.model_path)
        elif not self.model_path.is_file() or not self.model_path.with_suffix(".bin").is_file():
            raise ModelFileError(f"OpenVINO IR needs both {self.model_path} and its .bin beside it")
        # f32 explicitly: on CPUs with AMX / AVX512_BF16 OpenVINO otherwise runs FP32 graphs in bf16.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
            # A thread budget means other processes share the cores (batch workers, one thread each):
            # OpenVINO would pin every process's threads to the same first cores (two 1-thread
            # workers on one core ran at 2.8x the time each, RESULTS "Batch annotation").
            config["ENABLE_CPU_PINNING"] = False
        try:
            core = ov.Core()
            compiled = core.compile_model(str(self.model_path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelFileError(f"OpenVINO cannot load {self.model_path}: {exc}") from exc
        self.inputs = tuple(_spec(port) for port in compiled.inputs)
        self.outputs = tuple(_spec(port) for port in compiled.outputs)
        self._output_ports = list(compiled.outputs)
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._request is None:
            raise RuntimeError(f"runner for {self.model_path} is closed")
        checked = check_feed(self.inputs, feed)
        results = self._request.infer(checked)
        return {spec.name: np.array(results[port]) for spec, port in zip(self.outputs, self._output_ports)}

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _spec(port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))

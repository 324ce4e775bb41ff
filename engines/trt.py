"""TensorRT back-end: build an FP16 engine from an ONNX file, and run it (``TrtRunner``).

``tensorrt`` and CUDA (cuda-python: ``cuda.bindings.runtime``, or ``cuda.cudart`` in
cuda-python < 12.6) are imported inside the functions that use them, so importing this
module never fails; a missing library raises ``BackendUnavailable`` with the reason.

Not executed in development: the machine this was written on has no GPU and cannot install
the TensorRT runtime, so nothing in ``build_engine``, ``gpu_info`` or ``TrtRunner`` has run.
Every TensorRT and CUDA name used was checked against NVIDIA's TensorRT Python API
reference, the TensorRT 10 -> 11 migration guide and the Python bindings / samples of
github.com/NVIDIA/TensorRT (``common_runtime.py``, ``simple_progress_monitor.py``,
``strongly_type_autocast``). The parts they rely on that can run without a GPU (FP16
conversion, engine cache, fallback) are tested on CPU. Run ``pytest -m gpu`` on a GPU machine.

Precision: TensorRT 10 builds a weakly typed network with ``BuilderFlag.FP16``. TensorRT 11
removed that flag (strong typing only), so there the ONNX is converted to FP16 first by ONNX
Runtime's own converter (``fp16_model``; float32 inputs and outputs kept) and parsed into a
strongly typed network.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.base import Backend, BackendUnavailable, ProgressCallback, Runner, TensorSpec, check_feed, format_shape
from engines.files import atomic_write

log = logging.getLogger(__name__)

PROGRESS_UNITS = 1000  # ``on_progress``'s ``total``: the build's overall fraction in thousandths


class EngineBuildError(BackendUnavailable):
    """TensorRT could not parse the ONNX file or build an engine from it."""


class EngineLoadError(BackendUnavailable):
    """A serialised engine could not be deserialised here (corrupt, other TensorRT version or GPU)."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.9"
    index: int = 0


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable("TensorRT is not installed") from exc
    return tensorrt


def import_cudart():
    """cuda-python's runtime module, new (``cuda.bindings.runtime``) or old (``cuda.cudart``) layout."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise BackendUnavailable("cuda-python is not installed (pip install cuda-python)") from exc
    return cudart


def tensorrt_version() -> str:
    return str(import_tensorrt().__version__)


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device``; ``BackendUnavailable`` if there is none."""
    cudart = import_cudart()
    try:
        count = _cuda(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except RuntimeError as exc:
        raise BackendUnavailable(f"no NVIDIA GPU found ({exc})") from exc
    if count <= device:
        raise BackendUnavailable("no NVIDIA GPU found" if count == 0 else f"no CUDA device {device} ({count} found)")
    props = _cuda(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}", device)


def fp16_model(onnx_path: str | Path):
    """The FP32 ONNX file ``onnx_path`` as an FP16 ``onnx.ModelProto`` whose inputs and outputs stay float32.

    ONNX Runtime's converter (``onnxruntime.transformers.float16``) with its default op block
    list, none of whose ops our networks use: every node runs in FP16, GridSample included
    (TensorRT's grid-sample layer takes FP16; keeping it in FP32 did not bring r18_ffld closer
    to the FP32 model in ONNX Runtime), and the inputs ONNX types as float32 only (Resize
    scales) stay float32. Values beyond the FP16 range are clipped to +-65504. The converter
    appends its input and output casts at the end of the node list, so the nodes are then
    sorted topologically again (the ONNX rule, checked by ``onnx.checker``).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load_model(str(onnx_path)), keep_io_types=True)
    OnnxModel(model).topological_sort(is_deterministic=True)
    return model


def build_engine(
    onnx_path: str | Path,
    *,
    max_batch: int = 8,
    timing_cache_path: str | Path | None = None,
    workspace_bytes: int | None = None,
    on_progress: ProgressCallback | None = None,
    strongly_typed: bool | None = None,
) -> bytes:
    """Build a serialised FP16 engine from ``onnx_path``.

    A dynamic first (batch) dimension gets an optimisation profile min 1 / opt 1 /
    max ``max_batch``; any other dynamic dimension is refused. ``timing_cache_path`` is
    read if present and rewritten (atomically) after the build, so later builds on this
    GPU skip most tactic timing. ``strongly_typed=None`` picks by TensorRT version:
    FP16 builder flag where it exists (TensorRT 10), strongly typed FP16 ONNX otherwise.
    Raises ``EngineBuildError`` with TensorRT's own messages when parsing or building fails.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if strongly_typed is None:
        strongly_typed = not hasattr(trt.BuilderFlag, "FP16")

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        model_bytes = fp16_model(onnx_path).SerializeToString()
        strong_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strong_flag is not None:  # TensorRT 11 types every network strongly; the flag is optional there
            flags |= 1 << int(strong_flag)
    else:
        model_bytes = onnx_path.read_bytes()
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes, str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name}: {errors or logger.last_errors()}")

    config = builder.create_builder_config()
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    profile = _batch_profile(builder, network, max_batch)
    if profile is not None:
        config.add_optimization_profile(profile)
    _attach_timing_cache(config, timing_cache_path)
    monitor = None
    if on_progress is not None and hasattr(trt, "IProgressMonitor"):
        monitor = _make_progress_monitor(trt, on_progress)
        config.progress_monitor = monitor

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        if monitor is not None and monitor.cancelled:
            raise EngineBuildError(f"engine build for {onnx_path.name} was cancelled")
        raise EngineBuildError(f"TensorRT could not build an engine for {onnx_path.name}: {logger.last_errors()}")
    if timing_cache_path is not None:
        atomic_write(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


class TrtRunner(Runner):
    """One deserialised engine with its execution context, CUDA stream and per-tensor buffers.

    Every input and output has a pinned host buffer and a device buffer sized for the
    engine's largest profile shape, allocated once and addressed by tensor name. ``infer``
    copies in (async), runs ``execute_async_v3``, copies out (async) and synchronises the
    stream. Not thread-safe: one caller at a time. ``close()`` frees everything.
    """

    backend = Backend.TENSORRT

    def __init__(self, engine: bytes | str | Path, device: int = 0):
        self._cudart = None
        self._stream = None
        self._buffers: dict[str, _PinnedBuffer] = {}
        self._context = self._engine = self._runtime = None
        try:
            self._open(engine, device)
        except BaseException:
            self.close()
            raise

    def _open(self, engine: bytes | str | Path, device: int) -> None:
        trt = import_tensorrt()
        cudart = self._cudart = import_cudart()
        data = Path(engine).read_bytes() if isinstance(engine, (str, Path)) else bytes(engine)
        self._device = device
        _cuda(cudart, cudart.cudaSetDevice(device), "cudaSetDevice")

        self._logger = _make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineLoadError(
                "TensorRT could not deserialise the engine (corrupt, or built by another TensorRT "
                f"version or for another GPU): {self._logger.last_errors()}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineLoadError(f"could not create a TensorRT execution context: {self._logger.last_errors()}")
        self._stream = _cuda(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")

        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        input_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for name in input_names:
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                low, _, high = self._engine.get_tensor_profile_shape(name, 0)
                self._ranges[name] = (tuple(int(d) for d in low), tuple(int(d) for d in high))
            else:
                self._ranges[name] = (shape, shape)
            if not self._context.set_input_shape(name, self._ranges[name][1]):
                raise EngineLoadError(f"engine rejected the largest shape of input {name!r}: {self._ranges[name][1]}")

        inputs, outputs = [], []
        for name in names:
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            is_input = name in self._ranges
            largest = self._ranges[name][1] if is_input else tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in largest):
                raise EngineLoadError(
                    f"output {name!r} has a data-dependent shape {largest}, which TrtRunner cannot size"
                )
            buffer = _PinnedBuffer(cudart, int(np.prod(largest, dtype=np.int64)), dtype)
            self._buffers[name] = buffer
            if not self._context.set_tensor_address(name, buffer.device):
                raise EngineLoadError(f"could not bind the device buffer of tensor {name!r}")
            shape = tuple(None if int(d) < 0 else int(d) for d in self._engine.get_tensor_shape(name))
            (inputs if is_input else outputs).append(TensorSpec(name, shape, dtype))
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)

    @property
    def max_batch(self) -> int:
        """The largest first dimension every input accepts."""
        return min((high[0] for _, high in self._ranges.values() if high), default=1)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._context is None:
            raise RuntimeError("TensorRT runner is closed")
        cudart = self._cudart
        checked = check_feed(self.inputs, feed)
        if self._device != 0:  # the current device is per host thread; callers may use another thread
            _cuda(cudart, cudart.cudaSetDevice(self._device), "cudaSetDevice")
        for name, array in checked.items():
            low, high = self._ranges[name]
            if any(not lo <= n <= hi for n, lo, hi in zip(array.shape, low, high)):
                raise ValueError(
                    f"input {name!r} has shape {format_shape(array.shape)}; this engine accepts shapes from "
                    f"{format_shape(low)} to {format_shape(high)} (rebuild it with a larger max_batch)"
                )
            if not self._context.set_input_shape(name, array.shape):
                raise ValueError(f"TensorRT rejected shape {format_shape(array.shape)} for input {name!r}")
            buffer = self._buffers[name]
            buffer.host[: array.size] = array.reshape(-1)
            _cuda(
                cudart,
                cudart.cudaMemcpyAsync(
                    buffer.device,
                    buffer.host_ptr,
                    array.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    self._stream,
                ),
                "cudaMemcpyAsync (host to device)",
            )
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT execution failed: {self._logger.last_errors()}")
        shapes = {}
        for spec in self.outputs:
            shapes[spec.name] = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            buffer = self._buffers[spec.name]
            nbytes = int(np.prod(shapes[spec.name], dtype=np.int64)) * buffer.host.itemsize
            _cuda(
                cudart,
                cudart.cudaMemcpyAsync(
                    buffer.host_ptr, buffer.device, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream
                ),
                "cudaMemcpyAsync (device to host)",
            )
        _cuda(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {
            name: self._buffers[name].host[: int(np.prod(shape, dtype=np.int64))].reshape(shape).copy()
            for name, shape in shapes.items()
        }

    def close(self) -> None:
        cudart = self._cudart
        if cudart is not None and self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers = {}
        if cudart is not None and self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._stream = None
        # TensorRT 10 Python objects are destroyed when released: context, then engine, then runtime.
        self._context = None
        self._engine = None
        self._runtime = None


class _PinnedBuffer:
    """A page-locked host buffer (viewed as a flat numpy array) and a device buffer of the same size."""

    def __init__(self, cudart, size: int, dtype: np.dtype):
        self._cudart = cudart
        self.host_ptr = self.device = None
        nbytes = max(1, size * dtype.itemsize)
        try:
            self.host_ptr = int(_cuda(cudart, cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
            self.host = np.frombuffer((ctypes.c_ubyte * nbytes).from_address(self.host_ptr), dtype=dtype, count=size)
            self.device = int(_cuda(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc"))
        except BaseException:
            self.free()
            raise

    def free(self) -> None:
        if self.device is not None:
            self._cudart.cudaFree(self.device)
            self.device = None
        if self.host_ptr is not None:
            self.host = None
            self._cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = None


def _cuda(cudart, result, what: str):
    """Unpack a cuda-python ``(error, *values)`` tuple, raising ``RuntimeError`` on error."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"{what} failed: {getattr(error, 'name', error)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _batch_profile(builder, network, max_batch: int):
    """Profile min 1 / opt 1 / max ``max_batch`` over the first dimension of each dynamic input."""
    profile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(int(d) for d in tensor.shape)
        if all(d >= 0 for d in shape):
            continue
        if not shape or any(d < 0 for d in shape[1:]):
            raise EngineBuildError(
                f"input {tensor.name!r} has shape {format_shape(shape)}: "
                "only the first (batch) dimension may be dynamic"
            )
        rest = shape[1:]
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
        dynamic = True
    return profile if dynamic else None


def _attach_timing_cache(config, path: str | Path | None) -> None:
    """Start from the saved timing cache when it is readable and matches; else from an empty one."""
    data = b""
    if path is not None and Path(path).is_file():
        data = Path(path).read_bytes()
    cache = None
    try:
        cache = config.create_timing_cache(data)
    except Exception as exc:  # a damaged file must not stop the build
        log.warning("timing cache %s is unreadable (%s); starting a new one", path, exc)
    if cache is None or not config.set_timing_cache(cache, False):
        if data:
            log.warning("timing cache %s does not match this GPU / TensorRT; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _make_logger(trt):
    """A TensorRT logger that forwards to ``logging`` and keeps the last errors for exception messages."""

    levels = {
        trt.ILogger.INTERNAL_ERROR: logging.ERROR,
        trt.ILogger.ERROR: logging.ERROR,
        trt.ILogger.WARNING: logging.WARNING,
        trt.ILogger.INFO: logging.DEBUG,
        trt.ILogger.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self._errors: list[str] = []
            self._lock = threading.Lock()

        def log(self, severity, msg):
            level = levels.get(severity, logging.INFO)
            log.log(level, "TensorRT: %s", msg)
            if level >= logging.ERROR:
                with self._lock:
                    self._errors = (self._errors + [msg])[-5:]

        def last_errors(self) -> str:
            with self._lock:
                return " | ".join(self._errors) or "no details in TensorRT's log"

    return _Logger()


def _make_progress_monitor(trt, on_progress: ProgressCallback):
    """An ``IProgressMonitor`` that reports the whole build's progress to ``on_progress`` as
    ``(phase path, done, PROGRESS_UNITS)``.

    TensorRT's phases nest: a phase of N steps may start child phases within a step. The
    fraction of a phase is (completed steps + the fraction of its running child) / N, and the
    fraction reported is that of the outermost running phase, never lower than one reported
    before (a later outermost phase does not send the bar back). ``phase path`` names the
    phase whose event it is, e.g. "Building engine / Tactic selection".
    """

    class _Phase:
        def __init__(self, path: str, parent: str | None, steps: int):
            self.path, self.parent, self.steps, self.done, self.child = path, parent, steps, 0, None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._phases: dict[str, _Phase] = {}
            self._reported = 0
            self.cancelled = False

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                parent = self._phases.get(parent_phase) if parent_phase else None
                path = f"{parent.path} / {phase_name}" if parent else phase_name
                self._phases[phase_name] = _Phase(path, parent_phase if parent else None, int(num_steps))
                if parent is not None:
                    parent.child = phase_name
                done = self._overall()
            self._report(path, done)

        def step_complete(self, phase_name, step):
            with self._lock:
                phase = self._phases.get(phase_name)
                if phase is not None:
                    phase.done = max(phase.done, min(int(step) + 1, phase.steps))
                path = phase.path if phase is not None else phase_name
                done = self._overall()
            return self._report(path, done)

        def phase_finish(self, phase_name):
            with self._lock:
                phase = self._phases.get(phase_name)
                path = phase.path if phase is not None else phase_name
                if phase is not None:
                    phase.done = phase.steps
                    done = self._overall()
                    del self._phases[phase_name]
                    parent = self._phases.get(phase.parent) if phase.parent else None
                    if parent is not None and parent.child == phase_name:
                        parent.child = None
                else:
                    done = self._overall()
            self._report(path, done)

        def _fraction(self, phase: _Phase) -> float:
            child = self._phases.get(phase.child) if phase.child else None
            partial = self._fraction(child) if child is not None and phase.done < phase.steps else 0.0
            return min(1.0, (phase.done + partial) / phase.steps) if phase.steps > 0 else 0.0

        def _overall(self) -> int:
            """The outermost running phase's fraction in PROGRESS_UNITS, never below the last one reported."""
            roots = [p for p in self._phases.values() if p.parent is None]
            if roots:
                self._reported = max(self._reported, round(PROGRESS_UNITS * self._fraction(roots[-1])))
            return self._reported

        def _report(self, path: str, done: int) -> bool:
            try:
                if on_progress(path, done, PROGRESS_UNITS) is False:
                    self.cancelled = True
            except Exception:  # an exception must never cross into TensorRT
                log.exception("engine build progress callback failed")
            return not self.cancelled

    return _Monitor()

"""Which back-ends can run here, and opening a runner with a fallback to ONNX Runtime CPU.

``backend_availability()`` probes without loading anything heavy: TensorRT is looked up,
not imported, and the GPU is found through the NVIDIA driver library (libcuda) directly.
``open_runner`` tries the requested back-end (or the fastest available for "auto") and
then every slower available one, ending with ONNX Runtime CPU; each fallback is reported
once: through ``on_message`` when given (the caller shows it), else through ``logging``. A missing or corrupt model file raises
``ModelFileError`` at once, since no back-end can run it.

``precision`` ("auto", fp32, fp16, int8; ``engines.precision``) narrows the back-ends to those
that run it; an explicit back-end that cannot run it raises ``PrecisionUnavailable``. INT8 runs
a separate file: ``int8_path`` on ONNX Runtime CPU, ``openvino_int8_path`` (an IR) on OpenVINO;
"auto" runs each back-end's default (INT8 on a CPU back-end only when its file met the accuracy
bar: ``int8_default`` / ``openvino_int8_default``). The runner's ``.precision`` says what runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from engines.base import Backend, BackendUnavailable, ModelFileError, ProgressCallback, Runner, check_model_file
from engines.precision import Precision, PrecisionUnavailable, default_precision, precision_problem, resolve_precision

log = logging.getLogger(__name__)

FASTEST_FIRST = (Backend.TENSORRT, Backend.ORT_CUDA, Backend.ORT_CPU)
DEFAULT_MAX_BATCH = 8

MessageCallback = Callable[[str], None]


def nvidia_gpu_problem() -> str | None:
    """None when the NVIDIA driver reports at least one GPU, else why not (asks libcuda directly)."""
    driver = _load_cuda_driver()
    if driver is None:
        return "no NVIDIA GPU found (the NVIDIA driver is not installed)"
    status = driver.cuInit(0)
    if status != 0:
        return f"no NVIDIA GPU found (the NVIDIA driver reports CUDA error {status})"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "no NVIDIA GPU found"
    return None


def _load_cuda_driver():
    if sys.platform == "win32":
        names = ["nvcuda.dll"]
    else:
        names = ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = None if sys.platform == "win32" else ctypes.util.find_library("cuda")
    try:
        return ctypes.CDLL(found) if found else None
    except OSError:
        return None


def _module_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package is missing
        return True


def backend_availability() -> dict[Backend, str | None]:
    """For each back-end: None when it can run here, else the reason it cannot (for tooltips)."""
    from engines.ort import CPU_PROVIDER, CUDA_PROVIDER, ort_providers

    providers = ort_providers()
    gpu_problem = None
    availability: dict[Backend, str | None] = {}

    if _module_missing("tensorrt"):
        availability[Backend.TENSORRT] = "TensorRT is not installed"
    elif _module_missing("cuda.bindings.runtime") and _module_missing("cuda.cudart"):
        availability[Backend.TENSORRT] = "cuda-python is not installed (needed to run TensorRT engines)"
    else:
        gpu_problem = nvidia_gpu_problem()
        availability[Backend.TENSORRT] = gpu_problem

    if not providers:
        availability[Backend.ORT_CUDA] = "ONNX Runtime is not installed"
    elif CUDA_PROVIDER not in providers:
        availability[Backend.ORT_CUDA] = "onnxruntime-gpu is not installed"
    else:
        gpu_problem = gpu_problem or nvidia_gpu_problem()
        availability[Backend.ORT_CUDA] = gpu_problem

    availability[Backend.ORT_CPU] = None if CPU_PROVIDER in providers else "ONNX Runtime is not installed"
    availability[Backend.OPENVINO] = "OpenVINO is not installed" if _module_missing("openvino") else None
    return availability


def resolve_backend(backend: Backend | str) -> Backend | None:
    """``Backend`` for a name or member; None for "auto". Unknown names raise ``ValueError``."""
    if isinstance(backend, Backend):
        return backend
    if str(backend).lower() == "auto":
        return None
    try:
        return Backend(str(backend).lower())
    except ValueError:
        choices = ", ".join(["auto", *(b.value for b in Backend)])
        raise ValueError(f"unknown back-end {backend!r}; choose one of: {choices}") from None


def open_runner(
    model_path: str | Path,
    backend: Backend | str = "auto",
    on_message: MessageCallback | None = None,
    on_progress: ProgressCallback | None = None,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: int | None = None,
    cache_root: str | Path | None = None,
    precision: Precision | str | None = "auto",
    int8_path: str | Path | None = None,
    int8_default: bool = False,
    openvino_int8_path: str | Path | None = None,
    openvino_int8_default: bool = False,
    choose_cpu: bool = False,
) -> Runner:
    """Open ``model_path`` on ``backend`` ("auto": fastest available), falling back to slower ones.

    ``on_message`` gets one human sentence per event worth telling the user (engine build
    started, cached engine rebuilt, fallback taken); ``on_progress(phase, done, total)``
    gets TensorRT build progress (done / total: the whole build's fraction) and may return
    False to cancel the build. The returned
    runner's ``.backend`` is what actually runs. ``max_batch`` bounds the TensorRT engine's
    batch dimension; ``threads`` sets ONNX Runtime's intra-op threads; ``cache_root``
    overrides the engine cache folder. ``choose_cpu``: with "auto" back-end and precision and no
    GPU back-end here, run the CPU back-end and precision a cached measurement found fastest
    (``engines.cpu_choice``; an INT8 file among them only when its ``*_default`` says it met the
    accuracy bar); the runner's ``.choice`` holds the figures.
    """
    path = check_model_file(model_path)
    wanted = resolve_precision(precision)
    int8 = check_model_file(int8_path) if int8_path is not None else None
    ov_int8 = _check_ir(openvino_int8_path) if openvino_int8_path is not None else None
    int8_files = {Backend.ORT_CPU: int8, Backend.OPENVINO: ov_int8}
    int8_defaults = {Backend.ORT_CPU: int8 is not None and int8_default,
                     Backend.OPENVINO: ov_int8 is not None and openvino_int8_default}
    if wanted is Precision.INT8 and int8 is None and ov_int8 is None:
        raise ModelFileError(f"no INT8 file was given for {path.name}")
    requested = resolve_backend(backend)
    problem = precision_problem(requested, wanted) if requested is not None and wanted is not None else None
    if problem:
        raise PrecisionUnavailable(f"{requested.label} cannot run {wanted.value}: {problem}")
    availability = backend_availability()
    if requested is None:
        candidates = [b for b in FASTEST_FIRST if availability[b] is None]
    else:
        if availability[requested] is not None:
            _tell(on_message, f"{requested.label} is unavailable ({availability[requested]}).")
        if requested in FASTEST_FIRST:
            start = FASTEST_FIRST.index(requested)
            candidates = [b for b in FASTEST_FIRST[start:] if availability[b] is None]
        else:  # OpenVINO: not in auto's order yet; falls back to ONNX Runtime CPU
            candidates = [requested] if availability[requested] is None else []
    if Backend.ORT_CPU not in candidates:
        candidates.append(Backend.ORT_CPU)  # last resort; raises a clear error if ONNX Runtime is missing
    if wanted is not None:
        candidates = [b for b in candidates if precision_problem(b, wanted) is None
                      and (wanted is not Precision.INT8 or int8_files.get(b) is not None)]
        if not candidates:
            runners = [b for b in FASTEST_FIRST if precision_problem(b, wanted) is None]
            reasons = "; ".join(f"{b.label}: {availability[b]}" for b in runners)
            raise PrecisionUnavailable(f"no available back-end runs {wanted.value} ({reasons})")

    measured = None
    if choose_cpu and requested is None and wanted is None and candidates[0] is Backend.ORT_CPU:
        measured = _measured_cpu_choice(path, int8_files, int8_defaults, availability, threads, cache_root)
        if measured is not None:
            candidates = [measured.backend] + [b for b in candidates if b is not measured.backend]
    first_choice = requested or candidates[0]
    for position, candidate in enumerate(candidates):
        chosen = wanted or default_precision(candidate, int8_defaults.get(candidate, False))
        if measured is not None and candidate is measured.backend:
            chosen = measured.precision
        file = int8_files[candidate] if chosen is Precision.INT8 else path
        try:
            runner = _open(candidate, file, on_message, on_progress, max_batch, threads, cache_root)
        except ModelFileError:
            raise
        except Exception as exc:  # any back-end failure (ImportError, CUDA, TensorRT build) -> next one
            if position + 1 == len(candidates):
                raise
            log.debug("opening %s on %s failed", path, candidate.value, exc_info=True)
            _tell(on_message, f"{candidate.label} failed for {path.name} ({_reason(exc)}).")
            continue
        if candidate is not first_choice:
            _tell(on_message, f"Running {file.name} on {candidate.label} instead of {first_choice.label}.")
        runner.precision = chosen.value
        runner.choice = measured if measured is not None and candidate is measured.backend else None
        return runner
    raise AssertionError("unreachable: the candidate list always ends with ONNX Runtime CPU")


def _check_ir(path: str | Path) -> Path:
    """An OpenVINO IR: the .xml and its .bin must both be there."""
    xml = Path(path)
    if xml.suffix != ".xml":
        return check_model_file(xml)
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise ModelFileError(f"OpenVINO IR not found: {xml} (and its .bin beside it)")
    return xml


def _measured_cpu_choice(path, int8_files, int8_defaults, availability, threads, cache_root):
    from engines.cpu_choice import candidates as cpu_candidates
    from engines.cpu_choice import choose

    # Keyed by the threads asked for, not by $FACETRACK_ORT_THREADS: a batch worker (one thread each)
    # takes the same choice as `track` on this machine, so both give the same landmarks
    # (tests/test_batch.py); on a 2-core CPU the ranking did not change with the thread count.
    openvino = availability[Backend.OPENVINO] is None
    options = cpu_candidates(path, int8_files[Backend.ORT_CPU], int8_defaults[Backend.ORT_CPU], openvino,
                             int8_files[Backend.OPENVINO], int8_defaults[Backend.OPENVINO])
    choice = choose(options, lambda c: _open(c.backend, c.path, None, None, DEFAULT_MAX_BATCH, threads, cache_root),
                    threads, cache_root)
    if choice is not None:  # the runner's backend/precision say what runs; the figures go to the log
        log.info("%s", choice.describe(path.stem))
    return choice


def _open(backend, path, on_message, on_progress, max_batch, threads, cache_root) -> Runner:
    if backend is Backend.TENSORRT:
        return _open_tensorrt(path, on_message, on_progress, max_batch, cache_root)
    if backend is Backend.OPENVINO:
        from engines.openvino import OpenVinoRunner

        return OpenVinoRunner(path, threads=threads)
    from engines.ort import OrtRunner

    return OrtRunner(path, backend, threads=threads)


def _open_tensorrt(path: Path, on_message, on_progress, max_batch: int, cache_root) -> Runner:
    from engines import cache, trt

    gpu = trt.gpu_info()
    version = trt.tensorrt_version()
    key = cache.engine_key(
        path,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        trt_version=version,
        precision="fp16",
        max_batch=max_batch,
    )
    timing = cache.timing_cache_path(gpu.name, gpu.compute_capability, version, cache_root)

    def build() -> bytes:
        text = f"Building a TensorRT FP16 engine for {path.name} on {gpu.name} (once; this can take minutes)."
        _tell(on_message, text, logging.INFO)
        return trt.build_engine(path, max_batch=max_batch, timing_cache_path=timing, on_progress=on_progress)

    return cache.load_or_build(
        key, build, trt.TrtRunner, root=cache_root, on_message=lambda text: _tell(on_message, text)
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, (BackendUnavailable, ImportError)) else f"{type(exc).__name__}: {text}"


def _tell(on_message: MessageCallback | None, text: str, level: int = logging.WARNING) -> None:
    """Say ``text`` once: to ``on_message`` when the caller listens (it shows it), else to the log."""
    if on_message is None:
        log.log(level, text)
        return
    log.debug("%s", text)
    try:
        on_message(text)
    except Exception:
        log.exception("on_message callback failed")

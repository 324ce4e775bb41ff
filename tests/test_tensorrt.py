"""engines/trt.py and the GPU back-ends: TensorRT helpers and code paths on stand-ins (no GPU or
TensorRT here), the GPU probe, and the real thing on an NVIDIA GPU (``-m gpu``, skipped with the
reason elsewhere)."""

from __future__ import annotations

import ctypes
import os
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from engines import Backend, TensorSpec
from engines import select, trt
from engines.ort import OrtRunner
from engines.trt import EngineBuildError, EngineLoadError
from tests.toy_conv import images, model_path, reference  # noqa: F401 (model_path: a fixture)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --- TensorRT helpers that run without a GPU (stand-in tensorrt module) ----------------------


class _FakeMonitorBase:
    def __init__(self):
        pass


def test_progress_monitor_reports_one_overall_fraction_over_nested_phases() -> None:
    """Build (2 steps) with a child phase in each step: the fraction never goes back and ends at 1."""
    calls: list[tuple[str, int, int]] = []
    monitor = trt._make_progress_monitor(types.SimpleNamespace(IProgressMonitor=_FakeMonitorBase),
                                         lambda *args: calls.append(args))
    monitor.phase_start("Build", None, 2)
    monitor.phase_start("Tactics", "Build", 4)
    for step in range(4):
        monitor.step_complete("Tactics", step)
    monitor.phase_finish("Tactics")
    monitor.step_complete("Build", 0)
    monitor.phase_start("Weights", "Build", 2)
    monitor.step_complete("Weights", 0)
    monitor.phase_finish("Weights")
    monitor.step_complete("Build", 1)
    monitor.phase_finish("Build")
    units = trt.PROGRESS_UNITS
    assert all(total == units for _, _, total in calls)
    assert [done for _, done, _ in calls] == [0, 0, 125, 250, 375, 500, 500, 500, 500, 750, 1000, 1000, 1000]
    assert [phase for phase, _, _ in calls][1:3] == ["Build / Tactics", "Build / Tactics"]
    assert calls[-1] == ("Build", units, units)


def test_progress_monitor_cancels_when_the_callback_says_so() -> None:
    def on_progress(phase, done, total):
        return not (phase.endswith("Tactics") and done >= total / 4)

    monitor = trt._make_progress_monitor(types.SimpleNamespace(IProgressMonitor=_FakeMonitorBase), on_progress)
    monitor.phase_start("Build", None, 2)
    monitor.phase_start("Tactics", "Build", 3)
    assert monitor.step_complete("Tactics", 0) is True  # 1/6 of the build
    assert monitor.step_complete("Tactics", 1) is False  # 2/6: the callback returned False
    assert monitor.cancelled


def test_progress_monitor_swallows_callback_errors() -> None:
    def on_progress(phase, done, total):
        raise ValueError("bad GUI code")

    monitor = trt._make_progress_monitor(types.SimpleNamespace(IProgressMonitor=_FakeMonitorBase), on_progress)
    monitor.phase_start("Build", None, 1)
    assert monitor.step_complete("Build", 0) is True


class _FakeTensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, low, opt, high):
        self.shapes[name] = (low, opt, high)


def _fake_network(*tensors):
    return types.SimpleNamespace(num_inputs=len(tensors), get_input=lambda i: tensors[i])


def test_batch_profile_min_1_opt_1_max_batch() -> None:
    builder = types.SimpleNamespace(create_optimization_profile=_FakeProfile)
    profile = trt._batch_profile(builder, _fake_network(_FakeTensor("image", (-1, 3, 64, 64))), 8)
    assert profile.shapes == {"image": ((1, 3, 64, 64), (1, 3, 64, 64), (8, 3, 64, 64))}
    assert trt._batch_profile(builder, _fake_network(_FakeTensor("image", (1, 3, 64, 64))), 8) is None
    with pytest.raises(EngineBuildError, match="only the first"):
        trt._batch_profile(builder, _fake_network(_FakeTensor("image", (-1, 3, -1, -1))), 8)


# --- on an NVIDIA GPU with TensorRT ----------------------------------------------------------


def _tensorrt_problem() -> str | None:
    return select.backend_availability()[Backend.TENSORRT]


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("strongly_typed", [None, True], ids=["default", "strongly-typed"])
def test_tensorrt_engine_matches_ort(model_path: Path, tmp_path: Path, strongly_typed) -> None:
    problem = _tensorrt_problem()
    if problem:
        pytest.skip(problem)
    progress: list[tuple[str, int, int]] = []
    data = trt.build_engine(
        model_path,
        max_batch=4,
        timing_cache_path=tmp_path / "timing.cache",
        on_progress=lambda *a: progress.append(a),
        strongly_typed=strongly_typed,
    )
    assert (tmp_path / "timing.cache").stat().st_size > 0
    with trt.TrtRunner(data) as runner, OrtRunner(model_path) as reference_runner:
        assert runner.backend is Backend.TENSORRT and runner.max_batch == 4
        assert runner.inputs == (TensorSpec("image", (None, 3, 8, 8), np.dtype(np.float32)),)
        for batch in (1, 3, 4):
            image = images(batch)
            got, want = runner.infer({"image": image}), reference_runner.infer({"image": image})
            for name in want:
                assert got[name].shape == want[name].shape
                np.testing.assert_allclose(got[name], want[name], rtol=1e-2, atol=1e-2)
        with pytest.raises(ValueError, match="larger max_batch"):
            runner.infer({"image": images(5)})
    runner.close()
    assert progress, "TensorRT reported no build progress"


@gpu
def test_open_runner_builds_caches_and_reuses_engine(model_path: Path, tmp_path: Path) -> None:
    problem = _tensorrt_problem()
    if problem:
        pytest.skip(problem)
    messages: list[str] = []
    with select.open_runner(model_path, "tensorrt", messages.append, cache_root=tmp_path) as runner:
        assert runner.backend is Backend.TENSORRT
    assert any(m.startswith("Building") for m in messages)
    messages.clear()
    with select.open_runner(model_path, "tensorrt", messages.append, cache_root=tmp_path) as runner:
        assert runner.backend is Backend.TENSORRT
    assert messages == []
    [engine_file] = tmp_path.glob("*.engine")
    engine_file.write_bytes(os.urandom(4096))
    with select.open_runner(model_path, "tensorrt", messages.append, cache_root=tmp_path) as runner:
        assert runner.backend is Backend.TENSORRT
    assert any("could not be loaded" in m for m in messages)


@gpu
def test_ort_cuda_matches_cpu(model_path: Path) -> None:
    problem = select.backend_availability()[Backend.ORT_CUDA]
    if problem:
        pytest.skip(problem)
    image = images(2)
    with OrtRunner(model_path, Backend.ORT_CUDA) as cuda_runner, OrtRunner(model_path) as cpu_runner:
        got, want = cuda_runner.infer({"image": image}), cpu_runner.infer({"image": image})
    np.testing.assert_allclose(got["features"], want["features"], rtol=1e-3, atol=1e-3)


# --- TensorRT code paths on stand-ins -----------------------------------------------------
# No GPU or TensorRT here: these stand-ins follow the documented TensorRT / cuda-python
# behaviour (tuples of (error, value), bool returns, IHostMemory as a buffer) so that the
# buffer handling, shape checks and build options in engines/trt.py run; "device" memory is
# host memory and "execution" is the numpy reference. The real thing: the gpu tests above.


class FakeCudart:
    class cudaError_t:
        cudaSuccess = 0

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self):
        self.blocks: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()

    def _allocate(self, nbytes):
        block = ctypes.create_string_buffer(nbytes)
        self.blocks[ctypes.addressof(block)] = block
        return (0, ctypes.addressof(block))

    cudaMalloc = cudaMallocHost = _allocate

    def cudaFree(self, pointer):
        del self.blocks[pointer]
        return (0,)

    cudaFreeHost = cudaFree

    def cudaSetDevice(self, device):
        return (0,)

    def cudaStreamCreate(self):
        self.streams.add(77)
        return (0, 77)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamDestroy(self, stream):
        self.streams.discard(stream)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        assert stream in self.streams
        ctypes.memmove(dst, src, nbytes)
        return (0,)


def _read(pointer: int, shape: tuple, dtype=np.float32) -> np.ndarray:
    count = int(np.prod(shape))
    return np.frombuffer((ctypes.c_float * count).from_address(pointer), dtype=dtype).reshape(shape)


class FakeContext:
    def __init__(self):
        self.shapes, self.addresses = {}, {}

    def set_input_shape(self, name, shape):
        ok = 1 <= shape[0] <= 4 and tuple(shape[1:]) == (3, 8, 8)
        if ok:
            self.shapes[name] = tuple(shape)
        return ok

    def get_tensor_shape(self, name):
        batch = self.shapes["image"][0]
        return {"image": self.shapes["image"], "features": (batch, 4, 8, 8), "pooled": (batch, 4, 1, 1)}[name]

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer
        return True

    def execute_async_v3(self, stream_handle):
        assert isinstance(stream_handle, int)
        out = reference(_read(self.addresses["image"], self.shapes["image"]))
        for name in ("features", "pooled"):
            ctypes.memmove(self.addresses[name], out[name].astype(np.float32).tobytes(), out[name].size * 4)
        return True


class FakeEngine:
    num_io_tensors = 3
    _shapes = {"image": (-1, 3, 8, 8), "features": (-1, 4, 8, 8), "pooled": (-1, 4, 1, 1)}

    def get_tensor_name(self, index):
        return list(self._shapes)[index]

    def get_tensor_mode(self, name):
        return "input" if name == "image" else "output"

    def get_tensor_shape(self, name):
        return self._shapes[name]

    def get_tensor_dtype(self, name):
        return np.float32

    def get_tensor_profile_shape(self, name, profile_index):
        return [(1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8)]

    def create_execution_context(self):
        return FakeContext()


class FakeILogger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self):
        pass


def fake_tensorrt(version: int) -> types.SimpleNamespace:
    """A stand-in ``tensorrt`` module: version 10 has BuilderFlag.FP16, version 11 does not."""

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            if data != b"PLAN":
                self.logger.log(FakeILogger.ERROR, "Serialization assertion failed: magic tag mismatch")
                return None
            return FakeEngine()

    class Network:
        def __init__(self, flags):
            self.flags, self.tensors, self.model = flags, [], None

        @property
        def num_inputs(self):
            return len(self.tensors)

        def get_input(self, index):
            return self.tensors[index]

    class Parser:
        errors: list[str] = []

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data, path=None):
            if self.errors:
                return False
            model = onnx.load_model_from_string(bytes(data))
            self.network.model = model
            for value in model.graph.input:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
                self.network.tensors.append(_FakeTensor(value.name, tuple(dims)))
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

    class Cache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+timings"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.progress_monitor, self.cache = set(), [], None, None

        def set_flag(self, flag):
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        last = None

        def __init__(self, logger):
            Builder.last = self

        def create_network(self, flags):
            self.network = Network(flags)
            return self.network

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return _FakeProfile()

        def build_serialized_network(self, network, config):
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                for step in range(2):
                    if not monitor.step_complete("Building engine", step):
                        return None
                monitor.phase_finish("Building engine")
            return b"PLAN"

    flags = {"FP16": "fp16"} if version == 10 else {}
    return types.SimpleNamespace(
        __version__=f"{version}.0.0",
        ILogger=FakeILogger,
        IProgressMonitor=_FakeMonitorBase,
        Runtime=Runtime,
        Builder=Builder,
        OnnxParser=Parser,
        BuilderFlag=types.SimpleNamespace(**flags),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        TensorIOMode=types.SimpleNamespace(INPUT="input", OUTPUT="output"),
        nptype=lambda dtype: dtype,
    )


@pytest.fixture()
def stand_ins(monkeypatch):
    cudart = FakeCudart()
    tensorrt = fake_tensorrt(10)
    monkeypatch.setattr(trt, "import_cudart", lambda: cudart)
    monkeypatch.setattr(trt, "import_tensorrt", lambda: tensorrt)
    return tensorrt, cudart


def test_trt_runner_buffers_shapes_and_close_on_stand_ins(stand_ins) -> None:
    _, cudart = stand_ins
    runner = trt.TrtRunner(b"PLAN")
    assert runner.inputs == (TensorSpec("image", (None, 3, 8, 8), np.dtype(np.float32)),)
    assert [s.name for s in runner.outputs] == ["features", "pooled"] and runner.max_batch == 4
    assert len(cudart.blocks) == 6  # pinned host + device buffer per tensor
    for batch in (3, 1, 4):  # shrinking and growing batches reuse the same buffers
        image = images(batch)
        out = runner.infer({"image": image})
        want = reference(image)
        assert out["features"].shape == (batch, 4, 8, 8) and out["pooled"].shape == (batch, 4, 1, 1)
        np.testing.assert_allclose(out["features"], want["features"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["pooled"], want["pooled"], rtol=1e-5, atol=1e-5)
    kept = runner.infer({"image": images(1)})["pooled"]
    runner.infer({"image": images(1)})
    assert kept.base is None or not np.shares_memory(kept, runner._buffers["pooled"].host)
    with pytest.raises(ValueError, match=r"accepts shapes from \(1, 3, 8, 8\) to \(4, 3, 8, 8\)"):
        runner.infer({"image": images(5)})
    with pytest.raises(ValueError, match="dtype float64"):
        runner.infer({"image": images(1).astype(np.float64)})
    runner.close()
    runner.close()
    assert cudart.blocks == {} and cudart.streams == set()
    with pytest.raises(RuntimeError, match="closed"):
        runner.infer({"image": images(1)})


def test_trt_runner_rejects_bad_engine_bytes_and_frees_everything(stand_ins) -> None:
    _, cudart = stand_ins
    with pytest.raises(EngineLoadError, match="magic tag mismatch"):
        trt.TrtRunner(b"not a plan")
    assert cudart.blocks == {} and cudart.streams == set()


@pytest.mark.parametrize("version", [10, 11])
def test_build_engine_options_on_stand_ins(model_path: Path, tmp_path: Path, monkeypatch, version: int) -> None:
    tensorrt = fake_tensorrt(version)
    monkeypatch.setattr(trt, "import_tensorrt", lambda: tensorrt)
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"old")
    progress: list[tuple] = []
    plan = trt.build_engine(
        model_path, max_batch=6, timing_cache_path=timing, on_progress=lambda *a: progress.append(a)
    )
    assert plan == b"PLAN"
    builder = tensorrt.Builder.last
    [profile] = builder.config.profiles
    assert profile.shapes == {"image": ((1, 3, 8, 8), (1, 3, 8, 8), (6, 3, 8, 8))}
    assert timing.read_bytes() == b"old+timings"  # read, then rewritten after the build
    assert progress[0] == ("Building engine", 0, 1000) and progress[-1] == ("Building engine", 1000, 1000)
    weights = {i.name: i.data_type for i in builder.network.model.graph.initializer}
    if version == 10:  # weakly typed FP32 network + FP16 builder flag
        assert builder.network.flags == 0 and builder.config.flags == {"fp16"}
        assert weights["W"] == TensorProto.FLOAT
    else:  # strongly typed network parsed from the FP16 ONNX, float32 I/O kept
        assert builder.network.flags == 1 << 1 and builder.config.flags == set()
        assert weights["W"] == TensorProto.FLOAT16
        assert builder.network.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_build_engine_reports_parser_errors_and_cancellation(model_path: Path, monkeypatch) -> None:
    tensorrt = fake_tensorrt(10)
    monkeypatch.setattr(trt, "import_tensorrt", lambda: tensorrt)
    assert trt.build_engine(model_path) == b"PLAN"  # no timing cache, no progress callback
    with pytest.raises(EngineBuildError, match="was cancelled"):
        trt.build_engine(model_path, on_progress=lambda phase, done, total: done < 1)
    tensorrt.OnnxParser.errors = ["In node 0 (Conv): UNSUPPORTED_NODE: no kernel"]
    with pytest.raises(EngineBuildError, match="could not parse conv.onnx: In node 0 \\(Conv\\): UNSUPPORTED_NODE"):
        trt.build_engine(model_path)


@pytest.mark.parametrize(
    ("init_status", "count", "problem"),
    [
        (0, 2, None),
        (0, 0, "no NVIDIA GPU found"),
        (100, 0, "no NVIDIA GPU found (the NVIDIA driver reports CUDA error 100)"),
    ],
)
def test_gpu_probe_reads_the_driver_answer(monkeypatch, init_status: int, count: int, problem) -> None:
    def device_count(ref):
        ref._obj.value = count
        return 0

    driver = types.SimpleNamespace(cuInit=lambda flags: init_status, cuDeviceGetCount=device_count)
    monkeypatch.setattr(select, "_load_cuda_driver", lambda: driver)
    assert select.nvidia_gpu_problem() == problem
    monkeypatch.setattr(select, "_load_cuda_driver", lambda: None)
    assert select.nvidia_gpu_problem() == "no NVIDIA GPU found (the NVIDIA driver is not installed)"

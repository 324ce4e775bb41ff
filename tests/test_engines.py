"""engines/: ONNX Runtime runner, feed checks, model-file errors, engine cache, back-end availability
and the fallback to ONNX Runtime CPU. FP16 conversion: tests/test_fp16.py; TensorRT's own code paths and the GPU
tests are in tests/test_tensorrt.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from engines import Backend, BackendUnavailable, ModelFileError, TensorSpec
from engines import cache, files, select, trt
from engines.base import check_feed
from engines.ort import OrtRunner
from engines.trt import EngineBuildError, EngineLoadError, GpuInfo
from tests.toy_conv import BIAS, RNG, conv_model, images, model_path, reference  # noqa: F401 (model_path: a fixture)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --- ONNX Runtime runner -------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_ort_cpu_matches_numpy_reference(model_path: Path, batch: int) -> None:
    image = images(batch)
    with OrtRunner(model_path, threads=1) as runner:
        out = runner.infer({"image": image})
    assert runner.backend is Backend.ORT_CPU
    assert set(out) == {"features", "pooled"}
    want = reference(image)
    assert out["features"].shape == (batch, 4, 8, 8) and out["features"].dtype == np.float32
    np.testing.assert_allclose(out["features"], want["features"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["pooled"], want["pooled"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spin", [False, True])
def test_ort_spinning_is_off_unless_asked(model_path: Path, spin: bool) -> None:
    with OrtRunner(model_path, spin=spin) as runner:
        options = runner._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin else "0")
        assert runner.infer({"image": images(1)})["pooled"].shape[0] == 1


def test_ort_reads_tensor_specs(model_path: Path) -> None:
    with OrtRunner(model_path) as runner:
        assert runner.inputs == (TensorSpec("image", ("N", 3, 8, 8), np.dtype(np.float32)),)
        assert [s.name for s in runner.outputs] == ["features", "pooled"]
        assert runner.outputs[1].shape == ("N", 4, 1, 1)
        assert all(s.dtype == np.float32 for s in runner.outputs)


@pytest.mark.parametrize(
    ("feed", "words"),
    [
        ({}, ["missing input 'image'", "(N, 3, 8, 8)", "float32"]),
        ({"image": images(1), "extra": images(1)}, ["unknown input 'extra'", "'image' (N, 3, 8, 8)"]),
        ({"image": images(1)[0]}, ["input 'image' has shape (3, 8, 8)", "expected shape (N, 3, 8, 8)"]),
        (
            {"image": RNG.standard_normal((1, 3, 9, 8)).astype(np.float32)},
            ["(1, 3, 9, 8)", "expected shape (N, 3, 8, 8)"],
        ),
        (
            {"image": images(1).astype(np.float64)},
            ["input 'image' has dtype float64", "(N, 3, 8, 8) and dtype float32"],
        ),
    ],
    ids=["missing", "unknown", "rank", "static-dim", "dtype"],
)
def test_feed_errors_name_the_tensor_and_expected_shape(model_path: Path, feed: dict, words: list[str]) -> None:
    with OrtRunner(model_path) as runner:
        with pytest.raises(ValueError) as error:
            runner.infer(feed)
    for word in words:
        assert word in str(error.value)


def test_check_feed_accepts_any_batch_and_makes_arrays_contiguous() -> None:
    spec = TensorSpec("x", (None, 2), np.dtype(np.float32))
    view = np.zeros((5, 4), np.float32)[:, ::2]
    assert not view.flags.c_contiguous
    checked = check_feed([spec], {"x": view})
    assert checked["x"].flags.c_contiguous and checked["x"].shape == (5, 2)


def test_ort_runner_close_is_idempotent_and_final(model_path: Path) -> None:
    runner = OrtRunner(model_path)
    runner.close()
    runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.infer({"image": images(1)})


def test_ort_threads_must_be_positive(model_path: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        OrtRunner(model_path, threads=0)


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="onnxruntime-gpu is installed here"
)
def test_ort_cuda_without_onnxruntime_gpu_is_unavailable(model_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu is not installed"):
        OrtRunner(model_path, Backend.ORT_CUDA)


# --- model file errors ---------------------------------------------------------------------


def bad_model_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    random_bytes = tmp_path / "random.onnx"
    random_bytes.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.onnx"
    text.write_text("this is a text file, not a network\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    return {
        "missing": (tmp_path / "absent.onnx", "not found"),
        "random": (random_bytes, "not an ONNX model"),
        "text": (text, "not an ONNX model"),
        "empty": (empty, "empty"),
        "folder": (folder, "not a file"),
    }


@pytest.mark.parametrize("case", ["missing", "random", "text", "empty", "folder"])
def test_bad_model_file_raises_model_file_error_naming_it(tmp_path: Path, case: str) -> None:
    path, problem = bad_model_files(tmp_path)[case]
    with pytest.raises(ModelFileError) as error:
        OrtRunner(path)
    assert str(path) in str(error.value) and problem in str(error.value)
    messages: list[str] = []
    for backend in ("auto", "tensorrt", "ort-cpu"):
        with pytest.raises(ModelFileError, match=problem):
            select.open_runner(path, backend, on_message=messages.append)
    assert messages == []  # no fallback was attempted: nothing can run a broken file


# --- engine cache --------------------------------------------------------------------------


KEY_ARGS = dict(
    gpu_name="NVIDIA GeForce RTX 4070", compute_capability="8.9", trt_version="10.9.0", precision="fp16", max_batch=8
)


def test_cache_key_is_stable(model_path: Path) -> None:
    first = cache.engine_key(model_path, **KEY_ARGS)
    second = cache.engine_key(model_path, **KEY_ARGS)
    assert first == second and first.digest() == second.digest() and first.filename() == second.filename()
    assert first.onnx_sha256 == cache.file_sha256(model_path)
    assert first.filename().startswith("conv-fp16-b8-") and first.filename().endswith(".engine")
    renamed = model_path.with_name("renamed.onnx")
    renamed.write_bytes(model_path.read_bytes())
    assert cache.engine_key(renamed, **KEY_ARGS).digest() == first.digest()  # content, not name


@pytest.mark.parametrize(
    "change",
    [
        {"gpu_name": "NVIDIA H100 80GB HBM3"},
        {"compute_capability": "9.0"},
        {"trt_version": "11.0.0"},
        {"precision": "fp32"},
        {"max_batch": 16},
    ],
    ids=lambda c: next(iter(c)),
)
def test_cache_key_changes_with_each_component(model_path: Path, change: dict) -> None:
    base = cache.engine_key(model_path, **KEY_ARGS)
    changed = cache.engine_key(model_path, **{**KEY_ARGS, **change})
    assert changed.digest() != base.digest() and changed.filename() != base.filename()


def test_cache_key_changes_with_onnx_bytes(model_path: Path, tmp_path: Path) -> None:
    other = conv_model()
    other.graph.initializer[1].CopyFrom(numpy_helper.from_array(BIAS + 1, "B"))
    other_path = tmp_path / "conv_other.onnx"
    onnx.save_model(other, str(other_path))
    assert cache.engine_key(other_path, **KEY_ARGS).digest() != cache.engine_key(model_path, **KEY_ARGS).digest()


def test_engine_files_live_under_cache_dir(model_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "fcache"))
    key = cache.engine_key(model_path, **KEY_ARGS)
    assert cache.engine_path(key) == tmp_path / "fcache" / "engines" / key.filename()
    timing = cache.timing_cache_path("NVIDIA GeForce RTX 4070", "8.9", "10.9.0")
    assert (
        timing.parent == tmp_path / "fcache" / "engines"
        and timing.name == "timing-NVIDIA_GeForce_RTX_4070-sm8.9-trt10.9.0.cache"
    )


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.engine"
    files.atomic_write(target, b"first")
    files.atomic_write(target, b"second version")
    assert target.read_bytes() == b"second version"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.engine"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.engine"
    files.atomic_write(target, b"good")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(target, b"half-written")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["x.engine"]


def test_atomic_writer_streams_text_and_an_error_in_the_body_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "rows.csv"
    with files.atomic_writer(target, "w", newline="") as handle:
        handle.write("a,b\r\n1,2\r\n")
    assert target.read_bytes() == b"a,b\r\n1,2\r\n"
    with pytest.raises(RuntimeError, match="half way"):
        with files.atomic_writer(target, "w") as handle:
            handle.write("partial")
            raise RuntimeError("half way")
    assert target.read_text() == "a,b\n1,2\n" and [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def strict_loader(data: bytes) -> str:
    if not data.startswith(b"ENGINE:"):
        raise EngineLoadError("TensorRT could not deserialise the engine")
    return data.decode()


def test_load_or_build_builds_once_then_reuses(model_path: Path, tmp_path: Path) -> None:
    key = cache.engine_key(model_path, **KEY_ARGS)
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"ENGINE:1"

    assert cache.load_or_build(key, build, strict_loader, root=tmp_path) == "ENGINE:1"
    assert cache.load_or_build(key, build, strict_loader, root=tmp_path) == "ENGINE:1"
    assert len(builds) == 1
    assert json.loads((tmp_path / key.filename()).with_suffix(".json").read_text())["max_batch"] == 8


def test_corrupt_cached_engine_is_rebuilt_with_a_message(model_path: Path, tmp_path: Path) -> None:
    key = cache.engine_key(model_path, **KEY_ARGS)
    cache.engine_path(key, tmp_path).write_bytes(b"\x00garbage from a crashed build")
    messages: list[str] = []
    result = cache.load_or_build(key, lambda: b"ENGINE:fresh", strict_loader, root=tmp_path, on_message=messages.append)
    assert result == "ENGINE:fresh"
    assert cache.engine_path(key, tmp_path).read_bytes() == b"ENGINE:fresh"
    assert len(messages) == 1 and "could not be loaded" in messages[0] and "rebuilding" in messages[0]


def test_failed_build_leaves_no_engine_file(model_path: Path, tmp_path: Path) -> None:
    key = cache.engine_key(model_path, **KEY_ARGS)

    def build() -> bytes:
        raise EngineBuildError("TensorRT could not build an engine")

    with pytest.raises(EngineBuildError):
        cache.load_or_build(key, build, strict_loader, root=tmp_path / "engines")
    assert list((tmp_path / "engines").iterdir()) == []


# --- availability and fallback -------------------------------------------------------------


def test_backend_availability_gives_reasons_on_this_machine() -> None:
    availability = select.backend_availability()
    assert set(availability) == set(Backend)
    assert availability[Backend.ORT_CPU] is None
    if select._module_missing("tensorrt"):
        assert availability[Backend.TENSORRT] == "TensorRT is not installed"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert availability[Backend.ORT_CUDA] == "onnxruntime-gpu is not installed"
    for reason in availability.values():
        assert reason is None or (isinstance(reason, str) and reason)
    problem = select.nvidia_gpu_problem()
    assert problem is None or problem.startswith("no NVIDIA GPU found")


def test_backend_names_resolve() -> None:
    assert select.resolve_backend("auto") is None
    assert select.resolve_backend("TensorRT") is Backend.TENSORRT
    assert select.resolve_backend(Backend.ORT_CUDA) is Backend.ORT_CUDA
    assert select.resolve_backend("openvino") is Backend.OPENVINO
    with pytest.raises(ValueError, match="auto, tensorrt, ort-cuda, ort-cpu, openvino"):
        select.resolve_backend("directml")


def test_fallback_when_tensorrt_is_not_importable(model_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` now raises ImportError
    assert select.backend_availability()[Backend.TENSORRT] == "TensorRT is not installed"
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        trt.import_tensorrt()
    messages: list[str] = []
    with select.open_runner(model_path, "tensorrt", on_message=messages.append) as runner:
        assert runner.backend is Backend.ORT_CPU
        np.testing.assert_allclose(runner.infer({"image": images(2)})["pooled"].shape, (2, 4, 1, 1))
    text = " ".join(messages)
    assert "TensorRT FP16 is unavailable (TensorRT is not installed)" in text
    assert "on ONNX Runtime CPU instead of TensorRT FP16" in text


@pytest.fixture()
def pretend_tensorrt(monkeypatch):
    """Make select believe TensorRT and a GPU are present; the TensorRT calls themselves are replaced per test."""
    real = select.backend_availability

    def available():
        return {**real(), Backend.TENSORRT: None}

    monkeypatch.setattr(select, "backend_availability", available)
    monkeypatch.setattr(trt, "gpu_info", lambda device=0: GpuInfo("Fake GPU", "8.9"))
    monkeypatch.setattr(trt, "tensorrt_version", lambda: "10.9.0")


@pytest.mark.parametrize("backend", ["auto", "tensorrt"])
def test_fallback_when_tensorrt_build_raises(
    model_path: Path, tmp_path: Path, monkeypatch, pretend_tensorrt, backend
) -> None:
    def failing_build(onnx_path, **kwargs):
        raise EngineBuildError(f"TensorRT could not parse {Path(onnx_path).name}: unsupported op")

    monkeypatch.setattr(trt, "build_engine", failing_build)
    messages: list[str] = []
    runner = select.open_runner(model_path, backend, on_message=messages.append, cache_root=tmp_path / "engines")
    try:
        assert runner.backend is Backend.ORT_CPU
        image = images(1)
        np.testing.assert_allclose(runner.infer({"image": image})["features"], reference(image)["features"], atol=1e-5)
    finally:
        runner.close()
    assert messages[0].startswith("Building a TensorRT FP16 engine for conv.onnx on Fake GPU")
    assert "TensorRT FP16 failed for conv.onnx (TensorRT could not parse conv.onnx: unsupported op)" in messages[1]
    assert messages[-1] == "Running conv.onnx on ONNX Runtime CPU instead of TensorRT FP16."
    assert not list((tmp_path / "engines").glob("*.engine"))


def test_tensorrt_path_uses_cache_and_rebuilds_corrupt_engine(
    model_path: Path, tmp_path: Path, monkeypatch, pretend_tensorrt
) -> None:
    """open_runner's TensorRT path end to end, with the GPU parts (build, TrtRunner) replaced."""
    builds: list[dict] = []

    def fake_build(onnx_path, **kwargs):
        builds.append(kwargs)
        return b"ENGINE:" + Path(onnx_path).name.encode()

    class FakeTrtRunner:
        backend = Backend.TENSORRT

        def __init__(self, data: bytes):
            strict_loader(data)

        def close(self):
            pass

    monkeypatch.setattr(trt, "build_engine", fake_build)
    monkeypatch.setattr(trt, "TrtRunner", FakeTrtRunner)
    root = tmp_path / "engines"
    messages: list[str] = []
    assert (
        select.open_runner(model_path, "auto", messages.append, cache_root=root, max_batch=4).backend
        is Backend.TENSORRT
    )
    assert (
        select.open_runner(model_path, "auto", messages.append, cache_root=root, max_batch=4).backend
        is Backend.TENSORRT
    )
    assert len(builds) == 1 and builds[0]["max_batch"] == 4
    assert builds[0]["timing_cache_path"] == root / "timing-Fake_GPU-sm8.9-trt10.9.0.cache"
    [engine_file] = root.glob("*.engine")
    assert engine_file.name.startswith("conv-fp16-b4-")
    engine_file.write_bytes(b"truncated")
    messages.clear()
    assert (
        select.open_runner(model_path, "auto", messages.append, cache_root=root, max_batch=4).backend
        is Backend.TENSORRT
    )
    assert len(builds) == 2 and engine_file.read_bytes() == b"ENGINE:conv.onnx"
    assert any("could not be loaded" in m for m in messages)


def test_broken_message_callback_does_not_break_opening(model_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)

    def broken(text: str) -> None:
        raise RuntimeError("GUI went away")

    with select.open_runner(model_path, "tensorrt", on_message=broken) as runner:
        assert runner.backend is Backend.ORT_CPU


def test_importing_engines_stays_cheap() -> None:
    code = (
        "import sys, engines; engines.Backend; "
        "print(sorted(m for m in ('onnxruntime', 'onnx', 'tensorrt', 'cuda', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"



def test_ort_threads_come_from_the_environment_when_not_given(model_path: Path, monkeypatch) -> None:
    from engines.ort import THREADS_ENV, OrtRunner, default_threads

    monkeypatch.setenv(THREADS_ENV, "1")
    assert default_threads() == 1
    runner = OrtRunner(model_path)
    try:
        assert runner._session.get_session_options().intra_op_num_threads == 1
    finally:
        runner.close()
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(ValueError, match=THREADS_ENV):
        default_threads()
    monkeypatch.delenv(THREADS_ENV)
    assert default_threads() is None


def test_ort_spinning_comes_from_the_environment_when_not_given(model_path: Path, monkeypatch) -> None:
    from engines.ort import SPIN_ENV, OrtRunner, default_spin

    monkeypatch.delenv(SPIN_ENV, raising=False)
    assert default_spin() is False
    monkeypatch.setenv(SPIN_ENV, "1")
    assert default_spin() is True
    runner = OrtRunner(model_path)
    try:
        entries = runner._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        assert entries == "1"
    finally:
        runner.close()
    monkeypatch.setenv(SPIN_ENV, "yes")
    with pytest.raises(ValueError, match=SPIN_ENV):
        default_spin()

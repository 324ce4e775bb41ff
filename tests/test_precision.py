"""INT8 networks and the precision choice: the shipped INT8 files through the engines layer,
their landmarks against FP32 on real crops, and clear errors or fallbacks where a back-end
cannot run a precision."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from app.cli import main as cli_main
from engines.base import Backend, ModelFileError
from engines.precision import Precision, PrecisionUnavailable, default_precision, precision_problem
from engines.select import open_runner
from models.align import align_from_landmarks
from models.datasets import list_annotated
from models.landmarks68 import inter_ocular
from models.manifest import ManifestError, load_manifest, parse_manifest
from models.registry import ASSETS_DIR, NETWORK_NAMES, load_landmark_model, precision_files, split_model_name

# INT8 against FP32 on real aligned faces, in inter-ocular units: the mean point distance over
# 24 HELEN-train faces, and the worst face's mean point distance. Measured (2026-11-30):
# r18_ffld 0.0024 / 0.0064, mnv2_sdd 0.0017 / 0.0029 (7-bit weights; with full-range weights,
# which saturate on CPUs without VNNI, r18_ffld gave 0.0071 / 0.0134). The mnv2_sdd file of
# 2026-12-01 (from ImageNet weights) gives 0.0060 / 0.0168: its INT8 costs +0.033 points on HELEN
# test, inside the 0.05 bar that keeps INT8 the CPU default, and none on AFLW2000-3D (docs/RESULTS.md,
# "mnv2_sdd re-shipped 2026-12-01"), hence its wider bounds; r18_ffld's still catch the saturation.
BOUNDS = {"r18_ffld": (0.006, 0.012), "mnv2_sdd": (0.008, 0.02)}  # (mean, worst face)


@pytest.fixture(scope="module")
def faces(data_dir):
    items = list_annotated(data_dir / "300w" / "helen_train")[:24]
    return [(cv2.imread(str(item.image_path)), item.load_points()) for item in items]


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_int8_file_is_shipped_and_runs_through_the_engines_layer(name):
    manifest = load_manifest(ASSETS_DIR / f"{name}.json")
    assert manifest.int8 is not None and manifest.int8_path.is_file(), f"{name}: no INT8 file shipped"
    assert manifest.int8.calibration in ("minmax", "entropy", "percentile") and manifest.int8.metrics
    with open_runner(manifest.onnx_path, "ort-cpu", precision="int8", int8_path=manifest.int8_path) as runner:
        assert runner.backend is Backend.ORT_CPU and runner.precision == "int8"
        assert [s.name for s in runner.outputs] == list(manifest.outputs)
    with open_runner(manifest.onnx_path, "ort-cpu", precision="fp32", int8_path=manifest.int8_path) as runner:
        assert runner.precision == "fp32"


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_int8_landmarks_stay_close_to_fp32_on_real_faces(name, faces):
    with load_landmark_model(f"{name}@fp32", backend="ort-cpu") as fp32, \
            load_landmark_model(f"{name}@int8", backend="ort-cpu") as int8:
        assert (fp32.precision, int8.precision) == ("fp32", "int8")
        assert int8.name == f"{name}@int8"
        errors = []
        for image, points in faces:
            crop = align_from_landmarks(image, points, fp32.input_size)
            a, b = fp32.predict([crop])[0], int8.predict([crop])[0]
            errors.append(np.linalg.norm(a.points - b.points, axis=1).mean() / inter_ocular(points))
            assert b.mean_confidence > 0.5 * a.mean_confidence
    mean_bound, worst_bound = BOUNDS[name]
    assert np.mean(errors) < mean_bound, f"{name}: INT8 mean distance {np.mean(errors):.4f} inter-ocular"
    assert np.max(errors) < worst_bound, f"{name}: INT8 worst face {np.max(errors):.4f} inter-ocular"


def test_auto_precision_on_the_cpu_follows_the_manifest():
    for name in NETWORK_NAMES:
        manifest = load_manifest(ASSETS_DIR / f"{name}.json")
        with load_landmark_model(name, backend="ort-cpu") as model:
            assert model.precision == ("int8" if manifest.int8.cpu_default else "fp32")


def test_which_backend_runs_which_precision():
    assert precision_problem(Backend.ORT_CPU, Precision.INT8) is None
    assert precision_problem(Backend.ORT_CPU, Precision.FP32) is None
    assert precision_problem(Backend.TENSORRT, Precision.FP16) is None
    assert "not built yet" in precision_problem(Backend.TENSORRT, Precision.INT8)
    assert "FP16" in precision_problem(Backend.ORT_CPU, Precision.FP16)
    assert default_precision(Backend.ORT_CPU, int8_preferred=True) is Precision.INT8
    assert default_precision(Backend.ORT_CPU, int8_preferred=False) is Precision.FP32
    assert default_precision(Backend.TENSORRT, int8_preferred=True) is Precision.FP16


def test_int8_on_tensorrt_is_a_clear_error_from_the_engines_and_the_cli(capsys, talking_clip):
    manifest = load_manifest(ASSETS_DIR / "r18_ffld.json")
    with pytest.raises(PrecisionUnavailable, match="TensorRT FP16 cannot run int8: .*not built yet"):
        open_runner(manifest.onnx_path, "tensorrt", precision="int8", int8_path=manifest.int8_path)
    with pytest.raises(PrecisionUnavailable, match="no available back-end runs fp16"):
        open_runner(manifest.onnx_path, "auto", precision="fp16")  # no TensorRT on this machine
    code = cli_main(["track", str(talking_clip), "--model", "r18_ffld", "--backend", "tensorrt",
                     "--precision", "int8", "--max-frames", "2"])
    assert code == 2
    assert "error: TensorRT FP16 cannot run int8" in capsys.readouterr().err
    code = cli_main(["evaluate", "--model", "r18_ffld@fp16", "--backend", "ort-cpu", "--dataset",
                     "300w/helen_test", "--limit", "1"])
    assert code == 2
    assert "ONNX Runtime CPU cannot run fp16" in capsys.readouterr().err


def test_the_window_path_falls_back_with_a_message():
    messages = []
    with load_landmark_model("r18_ffld@int8", backend="tensorrt", on_message=messages.append) as model:
        assert model.precision in ("fp16", "int8", "fp32")
    assert any("cannot run int8" in text and "default precision instead" in text for text in messages)


def test_a_missing_int8_file_errors_or_falls_back(tmp_path):
    shutil.copy(ASSETS_DIR / "mnv2_sdd.json", tmp_path)
    shutil.copy(ASSETS_DIR / "mnv2_sdd.onnx", tmp_path)
    with pytest.raises(ModelFileError, match="no INT8 file .*models.tools.quantize --model mnv2_sdd"):
        load_landmark_model("mnv2_sdd@int8", backend="ort-cpu", assets_dir=tmp_path, strict_precision=True)
    messages = []
    with load_landmark_model("mnv2_sdd", precision="int8", backend="ort-cpu", assets_dir=tmp_path,
                             on_message=messages.append) as model:
        assert model.precision == "fp32"
    assert any("no INT8 file" in text for text in messages)
    assert precision_files("mnv2_sdd", tmp_path)["int8"].startswith("mnv2_sdd has no INT8 file")
    assert precision_files("mnv2_sdd")["int8"] is None
    assert set(precision_files("mediapipe68").values()) == {"mediapipe68 runs its own float model"}


def test_model_names_carry_flip_and_precision():
    assert split_model_name("r18_ffld") == ("r18_ffld", False, None)
    assert split_model_name("r18_ffld+flip@INT8") == ("r18_ffld", True, "int8")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        split_model_name("r18_ffld@int4")


def test_manifest_int8_section_round_trips_and_is_checked():
    data = json.loads((ASSETS_DIR / "r18_ffld.json").read_text())
    manifest = parse_manifest(data, ASSETS_DIR / "r18_ffld.json")
    assert parse_manifest(manifest.to_json(), manifest.path) == manifest
    data["int8"]["onnx"] = "../elsewhere.onnx"
    with pytest.raises(ManifestError, match="field 'int8.onnx' must be another file name beside the manifest"):
        parse_manifest(data, ASSETS_DIR / "r18_ffld.json")


def test_preprocessing_matches_the_manifest_formula():
    from dataclasses import replace

    from models.onnx_landmarks import preprocess_images

    manifest = load_manifest(ASSETS_DIR / "r18_ffld.json")
    batch = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for colour_order in ("rgb", "bgr"):
        m = replace(manifest, mean=(10.0, 120.0, 200.0), std=(50.0, 60.0, 70.0), colour_order=colour_order)
        channels = batch[..., ::-1] if colour_order == "rgb" else batch
        expected = (channels.transpose(0, 3, 1, 2) - np.array(m.mean).reshape(1, 3, 1, 1)) / np.array(
            m.std).reshape(1, 3, 1, 1)
        got = preprocess_images(batch, m)
        assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (2, 3, 32, 32)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    flipped = preprocess_images(batch[:, :, ::-1], manifest)  # views (flip test) work too
    np.testing.assert_allclose(flipped, preprocess_images(np.ascontiguousarray(batch[:, :, ::-1]), manifest))


@pytest.mark.peers("mediapipe")
def test_bench_compares_precisions_and_mediapipe_in_one_run(talking_clip):
    import re
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "app", "bench", str(talking_clip), "--model", "r18_ffld", "--backend", "ort-cpu",
         "--max-frames", "6", "--warmup", "2", "--model-only", "10", "--precisions", "fp32,int8"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"batch 1, fp32 \(ort-cpu\): median [\d.]+ ms", out.stdout)
    assert re.search(r"batch 1, int8 \(ort-cpu\): median [\d.]+ ms, p95 [\d.]+ ms, CPU [\d.]+ ms.*"
                     r"[\d.]+x fp32's speed", out.stdout)
    out = subprocess.run(
        [sys.executable, "-m", "app", "bench", str(talking_clip), "--model", "r18_ffld", "--precision", "int8",
         "--vs-mediapipe", "--resize", "320x240", "--max-frames", "8", "--rounds", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "size=320x240" in out.stdout and "precision=int8" in out.stdout
    rounds = re.findall(r"round \d/2: MediaPipe Face Mesh ([\d.]+) ms/frame \((\d)/8 with a face\); "
                        r"r18_ffld \(int8\) ([\d.]+) ms/frame \((\d)/8\); ratio ([\d.]+)x", out.stdout)
    assert len(rounds) == 2 and all(int(r[1]) >= 6 and int(r[3]) >= 6 for r in rounds)
    assert "over 2 rounds" in out.stdout


def test_frame_profile_prints_where_the_time_goes(talking_clip, capsys):
    from app.cli.frame_profile import PIECES, main

    assert main([str(talking_clip), "--model", "mnv2_sdd", "--backend", "ort-cpu", "--max-frames", "5",
                 "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    for piece in (*PIECES, "total"):
        assert f"| {piece} |" in out
    assert "| network | 5/5 |" in out and "precision=" in out


@pytest.mark.parametrize("name, float_convs", [("r18_ffld", 1), ("mnv2_sdd", 2)])
def test_int8_graph_keeps_the_image_layer_and_the_outputs_in_float(name, float_convs):
    import onnx

    from models.tools.quantize import float_nodes

    manifest = load_manifest(ASSETS_DIR / f"{name}.json")
    graph = onnx.load(str(manifest.int8_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    in_float = [n.name for n in convs if producer.get(n.input[1], n).op_type != "DequantizeLinear"]
    assert len(in_float) == float_convs and convs[0].name in in_float  # the layer on the image
    if name == "mnv2_sdd":
        assert "/final/Conv" in in_float  # the heatmaps stay float for DARK
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    assert all(producer.get(g.input[1], g).op_type != "DequantizeLinear" for g in gemms)  # heads stay float
    kept = float_nodes(manifest.onnx_path)
    assert convs[0].name in kept  # the first layer on the image
    if name == "r18_ffld":
        assert "/net/s0/Gemm" in kept and "/net/stages.0/Sub" in kept  # coordinate and grid arithmetic
        assert not any("layer1" in node for node in kept)

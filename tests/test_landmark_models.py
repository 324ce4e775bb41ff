"""The landmark models behind ``LandmarkModel``: mediapipe68, manifest-described ONNX networks, the registry."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.base import ModelFileError
from models.align import align_from_landmarks, invert_affine, transform_points, warp
from models.datasets import PROJECT_ROOT, list_annotated
from models.landmarks68 import MIRROR, NUM_LANDMARKS
from models.manifest import ManifestError, ModelManifest, load_manifest, template_version, write_manifest
from models.mediapipe68 import INPUT_SIZE, MESH_VERTICES, MediaPipe68, mesh_to_68
from models.mediapipe68_map import MEAN_SHAPE, MESH_TO_68
from models.metrics import nme
from models.onnx_landmarks import OnnxLandmarkModel
from models.registry import UnknownModelError, available_models, default_model, load_landmark_model
from models.types import AlignedCrop
from tests.conftest import read_image
from tests.peers import full_stack, missing_modules, need_peers

# mediapipe68 on every third helen_test face (110), aligned from ground-truth five points,
# measured 0.0392 (all 330: 0.0391, `python -m models.mediapipe68 --eval`).
MEDIAPIPE68_NME_LIMIT = 0.045


# --- mediapipe68 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mediapipe68():
    need_peers("mediapipe")
    with MediaPipe68() as model:
        yield model


def test_mediapipe68_nme_on_helen_test(mediapipe68, helen_test_dir):
    errors = []
    for item in list_annotated(helen_test_dir)[::3]:
        truth = item.load_points()
        crop = align_from_landmarks(read_image(item.image_path), truth, INPUT_SIZE)
        (landmarks,) = mediapipe68.predict([crop])
        assert landmarks.points.shape == (68, 2) and np.all(landmarks.confidence == 1.0)
        errors.append(nme(landmarks.points, truth))  # frame coordinates: checks the way back too
    assert len(errors) == 110
    assert np.mean(errors) < MEDIAPIPE68_NME_LIMIT


def test_mediapipe68_batch_matches_single_crops(mediapipe68, helen_test_dir):
    items = list_annotated(helen_test_dir)[:3]
    crops = [align_from_landmarks(read_image(i.image_path), i.load_points(), INPUT_SIZE) for i in items]
    batch = mediapipe68.predict(crops)
    singles = [mediapipe68.predict([c])[0] for c in crops]
    for a, b in zip(batch, singles):
        np.testing.assert_allclose(a.points, b.points, atol=1e-6)


def test_mediapipe68_blank_crop_is_no_face(mediapipe68):
    matrix = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, 20.0]])
    blank = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    crop = AlignedCrop(image=blank, matrix=matrix, inverse=invert_affine(matrix))
    raw = mediapipe68.infer([crop])
    assert np.isnan(raw).all()
    (landmarks,) = mediapipe68.decode(raw, [crop])
    assert np.all(landmarks.confidence == 0.0)
    expected = transform_points(np.array(MEAN_SHAPE) * INPUT_SIZE - 0.5, crop.inverse)
    np.testing.assert_allclose(landmarks.points, expected)


def test_mediapipe68_map_is_valid():
    assert len(MESH_TO_68) == NUM_LANDMARKS
    for indices, weights in MESH_TO_68:
        assert len(indices) == len(set(indices)) >= 1
        assert all(isinstance(i, int) and 0 <= i < MESH_VERTICES for i in indices)
        assert len(weights) == len(indices) and min(weights) > 0
        assert sum(weights) == pytest.approx(1.0, abs=1e-9)
    assert len({tuple(zip(i, w)) for i, w in MESH_TO_68}) == NUM_LANDMARKS  # 68 distinct combinations
    # a few neighbours share their strongest vertex (now jaw 15/16, brow 22/23, eyelid 46/47)
    primaries = [i[int(np.argmax(w))] for i, w in MESH_TO_68]
    assert len(set(primaries)) >= 64
    shape = np.array(MEAN_SHAPE)
    assert shape.shape == (68, 2) and np.all((shape > 0.1) & (shape < 0.9))


def test_mediapipe68_map_gives_68_separate_points_on_a_real_face(mediapipe68, helen_test_dir):
    item = list_annotated(helen_test_dir)[0]
    crop = align_from_landmarks(read_image(item.image_path), item.load_points(), INPUT_SIZE)
    points = mesh_to_68(mediapipe68.infer([crop])[0] * INPUT_SIZE - 0.5)
    gaps = np.linalg.norm(points[:, None] - points[None], axis=2) + np.eye(68) * 1e9
    assert gaps.min() > 1.0  # pixels of a 256 crop (measured: 4.7, points 51 and 62)


# --- tiny ONNX networks -----------------------------------------------------------------------------

SIZE = 64  # network input
HEATMAP = 16  # heatmap side: stride 4
MEAN = (10.0, 20.0, 30.0)
STD = (2.0, 4.0, 8.0)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image_input(batch="N"):
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])


def coords_graph(base: np.ndarray, path: Path, batch="N") -> Path:
    """coords = base (68, 2) + (mean of input channel 0, mean of channel 1); confidence = sigmoid(mean of channel 2)."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0),  # (N, 3)
        helper.make_node("Slice", ["means", "s0", "s2", "ax1"], ["xy"]),  # (N, 2)
        helper.make_node("Unsqueeze", ["xy", "ax1"], ["xy1"]),  # (N, 1, 2)
        helper.make_node("Add", ["xy1", "base"], ["coords"]),  # (N, 68, 2)
        helper.make_node("Slice", ["means", "s2", "s3", "ax1"], ["c"]),  # (N, 1)
        helper.make_node("Sigmoid", ["c"], ["c_sig"]),
        helper.make_node("Expand", ["c_sig", "conf_shape"], ["confidence"]),  # (N, 68)
    ]
    inits = [
        numpy_helper.from_array(base.astype(np.float32)[None], "base"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([2], np.int64), "s2"),
        numpy_helper.from_array(np.array([3], np.int64), "s3"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([1, 68], np.int64), "conf_shape"),
    ]
    outputs = [
        helper.make_tensor_value_info("coords", TensorProto.FLOAT, [batch, 68, 2]),
        helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [batch, 68]),
    ]
    return _save(helper.make_graph(nodes, "coords", [_image_input(batch)], outputs, inits), path)


def centroid_graph(path: Path) -> Path:
    """Every point = the centroid of input channel 0 in normalised crop units (pixel centre + 0.5) / SIZE."""
    u = (np.arange(SIZE) + 0.5) / SIZE
    grid_x = np.broadcast_to(u[None, :], (SIZE, SIZE))[None, None].astype(np.float32)
    grid_y = np.broadcast_to(u[:, None], (SIZE, SIZE))[None, None].astype(np.float32)
    nodes = [
        helper.make_node("Slice", ["image", "s0", "s1", "ax1"], ["w"]),  # (N, 1, S, S)
        helper.make_node("Mul", ["w", "grid_x"], ["wx"]),
        helper.make_node("Mul", ["w", "grid_y"], ["wy"]),
        helper.make_node("Concat", ["wx", "wy"], ["wxy"], axis=1),  # (N, 2, S, S)
        helper.make_node("ReduceSum", ["wxy", "axes"], ["s"], keepdims=0),  # (N, 2)
        helper.make_node("ReduceSum", ["w", "axes"], ["total"], keepdims=0),  # (N, 1)
        helper.make_node("Div", ["s", "total"], ["c"]),
        helper.make_node("Unsqueeze", ["c", "ax1"], ["c1"]),  # (N, 1, 2)
        helper.make_node("Expand", ["c1", "coords_shape"], ["coords"]),  # (N, 68, 2)
    ]
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1], np.int64), "s1"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        numpy_helper.from_array(grid_x, "grid_x"),
        numpy_helper.from_array(grid_y, "grid_y"),
        numpy_helper.from_array(np.array([1, 68, 2], np.int64), "coords_shape"),
    ]
    out = helper.make_tensor_value_info("coords", TensorProto.FLOAT, ["N", 68, 2])
    return _save(helper.make_graph(nodes, "centroid", [_image_input()], [out], inits), path)


def gaussian_heatmaps(peaks: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """(68, H, W) Gaussians of height 1 centred on ``peaks`` (68, 2) in heatmap pixel-centre coordinates."""
    ys, xs = np.mgrid[0:HEATMAP, 0:HEATMAP]
    d2 = (xs[None] - peaks[:, 0, None, None]) ** 2 + (ys[None] - peaks[:, 1, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma**2))


def heatmap_graph(heatmaps: np.ndarray, path: Path) -> Path:
    """heatmaps = fixed (68, H, W) + 0 * mean(input): one copy per input row."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),  # (N, 1, 1, 1)
        helper.make_node("Mul", ["m", "zero"], ["m0"]),
        helper.make_node("Add", ["m0", "fixed"], ["heatmaps"]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(heatmaps.astype(np.float32)[None], "fixed"),
    ]
    out = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 68, HEATMAP, HEATMAP])
    return _save(helper.make_graph(nodes, "heatmap", [_image_input()], [out], inits), path)


def manifest_json(name: str, kind: str, **changes) -> dict:
    data = {
        "name": name,
        "onnx": f"{name}.onnx",
        "kind": kind,
        "input": {"name": "image", "size": SIZE, "colour_order": "rgb", "mean": list(MEAN), "std": list(STD)},
        "outputs": ["heatmaps"] if kind == "heatmap" else ["coords", "confidence"],
        "decode": {"method": "dark", "kernel": 5},
        "template_version": template_version(),
        "card": {"training_data": "none", "recipe": "built by the test", "metrics": "none"},
    }
    if kind == "heatmap":
        data["heatmap_size"] = HEATMAP
    data.update(changes)
    return data


def write_json(folder: Path, name: str, data: dict) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


# frame -> crop: rotation by 20 degrees, scale 0.8, shift, so the way back to the frame is exercised
_C, _S = 0.8 * np.cos(np.deg2rad(20.0)), 0.8 * np.sin(np.deg2rad(20.0))
CROP_MATRIX = np.array([[_C, -_S, 15.0], [_S, _C, -7.0]])


def uniform_crop(bgr: tuple[int, int, int], size: int = SIZE) -> AlignedCrop:
    image = np.empty((size, size, 3), np.uint8)
    image[:] = bgr
    return AlignedCrop(image=image, matrix=CROP_MATRIX, inverse=invert_affine(CROP_MATRIX))


BASE = np.random.default_rng(3).uniform(0.2, 0.8, size=(68, 2))


@pytest.fixture
def coords_model_path(tmp_path):
    coords_graph(BASE, tmp_path / "tiny_coords.onnx")
    return write_json(tmp_path, "tiny_coords", manifest_json("tiny_coords", "coords"))


def test_coords_model_preprocessing_and_mapping(coords_model_path):
    crop = uniform_crop((200, 100, 50))  # B, G, R
    with OnnxLandmarkModel(coords_model_path, backend="ort-cpu") as model:
        assert model.backend == "ort-cpu" and model.input_size == SIZE and model.name == "tiny_coords"
        (landmarks,) = model.predict([crop])
    # RGB order, (x - mean) / std: channel 0 = (R - 10) / 2, channel 1 = (G - 20) / 4, channel 2 = (B - 30) / 8.
    u = BASE + np.array([(50 - 10) / 2, (100 - 20) / 4])
    expected = transform_points(u * SIZE - 0.5, crop.inverse)
    np.testing.assert_allclose(landmarks.points, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(landmarks.confidence, 1 / (1 + np.exp(-(200 - 30) / 8)), atol=1e-6)


def test_coords_model_batch_and_larger_crops(coords_model_path):
    crops = [uniform_crop((30, 20, 10)), uniform_crop((30, 20, 10), size=2 * SIZE), uniform_crop((38, 24, 12))]
    with OnnxLandmarkModel(coords_model_path, backend="ort-cpu") as model:
        results = model.predict(crops)
    for crop, landmarks, (b, g, r) in zip(crops, results, [(30, 20, 10), (30, 20, 10), (38, 24, 12)]):
        u = BASE + np.array([(r - 10) / 2, (g - 20) / 4])
        # normalised units: a 128-pixel crop maps back through its own size
        expected = transform_points(u * crop.size - 0.5, crop.inverse)
        np.testing.assert_allclose(landmarks.points, expected, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(landmarks.confidence, 1 / (1 + np.exp(-(b - 30) / 8)), atol=1e-6)


def test_coords_model_fixed_batch_graph_is_chunked(tmp_path):
    coords_graph(BASE, tmp_path / "fixed.onnx", batch=1)
    path = write_json(tmp_path, "fixed", manifest_json("fixed", "coords"))
    crops = [uniform_crop((30, 20 + 4 * k, 10 + 2 * k)) for k in range(3)]
    with OnnxLandmarkModel(path, backend="ort-cpu") as model:
        results = model.predict(crops)
    for k, (crop, landmarks) in enumerate(zip(crops, results)):
        u = BASE + np.array([(10 + 2 * k - 10) / 2, (20 + 4 * k - 20) / 4])
        np.testing.assert_allclose(landmarks.points, transform_points(u * SIZE - 0.5, crop.inverse), atol=1e-3)


def test_flip_test_averages_with_the_mirrored_prediction(tmp_path):
    # A graph that always says BASE: the flipped pass says BASE about the mirrored face, so
    # the average is the symmetric part of BASE, and a symmetric shape comes back unchanged.
    mirrored = BASE[MIRROR].copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    symmetric = (BASE + mirrored) / 2
    crop = uniform_crop((30, 20, 10))  # R = 10, G = 20: the graph adds nothing to the base shape
    for base, expected_u in ((BASE, symmetric), (symmetric, symmetric)):
        coords_graph(base, tmp_path / "flip.onnx")
        path = write_json(tmp_path, "flip", manifest_json("flip", "coords", flip_test=True))
        with OnnxLandmarkModel(path, backend="ort-cpu") as model:
            assert model.flip_test
            raw = model.infer([crop])
            assert len(raw["coords"]) == 2
            (landmarks,) = model.decode(raw, [crop])
        np.testing.assert_allclose(landmarks.points, transform_points(expected_u * SIZE - 0.5, crop.inverse), atol=1e-3)
        assert not np.allclose(BASE, symmetric, atol=0.05)


@pytest.mark.parametrize("flip", [False, True])
def test_image_layout_reaches_the_network(tmp_path, flip):
    # A bright red square at columns 40-43, rows 10-13 (R = 210, else R = 10 = the mean: 0 after
    # normalising): its centroid must come back at pixel (41.5, 11.5) of the crop, flipped or not.
    centroid_graph(tmp_path / "centroid.onnx")
    path = write_json(tmp_path, "centroid", manifest_json("centroid", "coords", outputs=["coords"], flip_test=flip))
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[..., 2] = 10
    image[10:14, 40:44, 2] = 210
    crop = AlignedCrop(image=image, matrix=CROP_MATRIX, inverse=invert_affine(CROP_MATRIX))
    with OnnxLandmarkModel(path, backend="ort-cpu") as model:
        assert model.flip_test is flip
        (landmarks,) = model.predict([crop])
    expected = transform_points(np.array([[41.5, 11.5]]), crop.inverse)
    np.testing.assert_allclose(landmarks.points, np.repeat(expected, 68, axis=0), atol=1e-3)
    assert np.all(landmarks.confidence == 1.0)  # no confidence output


HEATMAP_PEAKS = np.random.default_rng(5).uniform(3.0, HEATMAP - 4.0, size=(68, 2))


def test_heatmap_model_decodes_known_peaks(tmp_path):
    heatmap_graph(gaussian_heatmaps(HEATMAP_PEAKS), tmp_path / "tiny_hm.onnx")
    path = write_json(tmp_path, "tiny_hm", manifest_json("tiny_hm", "heatmap", decode={"method": "dark"}))
    frame = np.random.default_rng(0).integers(0, 255, size=(100, 120, 3), dtype=np.uint8)
    crops = [warp(frame, CROP_MATRIX, SIZE), uniform_crop((1, 2, 3), size=2 * SIZE)]
    with OnnxLandmarkModel(path, backend="ort-cpu") as model:
        results = model.predict(crops)
    for crop, landmarks in zip(crops, results):
        stride = crop.size / HEATMAP  # heatmap pixel-centre h -> crop x = (h + 0.5) * stride - 0.5
        expected = transform_points((HEATMAP_PEAKS + 0.5) * stride - 0.5, crop.inverse)
        scale = np.sqrt(abs(np.linalg.det(crop.inverse[:, :2])))
        assert np.abs(landmarks.points - expected).max() < 0.02 * stride * scale  # DARK: sub-pixel
        assert np.all(landmarks.confidence > 0.5) and np.all(landmarks.confidence <= 1.0)


def test_heatmap_coordinate_mapping_exactly(tmp_path, monkeypatch):
    # The decoder stubbed to return the exact peaks: the way to the frame must be exact.
    heatmap_graph(gaussian_heatmaps(HEATMAP_PEAKS), tmp_path / "hm.onnx")
    path = write_json(tmp_path, "hm", manifest_json("hm", "heatmap"))
    seen = {}

    def decode_heatmaps(heatmaps, method="dark", kernel=11):
        seen.update(method=method, kernel=kernel, shape=heatmaps.shape)
        return np.repeat(HEATMAP_PEAKS[None], len(heatmaps), 0), np.full(heatmaps.shape[:2], 0.7)

    monkeypatch.setitem(sys.modules, "models.heatmap_decode", types.SimpleNamespace(decode_heatmaps=decode_heatmaps))
    crop = uniform_crop((0, 0, 0))
    with OnnxLandmarkModel(path, backend="ort-cpu") as model:
        (landmarks,) = model.predict([crop])
    assert seen == {"method": "dark", "kernel": 5, "shape": (1, 68, HEATMAP, HEATMAP)}
    expected = transform_points((HEATMAP_PEAKS + 0.5) * (SIZE / HEATMAP) - 0.5, crop.inverse)
    np.testing.assert_allclose(landmarks.points, expected, atol=1e-9)
    np.testing.assert_allclose(landmarks.confidence, 0.7)


def test_in_graph_decoding_in_heatmap_units(tmp_path):
    peaks = HEATMAP_PEAKS
    coords_graph(peaks, tmp_path / "ig.onnx")
    data = manifest_json("ig", "heatmap", outputs=["coords", "confidence"], decode={"in_graph": True})
    path = write_json(tmp_path, "ig", data)
    crop = uniform_crop((30, 20, 10))  # R = 10, G = 20: offset 0
    with OnnxLandmarkModel(path, backend="ort-cpu") as model:
        (landmarks,) = model.predict([crop])
    expected = transform_points((peaks + 0.5) * (SIZE / HEATMAP) - 0.5, crop.inverse)
    np.testing.assert_allclose(landmarks.points, expected, atol=1e-3)


def test_output_names_must_exist_in_the_graph(tmp_path):
    coords_graph(BASE, tmp_path / "bad.onnx")
    path = write_json(tmp_path, "bad", manifest_json("bad", "coords", outputs=["points", "confidence"]))
    with pytest.raises(ModelFileError, match=r"no output 'points'.*coords"):
        OnnxLandmarkModel(path, backend="ort-cpu")
    wrong_size = {**manifest_json("bad", "coords")["input"], "size": 96}
    path = write_json(tmp_path, "bad", manifest_json("bad", "coords", input=wrong_size))
    with pytest.raises(ModelFileError, match=r"input 'image' has shape"):
        OnnxLandmarkModel(path, backend="ort-cpu")


# --- manifest ---------------------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path, coords_model_path):
    manifest = load_manifest(coords_model_path)
    assert isinstance(manifest, ModelManifest)
    assert manifest.onnx_path == tmp_path / "tiny_coords.onnx" and manifest.coords_unit == "normalized"
    assert manifest.card.recipe == "built by the test"
    again = load_manifest(write_manifest(manifest, tmp_path / "tiny_coords.json"))
    assert again == manifest
    trained = dataclasses.replace(manifest, card=dataclasses.replace(manifest.card, training="run x: 2 epochs, 0.1 h"))
    assert load_manifest(write_manifest(trained, tmp_path / "tiny_coords.json")).card.training == "run x: 2 epochs, 0.1 h"


GOOD_INPUT = {"name": "image", "size": SIZE, "colour_order": "rgb", "mean": [0, 0, 0], "std": [1, 1, 1]}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"min_confidence": "high"}, "min_confidence"),
        ({"kind": "points"}, "kind"),
        ({"kind": None}, "kind"),
        ({"input": {"name": "image", "size": SIZE, "colour_order": "rgb", "mean": [0, 0, 0]}}, "input.std"),
        ({"input": {**GOOD_INPUT, "size": "64"}}, "input.size"),
        ({"input": {**GOOD_INPUT, "size": 0}}, "input.size"),
        ({"input": {**GOOD_INPUT, "mean": [0, 0]}}, "input.mean"),
        ({"input": {**GOOD_INPUT, "std": [1, 0, 1]}}, "input.std"),
        ({"input": {**GOOD_INPUT, "colour_order": "yuv"}}, "input.colour_order"),
        ({"input": [1, 2]}, "input"),
        ({"outputs": []}, "outputs"),
        ({"decode": {"kernel": 4}}, "decode.kernel"),
        ({"decode": {"method": "soft-argmax"}}, "decode.method"),
        ({"flip_test": "yes"}, "flip_test"),
        ({"onnx": "../elsewhere/model.onnx"}, "onnx"),
    ],
)
def test_manifest_errors_name_file_and_field(tmp_path, change, field):
    data = manifest_json("m", "coords")
    data.update(change)
    path = write_json(tmp_path, "m", data)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(path) in str(info.value) and repr(field) in str(info.value)


def test_manifest_missing_fields(tmp_path):
    for field in ("name", "onnx", "kind", "input", "outputs", "template_version"):
        data = manifest_json("m", "coords")
        del data[field]
        path = write_json(tmp_path, "m", data)
        with pytest.raises(ManifestError, match=rf"m\.json: field '{field}' is missing"):
            load_manifest(path, check_onnx=False)
    data = manifest_json("m", "heatmap")
    del data["heatmap_size"]
    with pytest.raises(ManifestError, match="'heatmap_size' is missing"):
        load_manifest(write_json(tmp_path, "m", data), check_onnx=False)


def test_manifest_file_problems(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text('{"name": ')
    with pytest.raises(ManifestError, match=r"broken\.json: not valid JSON"):
        load_manifest(tmp_path / "broken.json")
    path = write_json(tmp_path, "lonely", manifest_json("lonely", "coords"))
    with pytest.raises(ModelFileError, match=r"lonely\.onnx"):
        load_manifest(path)


def test_template_mismatch_is_refused(tmp_path):
    coords_graph(BASE, tmp_path / "old.onnx")
    path = write_json(tmp_path, "old", manifest_json("old", "coords", template_version="tpl-00000000"))
    with pytest.raises(ManifestError, match="template_version"):
        OnnxLandmarkModel(path, backend="ort-cpu")


# --- registry ---------------------------------------------------------------------------------------


def _peer_models() -> list[str]:
    """The peers the registry offers here: both in the full stack, none in the core stack."""
    return [name for name, module in (("mediapipe68", "mediapipe"), ("dlib68", "dlib"))
            if full_stack() or not missing_modules((module,))]


def test_registry_lists_installed_models(tmp_path):
    peers = _peer_models()
    assert available_models(tmp_path) == peers  # offered only where the peers extra is installed
    assert default_model(tmp_path) == "mediapipe68"
    coords_graph(BASE, tmp_path / "mnv2_sdd.onnx")
    write_json(tmp_path, "mnv2_sdd", manifest_json("mnv2_sdd", "coords"))
    write_json(tmp_path, "r18_ffld", manifest_json("r18_ffld", "coords"))  # ONNX file missing
    (tmp_path / "junk.json").write_text("[]")
    assert available_models(tmp_path) == ["mnv2_sdd", *peers]
    assert default_model(tmp_path) == "mnv2_sdd"
    messages = []
    with load_landmark_model("mnv2_sdd", backend="ort-cpu", on_message=messages.append, assets_dir=tmp_path) as model:
        assert isinstance(model, OnnxLandmarkModel) and model.backend == "ort-cpu"
        assert not model.flip_test and model.name == "mnv2_sdd"
    with load_landmark_model("mnv2_sdd+flip", backend="ort-cpu", assets_dir=tmp_path) as model:
        assert model.flip_test and model.name == "mnv2_sdd+flip"
    with pytest.raises(UnknownModelError):
        load_landmark_model("mediapipe68+flip", assets_dir=tmp_path)
    with pytest.raises(ModelFileError, match=r"r18_ffld\.onnx"):
        load_landmark_model("r18_ffld", assets_dir=tmp_path)


def test_registry_unknown_and_uninstalled_names(tmp_path):
    available = ", ".join(_peer_models()) or "none"
    with pytest.raises(UnknownModelError, match=rf"unknown landmark model 'hrnet'; available: {available}$"):
        load_landmark_model("hrnet", assets_dir=tmp_path)
    with pytest.raises(ModelFileError, match=rf"'mnv2_sdd' is not installed.*available: {available}$"):
        load_landmark_model("mnv2_sdd", assets_dir=tmp_path)


def test_without_mediapipe_the_peers_are_not_offered_and_the_message_says_how(talking_clip):
    """As in the core install (mediapipe made unimportable here, so both stacks run it): mediapipe68 is
    not listed, and asking for it or for bench --vs-mediapipe stops (exit 2) naming the peers extra."""
    code = (
        "import sys\nsys.modules['mediapipe'] = None\n"
        "from models.registry import available_models\n"
        "assert 'mediapipe68' not in available_models(), available_models()\n"
        "from app.cli import main\n"
        f"print(main(['track', {str(talking_clip)!r}, '--model', 'mediapipe68', '--max-frames', '2']))\n"
        f"print(main(['bench', {str(talking_clip)!r}, '--vs-mediapipe', '--max-frames', '2']))\n"
        "assert 'mediapipe' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "2"], done.stdout
    hints = [line for line in done.stderr.splitlines() if "pip install -e '.[peers]'" in line]
    assert len(hints) == 2 and "mediapipe68" in hints[0] and "--vs-mediapipe" in hints[1], done.stderr


@pytest.mark.peers("mediapipe")
def test_registry_mediapipe68_ignores_other_backends():
    messages = []
    with load_landmark_model("mediapipe68", backend="tensorrt", on_message=messages.append) as model:
        assert isinstance(model, MediaPipe68) and model.backend == "mediapipe"
    assert messages and "tensorrt" in messages[0]


def test_app_side_modules_do_not_import_torch():
    code = (
        "import sys, models.registry, models.onnx_landmarks, models.mediapipe68, models.manifest\n"
        "import models.heatmap_decode\n"
        "models.registry.available_models()\n"
        + ("models.registry.load_landmark_model('mediapipe68').close()\n"
           if full_stack() or not missing_modules(("mediapipe",)) else "")  # mediapipe68: the peers extra
        + "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

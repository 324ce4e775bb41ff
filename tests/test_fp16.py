"""engines/fp16.py: the FP16 converter keeps computed resize scales in float32, converts casts, clips
out-of-range weights, and the shipped networks run in FP16 close to FP32 in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines import trt
from tests.toy_conv import BIAS, WEIGHT, conv_model, images, model_path  # noqa: F401 (model_path: a fixture)

PROJECT_ROOT = Path(__file__).resolve().parent.parent




# --- FP16 converter ------------------------------------------------------------------------


def mixed_model() -> onnx.ModelProto:
    """Conv + ReLU, Resize x2 (float32 scales), Mul by a Constant, Cast(to=FLOAT) of an int.

    The Constant holds a tensor, as torch's exporter writes every constant (ONNX Runtime's FP16
    converter leaves ``value_float`` attributes float32 while typing their output float16).
    """
    nodes = [
        helper.make_node("Conv", ["image", "W", "B"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Resize", ["relu", "", "scales"], ["up"], mode="linear"),
        helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Mul", ["up", "half"], ["scaled"]),
        helper.make_node("Shape", ["scaled"], ["shape"], start=2, end=3),
        helper.make_node("Cast", ["shape"], ["side"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["scaled", "side"], ["heatmap"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", 4, 16, 16])],
        [
            numpy_helper.from_array(WEIGHT, "W"),
            numpy_helper.from_array(BIAS, "B"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def dynamic_scales_model(direct_cast: bool) -> onnx.ModelProto:
    """Resize whose scales are computed in the graph, as exporters write a scale factor.

    ``direct_cast``: scales = Cast(to=FLOAT) of a constant int64 tensor (stays float32);
    otherwise scales = Concat(ones, Div(Cast(target side), Cast(input side))) (becomes float16
    and needs a cast back to float32 before Resize).
    """
    nodes = [helper.make_node("Relu", ["image"], ["relu"])]
    if direct_cast:
        nodes.append(helper.make_node("Cast", ["int_scales"], ["scales"], to=TensorProto.FLOAT))
    else:
        nodes += [
            helper.make_node("Shape", ["image"], ["side"], start=2, end=4),
            helper.make_node("Cast", ["side"], ["side_f"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["target"], ["target_f"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["target_f", "side_f"], ["hw_scales"]),
            helper.make_node("Concat", ["ones", "hw_scales"], ["scales"], axis=0),
        ]
    nodes.append(helper.make_node("Resize", ["relu", "", "scales"], ["up"], mode="nearest"))
    graph = helper.make_graph(
        nodes,
        "dynamic_scales",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("up", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "int_scales"),
            numpy_helper.from_array(np.array([16, 16], np.int64), "target"),
            numpy_helper.from_array(np.ones(2, np.float32), "ones"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def fp16(model: onnx.ModelProto, tmp_path: Path) -> onnx.ModelProto:
    """``trt.fp16_model`` of an in-memory model (it reads a file, as ``build_engine`` does)."""
    path = tmp_path / f"{model.graph.name}.onnx"
    onnx.save_model(model, str(path))
    return trt.fp16_model(path)


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values} | {
        i.name: i.data_type for i in inferred.graph.initializer}


@pytest.mark.parametrize("direct_cast", [True, False], ids=["cast-only", "computed"])
def test_fp16_computed_resize_scales_stay_float32(direct_cast: bool, tmp_path: Path) -> None:
    model = dynamic_scales_model(direct_cast)
    half = fp16(model, tmp_path)
    resize = next(n for n in half.graph.node if n.op_type == "Resize")
    assert value_types(half)[resize.input[2]] == TensorProto.FLOAT
    image = images(2)
    [want], [got] = run_ort(model, {"image": image}), run_ort(half, {"image": image})
    assert got.shape == want.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def run_ort(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.mark.parametrize("build", [conv_model, mixed_model], ids=["conv", "resize-constant-cast"])
def test_fp16_conversion_matches_fp32_in_ort(build, tmp_path: Path) -> None:
    model = build()
    half = fp16(model, tmp_path)
    onnx.checker.check_model(half, full_check=True)
    assert [v.type.tensor_type.elem_type for v in half.graph.input] == [TensorProto.FLOAT]
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in half.graph.output)
    dtypes = {init.name: init.data_type for init in half.graph.initializer}
    assert dtypes["W"] == dtypes["B"] == TensorProto.FLOAT16
    image = images(3)
    want, got = run_ort(model, {"image": image}), run_ort(half, {"image": image})
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-2, atol=2e-2 * float(np.abs(w).max()))
        assert not np.array_equal(g, w)  # really computed in half precision


def test_fp16_keeps_resize_scales_float32_and_converts_casts(tmp_path: Path) -> None:
    half = fp16(mixed_model(), tmp_path)
    types = value_types(half)
    resize = next(n for n in half.graph.node if n.op_type == "Resize")
    assert types[resize.input[2]] == TensorProto.FLOAT
    assert types["side"] == TensorProto.FLOAT16  # the graph's own Cast(to=FLOAT) now yields float16
    assert types["half"] == TensorProto.FLOAT16  # a Constant
    assert types["heatmap"] == TensorProto.FLOAT  # the output is float32 again


def test_fp16_clips_out_of_range_weights(tmp_path: Path) -> None:
    model = conv_model()
    big = WEIGHT.copy()
    big[0, 0, 0, 0] = 1e6
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(big, "W"))
    half = fp16(model, tmp_path)
    weight = numpy_helper.to_array(next(i for i in half.graph.initializer if i.name == "W"))
    assert weight[0, 0, 0, 0] == np.float16(65504)


@pytest.mark.parametrize("name", ["r18_ffld", "mnv2_sdd"])
def test_fp16_shipped_networks_match_fp32_in_ort(name: str, tmp_path: Path) -> None:
    """Both shipped networks (r18_ffld with its three GridSample nodes) on real aligned faces:
    the FP16 graph's landmarks stay within a fraction of a crop pixel of the FP32 graph's."""
    import cv2

    from models.align import align_from_landmarks
    from models.datasets import TEST_SET, list_annotated, resolve_dataset
    from models.onnx_landmarks import OnnxLandmarkModel
    from models.registry import ASSETS_DIR

    with OnnxLandmarkModel(ASSETS_DIR / f"{name}.json", backend="ort-cpu", flip_test=False) as model:
        items = list_annotated(resolve_dataset(TEST_SET))[:: 40]
        crops = [align_from_landmarks(cv2.imread(str(i.image_path)), i.load_points(), model.input_size)
                 for i in items]
        feed = {model.manifest.input_name: model.preprocess(crops)}
        fp32 = onnx.load_model(str(model.manifest.onnx_path))
        half = trt.fp16_model(model.manifest.onnx_path)
        assert sum(n.op_type == "GridSample" for n in half.graph.node) == (3 if name == "r18_ffld" else 0)
        points = []
        for graph in (fp32, half):
            out = run_ort(graph, feed)
            assert all(o.dtype == np.float32 for o in out)
            points.append(model.normalised_points(dict(zip((o.name for o in graph.graph.output), out)))[0])
    error = np.linalg.norm(points[1] - points[0], axis=-1) * model.input_size  # crop pixels
    assert error.mean() < 0.1 and error.max() < 0.5, (error.mean(), error.max())

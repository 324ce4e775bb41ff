"""A toy ONNX network for the engines tests: image (N, 3, 8, 8) -> Conv 3x3 + ReLU -> features and a
pooled copy, with its numpy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(7)
WEIGHT = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
BIAS = RNG.standard_normal(4).astype(np.float32)

def conv_model() -> onnx.ModelProto:
    """image (N, 3, 8, 8) -> Conv 3x3 pad 1 + ReLU -> features (N, 4, 8, 8) and pooled (N, 4, 1, 1)."""
    nodes = [
        helper.make_node("Conv", ["image", "W", "B"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, 8, 8]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 4, 1, 1]),
        ],
        [numpy_helper.from_array(WEIGHT, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def reference(image: np.ndarray) -> dict[str, np.ndarray]:
    padded = np.pad(image.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((image.shape[0], 4, 8, 8))
    for dy in range(3):
        for dx in range(3):
            conv += np.einsum("nchw,oc->nohw", padded[:, :, dy : dy + 8, dx : dx + 8], WEIGHT[:, :, dy, dx])
    features = np.maximum(conv + BIAS[None, :, None, None], 0)
    return {"features": features, "pooled": features.mean(axis=(2, 3), keepdims=True)}


@pytest.fixture()
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "conv.onnx"
    onnx.save_model(conv_model(), str(path))
    return path


def images(batch: int) -> np.ndarray:
    return RNG.standard_normal((batch, 3, 8, 8)).astype(np.float32)


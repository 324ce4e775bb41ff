"""engines.flops: multiply-adds of an ONNX graph from its inferred shapes, and the CPU's peak."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engines.flops import cpu_peak_gflops, graph_flops


def test_conv_transposed_conv_and_gemm_are_counted_as_two_flops_per_multiply_add(tmp_path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.random((8, 3, 3, 3), dtype=np.float32), "w1"),
             numpy_helper.from_array(rng.random((8, 1, 3, 3), dtype=np.float32), "w2"),  # depthwise
             numpy_helper.from_array(rng.random((8, 4, 2, 2), dtype=np.float32), "w3"),  # transposed
             numpy_helper.from_array(rng.random((10, 4 * 32 * 32), dtype=np.float32), "w4")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("ConvTranspose", ["b", "w3"], ["c"], strides=[2, 2]),
             helper.make_node("Slice", ["c", "s0", "s1", "ax"], ["d"]),
             helper.make_node("Flatten", ["d"], ["e"]),
             helper.make_node("Gemm", ["e", "w4"], ["y"], transB=1)]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s0", [0]), ("s1", [4]), ("ax", [1]))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    expected = 2 * (8 * 16 * 16 * 3 * 9      # conv: every output element x Cin x k x k
                    + 8 * 16 * 16 * 1 * 9    # depthwise: Cin/group = 1
                    + 8 * 16 * 16 * 4 * 4    # transposed: every input element x Cout/group x k x k
                    + 10 * 4 * 32 * 32)      # gemm
    assert graph_flops(path) == expected


def test_the_shipped_networks_cost_what_their_designs_say():
    from models.registry import ASSETS_DIR

    assert abs(graph_flops(ASSETS_DIR / "sgfa.onnx") / 1e9 - 3.67) < 0.02  # docs/DESIGN.md: 3.67 GFLOPs


def test_the_peak_follows_the_cores_asked_for():
    one, two = cpu_peak_gflops(1), cpu_peak_gflops(2)
    assert one.fp32_gflops > 0 and abs(two.fp32_gflops - 2 * one.fp32_gflops) < 1e-6
    assert one.int8_gops >= 2 * one.fp32_gflops

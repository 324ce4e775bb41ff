"""Arithmetic of an ONNX graph at batch 1, and this CPU's peak, for "fraction of peak" figures.

``graph_flops(path)`` counts the multiply-adds of the layers that hold nearly all of a
convolutional network's work (Conv, ConvTranspose, Gemm, MatMul), as 2 FLOPs each, from the
shapes ONNX shape inference gives at batch 1. Element-wise layers, pooling and resampling are
left out (a few percent of these networks).

``cpu_peak_gflops()`` is the textbook peak: cores x clock x operations per cycle per core, with
two fused-multiply-add units of the widest vector width the CPU reports (AVX-512: 16 float32
lanes, AVX2: 8), 2 FLOPs per lane and unit; INT8 with VNNI (``vpdpbusd``: 4 multiply-adds per
32-bit lane) 4x that, without VNNI 2x (``vpmaddubsw`` pairs). The clock is ``cpu MHz`` of
/proc/cpuinfo (what a VM reports; turbo not counted), so a network can come near or, with turbo,
above 100%; some cores (AMD Zen 4) run AVX-512 on 256-bit units and reach half the figure.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def graph_flops(path: str | Path) -> float:
    """FLOPs (2 per multiply-add) of one batch-1 call of the ONNX graph at ``path``."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    graph = model.graph
    for inp in graph.input:  # batch 1 wherever the batch dimension is free
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    total = 0.0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        out = shapes.get(node.output[0], ())
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            w = shapes.get(node.input[1], ())
            if len(w) < 3 or not out or 0 in out:
                continue
            kernel = int(np.prod(w[2:]))
            if node.op_type == "Conv":  # weight (Cout, Cin/g, k...): every output element
                total += 2.0 * np.prod(out) * w[1] * kernel
            else:  # weight (Cin, Cout/g, k...): every input element
                x = shapes.get(node.input[0], ())
                if x and 0 not in x:
                    total += 2.0 * np.prod(x) * w[1] * kernel
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0], ())
            if not out or not a or 0 in out or 0 in a:
                continue
            inner = a[-2] if node.op_type == "Gemm" and attrs.get("transA", 0) else a[-1]
            total += 2.0 * np.prod(out) * inner
    return float(total)


@dataclass(frozen=True)
class CpuPeak:
    cores: int
    ghz: float
    fp32_gflops: float
    int8_gops: float
    note: str


def cpu_peak_gflops(threads: int | None = None) -> CpuPeak:
    """This CPU's textbook float32 and int8 peak for ``threads`` cores (default: all)."""
    flags: set[str] = set()
    model, mhz = "", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
            elif key == "flags" and not flags:
                flags = set(value.split())
    except (OSError, ValueError):
        pass
    cores = threads or os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    note = f"{model or 'unknown CPU'}, {mhz / 1000:.2f} GHz reported, {cores} core(s)"
    per_cycle = 2 * 2 * lanes  # two FMA units, 2 FLOPs per lane
    int8_factor = 4 if ("avx512_vnni" in flags or "avx_vnni" in flags) else 2
    note += f", {per_cycle} float32 FLOPs/cycle, int8 x{int8_factor}"
    ghz = mhz / 1000.0
    fp32 = cores * ghz * per_cycle
    return CpuPeak(cores, ghz, fp32, fp32 * int8_factor, note)

"""Convert an FP32 ONNX model to FP16 weights and activations, keeping float32 inputs and outputs.

TensorRT 11 builds only strongly typed networks (``BuilderFlag.FP16`` is gone), so FP16
has to be in the ONNX graph itself. This converter does the small part our networks need:

* float32 initializers and ``Constant`` / ``ConstantOfShape`` values become float16
  (values beyond the float16 range are clipped to +-65504, with a warning);
* ``Cast(to=FLOAT)`` and ``dtype=FLOAT`` attributes become FLOAT16;
* every float32 graph input gets a ``Cast`` to float16 and every float32 output a ``Cast``
  back, so callers still feed and read float32;
* inputs that the ONNX spec types as float32 whatever the node computes in (Resize /
  Upsample scales, NonMaxSuppression boxes, scores and thresholds) stay float32: constants
  used only there are left alone, anything else gets a ``Cast`` back to float32.

Control-flow ops (If, Loop, Scan: graphs inside attributes) are refused. A converted model
runs in ONNX Runtime on CPU too, which is how the tests check it against the FP32 model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FP16_MAX = float(np.finfo(np.float16).max)


def _fp32_only_inputs(op_type: str, opset: int) -> frozenset[int]:
    """Input slots of ``op_type`` that the ONNX spec types as tensor(float) only."""
    if op_type == "Resize":
        return frozenset({1} if opset < 11 else {2})
    if op_type == "Upsample":
        return frozenset({1})
    if op_type == "NonMaxSuppression":
        return frozenset({0, 1, 3, 4})
    return frozenset()


def convert_float_to_float16(model):
    """Return an FP16 copy of ``model`` (an ``onnx.ModelProto``) with float32 I/O kept."""
    import onnx
    from onnx import AttributeProto, TensorProto, helper, numpy_helper

    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    graph = converted.graph
    opset = next((o.version for o in converted.opset_import if o.domain in ("", "ai.onnx")), 1)

    for node in graph.node:
        for attr in node.attribute:
            if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                raise ValueError(f"FP16 conversion does not handle control-flow op {node.op_type} (node {node.name!r})")

    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    taken |= {t.name for t in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output}

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    def is_fp32_slot(node, index: int) -> bool:
        return node.domain in ("", "ai.onnx") and index in _fp32_only_inputs(node.op_type, opset)

    output_names = {v.name for v in graph.output}
    fp32_uses, other_uses = set(), set(output_names)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                (fp32_uses if is_fp32_slot(node, i) else other_uses).add(name)
    only_fp32 = fp32_uses - other_uses  # read only where float32 is mandatory: leave such constants alone
    still_fp32 = {v.name for v in graph.input}  # tensors that are float32 after conversion

    producers = {name for node in graph.node for name in node.output}
    for init in graph.initializer:
        if init.data_type != FLOAT:
            continue
        if init.name in output_names:
            raise ValueError(f"FP16 conversion does not handle initializer {init.name!r} that is also a graph output")
        if init.name in only_fp32:
            still_fp32.add(init.name)
        else:
            init.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init), init.name), init.name))

    for node in graph.node:  # nodes whose output type comes from an attribute, not from their inputs
        sets_type = node.op_type in ("Constant", "ConstantOfShape") or any(
            attr.name in ("to", "dtype") for attr in node.attribute
        )
        if node.domain not in ("", "ai.onnx") or not sets_type:
            continue
        if all(name in only_fp32 for name in node.output):
            still_fp32.update(node.output)  # e.g. a Constant or Cast(to=FLOAT) feeding Resize scales
            continue
        if node.op_type == "Constant":
            _constant_to_fp16(node, helper, numpy_helper, FLOAT)
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(attr.t), node.name)))
        else:
            for attr in node.attribute:
                if attr.name in ("to", "dtype") and attr.type == AttributeProto.INT and attr.i == FLOAT:
                    attr.i = FLOAT16

    # float32 graph inputs: cast to float16 once, rewire everything but float32-only slots
    head = []
    for value in graph.input:
        if value.type.tensor_type.elem_type != FLOAT or value.name in {t.name for t in graph.initializer}:
            continue
        half = fresh(f"{value.name}_fp16")
        head.append(helper.make_node("Cast", [value.name], [half], to=FLOAT16, name=fresh(f"cast_in_{value.name}")))
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == value.name and not is_fp32_slot(node, i):
                    node.input[i] = half

    # float32 graph outputs: the producer writes float16, a final Cast restores the name and type
    tail = []
    for value in graph.output:
        if value.type.tensor_type.elem_type != FLOAT or value.name not in producers:
            continue
        half = fresh(f"{value.name}_fp16")
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == value.name:
                    node.output[i] = half
            for i, name in enumerate(node.input):
                if name == value.name:
                    node.input[i] = half
        tail.append(helper.make_node("Cast", [half], [value.name], to=FLOAT, name=fresh(f"cast_out_{value.name}")))

    # float32-only slots fed by a (now float16) computed tensor: cast back to float32 just before use
    body, back_casts = [], {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name and is_fp32_slot(node, i) and name not in still_fp32:
                if name not in back_casts:
                    back_casts[name] = fresh(f"{name}_fp32")
                    body.append(
                        helper.make_node("Cast", [name], [back_casts[name]], to=FLOAT, name=fresh(f"cast_fp32_{name}"))
                    )
                node.input[i] = back_casts[name]
        body.append(node)

    del graph.node[:]
    graph.node.extend(head + body + tail)
    del graph.value_info[:]  # stale float32 types; re-inferred below
    converted = onnx.shape_inference.infer_shapes(converted)
    onnx.checker.check_model(converted)
    return converted


def convert_file(src: str | Path, dst: str | Path) -> Path:
    """Convert the ONNX file ``src`` and save the FP16 model at ``dst``."""
    import onnx

    onnx.save_model(convert_float_to_float16(onnx.load_model(str(src))), str(dst))
    return Path(dst)


def _to_fp16(array: np.ndarray, name: str) -> np.ndarray:
    finite = np.isfinite(array)
    too_big = int(np.count_nonzero(finite & (np.abs(array) > FP16_MAX)))
    if too_big:
        log.warning("%s: %d value(s) beyond the float16 range clipped to +-%g", name, too_big, FP16_MAX)
        array = np.where(finite, np.clip(array, -FP16_MAX, FP16_MAX), array)
    return array.astype(np.float16)


def _constant_to_fp16(node, helper, numpy_helper, FLOAT) -> None:
    for attr in list(node.attribute):
        if attr.name == "value" and attr.t.data_type == FLOAT:
            attr.t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(attr.t), node.output[0])))
        elif attr.name in ("value_float", "value_floats"):
            values = np.array(attr.f if attr.name == "value_float" else list(attr.floats), dtype=np.float32)
            node.attribute.remove(attr)
            node.attribute.append(
                helper.make_attribute("value", numpy_helper.from_array(_to_fp16(values, node.output[0])))
            )

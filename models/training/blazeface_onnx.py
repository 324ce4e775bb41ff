"""MediaPipe's short-range BlazeFace (TFLite, inside the mediapipe 0.10.21 wheel) as an ONNX file.

``python -m models.training.blazeface_onnx [--tflite FILE] [--out assets/blazeface/...onnx]``
reads the TFLite graph with the ``tflite`` package (as ``models.training.imagenet_init`` reads
MobileNetV2) and writes the same graph with ``onnx.helper``, operator by operator: float16
weights (DEQUANTIZE) become float32 initialisers, NHWC convolutions become NCHW ones with
TensorFlow's SAME padding written out (stride-2 layers pad bottom/right more), channel PADs,
ADD + RELU, 2x2 max pools, and the two head reshapes (through NHWC so the anchor order is kept).

The ONNX input is ``image`` N x 128 x 128 x 3 float32, BGR 0..255 (what ``cv2.warpAffine``
gives); inside, channels are reversed to RGB and scaled to [-1, 1] as MediaPipe's
ImageToTensorCalculator does. Outputs: ``regressors`` N x 896 x 16 (box and six keypoints,
anchor-relative, 128 px units) and ``classificators`` N x 896 x 1 (score logits), unchanged;
``models.detectors.blazeface`` decodes them. Needs the ``train`` extra (tflite) and mediapipe
only for the default input path; the run time needs neither.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from models.datasets import PROJECT_ROOT

OUT_PATH = PROJECT_ROOT / "assets" / "blazeface" / "face_detection_short_range.onnx"
OPSET = 17
_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8, 3: np.uint8}


def default_tflite() -> Path:
    """The short-range model inside the installed mediapipe wheel."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mediapipe is not installed: pass --tflite FILE (face_detection_short_range.tflite)")
    return Path(list(spec.submodule_search_locations)[0]) / "modules" / "face_detection" / "face_detection_short_range.tflite"


def _builtin_options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _same_pads(in_hw, kernel, stride, padding_valid: bool) -> list[int]:
    """ONNX pads [top, left, bottom, right] for TensorFlow SAME (or VALID) padding."""
    if padding_valid:
        return [0, 0, 0, 0]
    begin, end = [], []
    for size, k, s in zip(in_hw, kernel, stride):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


class _Converter:
    def __init__(self, buf: bytes) -> None:
        import tflite

        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.graph = self.model.Subgraphs(0)
        self.nodes, self.inits, self.consts = [], [], {}

    def tensor(self, index: int):
        return self.graph.Tensors(int(index))

    def name(self, index: int) -> str:
        return self.tensor(index).Name().decode()

    def shape(self, index: int) -> list[int]:
        return [int(v) for v in self.tensor(index).ShapeAsNumpy()]

    def data(self, index: int) -> np.ndarray | None:
        """A constant tensor's values (dequantised weights included), or None for an activation."""
        name = self.name(index)
        if name in self.consts:
            return self.consts[name]
        t = self.tensor(index)
        raw = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw.size == 0:
            return None
        return np.frombuffer(raw.tobytes(), dtype=_TFLITE_DTYPES[t.Type()]).reshape(self.shape(index))

    def init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))

    def activation(self, out: str, fused: int) -> None:
        """Apply a fused activation in place of ``out`` (renaming the raw result)."""
        if fused == 0:
            return
        if fused != 1:
            raise ValueError(f"fused activation {fused} is not converted (only NONE and RELU occur in BlazeFace)")
        raw = out + "__pre_relu"
        self.nodes[-1].output[0] = raw
        self.node("Relu", [raw], out)

    def convert(self) -> "onnx.ModelProto":  # noqa: F821
        import tflite
        from onnx import TensorProto, helper
        from tflite.utils import opcode2name

        (inp,) = self.graph.InputsAsNumpy()
        _, height, width, channels = self.shape(inp)
        # BGR 0..255 NHWC in -> RGB [-1, 1] NCHW, the network's own input.
        self.node("Transpose", ["image"], "image_nchw", perm=[0, 3, 1, 2])
        self.node("Slice", ["image_nchw", self.init("rgb_starts", np.array([-1], np.int64)),
                            self.init("rgb_ends", np.array([-(2 ** 62)], np.int64)),
                            self.init("rgb_axes", np.array([1], np.int64)),
                            self.init("rgb_steps", np.array([-1], np.int64))], "image_rgb")
        self.node("Mul", ["image_rgb", self.init("scale", np.array(1 / 127.5, np.float32))], "image_scaled")
        self.node("Sub", ["image_scaled", self.init("one", np.array(1.0, np.float32))], self.name(inp))
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            kind = opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            ins = [int(t) for t in op.InputsAsNumpy() if t >= 0]
            out = self.name(op.OutputsAsNumpy()[0])
            if kind == "DEQUANTIZE":
                self.consts[out] = self.data(ins[0]).astype(np.float32)
            elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                depthwise = kind == "DEPTHWISE_CONV_2D"
                opts = _builtin_options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
                weight, bias = self.data(ins[1]), self.data(ins[2])
                # NHWC kernels -> OIHW; depthwise [1, kh, kw, C] -> [C, 1, kh, kw]
                weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
                stride = [opts.StrideH(), opts.StrideW()]
                dilation = [opts.DilationHFactor(), opts.DilationWFactor()]
                if dilation != [1, 1]:
                    raise ValueError(f"{out}: dilated convolutions are not converted")
                pads = _same_pads(self.shape(ins[0])[1:3], weight.shape[2:], stride, opts.Padding() == 1)
                self.node("Conv", [self.name(ins[0]), self.init(out + "/W", weight), self.init(out + "/B", bias)], out,
                          kernel_shape=list(weight.shape[2:]), strides=stride, pads=pads,
                          group=weight.shape[0] if depthwise else 1)
                self.activation(out, opts.FusedActivationFunction())
            elif kind == "ADD":
                opts = _builtin_options(op, tflite.AddOptions)
                self.node("Add", [self.name(t) for t in ins], out)
                self.activation(out, opts.FusedActivationFunction())
            elif kind == "RELU":
                self.node("Relu", [self.name(ins[0])], out)
            elif kind == "MAX_POOL_2D":
                opts = _builtin_options(op, tflite.Pool2DOptions)
                kernel, stride = [opts.FilterHeight(), opts.FilterWidth()], [opts.StrideH(), opts.StrideW()]
                pads = _same_pads(self.shape(ins[0])[1:3], kernel, stride, opts.Padding() == 1)
                self.node("MaxPool", [self.name(ins[0])], out, kernel_shape=kernel, strides=stride, pads=pads)
                self.activation(out, opts.FusedActivationFunction())
            elif kind == "PAD":
                nhwc = self.data(ins[1]).astype(np.int64)  # [4, 2]: (before, after) per NHWC axis
                nchw = nhwc[[0, 3, 1, 2]]
                self.node("Pad", [self.name(ins[0]), self.init(out + "/pads", np.concatenate([nchw[:, 0], nchw[:, 1]]))],
                          out, mode="constant")
            elif kind == "RESHAPE":
                source = self.name(ins[0])
                if len(self.shape(ins[0])) == 4:  # back to NHWC first, so the anchors keep TFLite's order
                    self.node("Transpose", [source], out + "/nhwc", perm=[0, 2, 3, 1])
                    source = out + "/nhwc"
                target = np.array([-1] + self.shape(op.OutputsAsNumpy()[0])[1:], np.int64)
                self.node("Reshape", [source, self.init(out + "/shape", target)], out)
            elif kind == "CONCATENATION":
                opts = _builtin_options(op, tflite.ConcatenationOptions)
                self.node("Concat", [self.name(t) for t in ins], out, axis=int(opts.Axis()))
                self.activation(out, opts.FusedActivationFunction())
            else:
                raise ValueError(f"TFLite operator {kind} (operator {i}) is not converted")
        outputs = [
            helper.make_tensor_value_info(self.name(t), TensorProto.FLOAT, ["N"] + self.shape(t)[1:])
            for t in self.graph.OutputsAsNumpy()
        ]
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", height, width, channels])
        graph = helper.make_graph(self.nodes, "blazeface_short_range", [image], outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facetrack68")
        model.ir_version = 8
        return model


def convert(tflite_path: str | Path) -> "onnx.ModelProto":  # noqa: F821
    """The ONNX model of a BlazeFace TFLite file (checked by ``onnx.checker``)."""
    import onnx

    model = _Converter(Path(tflite_path).read_bytes()).convert()
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflite", type=Path, help="face_detection_short_range.tflite (default: the mediapipe wheel's)")
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    args = parser.parse_args(argv)
    import onnx

    source = args.tflite or default_tflite()
    model = convert(source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out)
    print(f"{source} (sha256 {hashlib.sha256(source.read_bytes()).hexdigest()})")
    print(f"-> {args.out} (sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}, {args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

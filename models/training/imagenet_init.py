"""ImageNet weights for our MobileNetV2, converted from the shared TFLite files.

``python -m models.training.imagenet_init [--tflite FILE] [--image cat_224.png]`` converts the
file and prints the top classes of the check image (the conversion is right when a cat class
comes first).

The TFLite file (``$FACETRACK_DATA/../models/imagenet``, read its README) holds 52 quantised
convolutions in the standard MobileNetV2 order (stem, 17 inverted-residual blocks, the 1x1
conv to 1280) and a 1x1 classifier to 1001 classes. For each convolution we dequantise the
weights (``scale * (q - zero_point)``, per output channel), move them from NHWC
(``[out, kh, kw, in]``; depthwise ``[1, kh, kw, channels]``) to torch's OIHW, and take the
int32 bias (scale = input scale x weight scale) as float.

Batch norm is folded into those weights and biases, while our network has a BN after every
convolution. How our BN layers start (``bn_from_data``): on a batch of training images we
measure each convolution's per-channel output mean ``m`` and standard deviation ``s`` (without
its bias) and set ``running_mean = m``, ``running_var = s^2``, ``gamma = s``, ``beta = m + bias``.
The BN is then exactly "add the bias" in eval mode, and nearly so in train mode on batches like
the measured one, so fine-tuning starts from the ImageNet function with BN statistics that fit
our data. Without data, ``gamma = 1``, ``beta = bias``, ``running_mean = 0``,
``running_var = 1 - eps`` gives the same function in eval mode only.

TensorFlow's SAME padding pads stride-2 convolutions at the bottom/right only, ours pads both
sides: activations after each stride-2 layer are offset by half a pixel, which fine-tuning
absorbs (the check image still ranks cats first).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.nets.mobilenetv2 import MobileNetV2Features

DEFAULT_TFLITE_NAME = "mobilenet_v2_1.0_224_int8.tflite"


def imagenet_folder() -> Path:
    """``models/imagenet`` beside the shared data root (``$FACETRACK_DATA`` or ``../shared/data``)."""
    from models.datasets import data_root

    return Path(data_root()).parent / "models" / "imagenet"


@dataclass(frozen=True)
class FoldedConv:
    """One TFLite convolution with its batch norm folded in, in torch layout."""

    weight: np.ndarray  # (out, in/groups, kh, kw) float32
    bias: np.ndarray  # (out,) float32
    depthwise: bool


def _dequantise(model, subgraph, tensor_index: int) -> np.ndarray:
    tensor = subgraph.Tensors(tensor_index)
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtype = {9: np.int8, 3: np.uint8, 2: np.int32, 0: np.float32}[tensor.Type()]
    values = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy()).astype(np.float64)
    if dtype == np.float32:
        return values.astype(np.float32)
    quant = tensor.Quantization()
    scale = quant.ScaleAsNumpy().astype(np.float64)
    zero = quant.ZeroPointAsNumpy().astype(np.float64)
    if scale.size > 1:  # per channel along the quantised dimension
        shape = [1] * values.ndim
        shape[quant.QuantizedDimension()] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values - zero) * scale).astype(np.float32)


def read_tflite_convolutions(path: str | Path) -> list[FoldedConv]:
    """Every CONV_2D / DEPTHWISE_CONV_2D of the file, in graph order."""
    import tflite
    from tflite.utils import opcode2name

    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    convs: list[FoldedConv] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        _, w_index, b_index = op.InputsAsNumpy()[:3]
        weight = _dequantise(model, graph, w_index)
        bias = _dequantise(model, graph, b_index)
        depthwise = name == "DEPTHWISE_CONV_2D"
        # NHWC -> OIHW; depthwise [1, kh, kw, C] -> [C, 1, kh, kw]
        weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
        convs.append(FoldedConv(np.ascontiguousarray(weight), bias, depthwise))
    return convs


def _conv_bn_pairs(features: MobileNetV2Features) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Our (convolution, batch norm) pairs in the TFLite file's order."""
    modules = list(features.modules())
    pairs = []
    for i, m in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            bn = next(x for x in modules[i + 1:] if isinstance(x, nn.BatchNorm2d))
            pairs.append((m, bn))
    return pairs


def load_into_features(features: MobileNetV2Features, convs: list[FoldedConv]) -> None:
    """Copy the backbone's 52 folded convolutions in, BN as 'add the bias' (eval-mode exact)."""
    pairs = _conv_bn_pairs(features)
    if len(convs) < len(pairs):
        raise ValueError(f"the TFLite file has {len(convs)} convolutions, the backbone needs {len(pairs)}")
    with torch.no_grad():
        for (conv, bn), folded in zip(pairs, convs):
            if tuple(conv.weight.shape) != folded.weight.shape:
                raise ValueError(f"shape mismatch: ours {tuple(conv.weight.shape)}, file {folded.weight.shape}")
            conv.weight.copy_(torch.from_numpy(folded.weight))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(folded.bias))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


def bn_from_data(features: MobileNetV2Features, images: torch.Tensor) -> None:
    """Set each BN from the measured statistics of its convolution's output (module docstring)."""
    pairs = _conv_bn_pairs(features)
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [conv.register_forward_hook(
        lambda _m, _i, out, k=k: stats.__setitem__(k, (out.mean((0, 2, 3)), out.var((0, 2, 3)))))
        for k, (conv, _bn) in enumerate(pairs)]
    was_training = features.training
    features.eval()
    with torch.no_grad():
        features(images)
        for k, (_conv, bn) in enumerate(pairs):
            mean, var = stats[k]
            var = var.clamp_min(1e-6)
            bias = bn.bias.clone()  # the folded bias: load_into_features left BN as 'add the bias'
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var - bn.eps)
            bn.weight.copy_(var.sqrt())
            bn.bias.copy_(mean + bias)
    for h in hooks:
        h.remove()
    features.train(was_training)


def start_from_imagenet(features: MobileNetV2Features, task, n_images: int = 64, tflite: Path | None = None) -> None:
    """Load the ImageNet backbone and fit its BN to ``n_images`` un-augmented training crops
    (spread evenly over the training split) as ``task`` feeds them to the network."""
    from models.training.dataset import TrainingData

    load_into_features(features, read_tflite_convolutions(tflite or default_tflite()))
    data = TrainingData(crop_size=task.input_size)
    ids = np.concatenate([data.train_w300, data.train_other])
    sample = data.plain_batch(ids[np.linspace(0, len(ids) - 1, n_images).astype(int)])
    bn_from_data(features, task.to_input(sample.crops))


def imagenet_classifier(convs: list[FoldedConv]) -> nn.Conv2d:
    """The file's last convolution: the 1x1 classifier 1280 -> 1001."""
    folded = convs[-1]
    head = nn.Conv2d(folded.weight.shape[1], folded.weight.shape[0], 1)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(folded.weight))
        head.bias.copy_(torch.from_numpy(folded.bias))
    return head


def imagenet_logits(features: MobileNetV2Features, head: nn.Conv2d, rgb: np.ndarray) -> torch.Tensor:
    """Class scores of one RGB uint8 image (224x224) through backbone + classifier."""
    x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        pooled = features(x).mean((2, 3), keepdim=True)
        return head(pooled).flatten()


def default_tflite() -> Path:
    return imagenet_folder() / DEFAULT_TFLITE_NAME


def main(argv=None) -> None:
    import cv2

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tflite", type=Path, default=None)
    p.add_argument("--image", type=Path, default=None)
    args = p.parse_args(argv)
    tfl = args.tflite or default_tflite()
    image = args.image or tfl.parent / "cat_224.png"
    labels = (tfl.parent / "imagenet_labels.txt").read_text().splitlines()
    convs = read_tflite_convolutions(tfl)
    features = MobileNetV2Features().eval()
    load_into_features(features, convs)
    logits = imagenet_logits(features, imagenet_classifier(convs), cv2.imread(str(image))[:, :, ::-1])
    for k in torch.topk(logits, 5).indices.tolist():
        print(f"{k:5d} {labels[k] if k < len(labels) else '?':30s} {logits[k].item():.2f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

"""Start a network from the weights of an exported ONNX file, for fine-tuning shipped weights.

The checkpoints of the shipped networks are not kept (they were trained on another machine);
their ONNX files are. The exporter folds every batch norm into the convolution before it, so
the file holds, for each convolution, W' = W * g / s and b' = beta + (b - m) * g / s. Loading
puts W' into the convolution and turns its batch norm into the affine map x + b' (weight 1,
bias b', running mean 0, running variance 1 - eps), which is the exported function exactly.

Those batch norms then stay frozen (``FrozenBatchNorm2d``: always in inference mode, no
trainable parameters), as detection fine-tuning does: batch statistics of an identity map would
not match the folded features. Layers the exporter does not fold keep their names in the
file (fully connected layers, ``net.s0.weight``; a convolution without a batch norm; a
transposed convolution and its batch norm, whose statistics then stay as trained) and load
by name. Folded convolutions are matched in the order the network runs them (the order of
the graph's Conv nodes) and their shapes are checked; ``load_onnx_weights`` fails with the
first mismatch, or when a parameter gets no value, rather than loading a permutation.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

START_CARD = "start_card.json"  # in a run folder: the name, digest and card of the file a fine-tune started from
_ONNX_PREFIX = "net."  # models.tools.export wraps r18_ffld and sgfa as ``net`` (output split); mnv2_sdd is bare


def _network_key(name: str) -> str:
    return name[len(_ONNX_PREFIX):] if name.startswith(_ONNX_PREFIX) else name


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A batch norm that always normalises with its stored statistics and never learns.

    It stays a ``BatchNorm2d`` (same state dict keys), so a checkpoint loads into the plain
    network and the exporter folds it as before."""

    def __init__(self, source: nn.BatchNorm2d):
        super().__init__(source.num_features, eps=source.eps, momentum=source.momentum, affine=True,
                         track_running_stats=True)
        self.load_state_dict(source.state_dict())
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return super().train(False)


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every ``BatchNorm2d`` replaced by a ``FrozenBatchNorm2d`` of the same state."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenBatchNorm2d):
            setattr(model, name, FrozenBatchNorm2d(child))
        else:
            freeze_batch_norm(child)
    return model


def _conv_bn_pairs(model: nn.Module, input_size: int) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each convolution whose output a batch norm reads, in the order a forward pass runs them,
    with that batch norm (the pairs the exporter folds)."""
    order: list[nn.Conv2d] = []
    made_by: dict[int, nn.Conv2d] = {}
    bn_of: dict[nn.Conv2d, nn.BatchNorm2d] = {}
    alive: list[torch.Tensor] = []  # outputs kept referenced, so no later tensor reuses an id

    def conv_hook(module, _inputs, output):
        order.append(module)
        made_by[id(output)] = module
        alive.append(output)

    def bn_hook(module, inputs):
        conv = made_by.get(id(inputs[0]))
        if conv is not None:
            bn_of[conv] = module

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [(c, bn_of[c]) for c in order if c in bn_of]


def load_onnx_weights(model: nn.Module, onnx_path: Path, input_size: int) -> nn.Module:
    """``model`` (eval-mode structure of the exported network) with the weights of ``onnx_path``,
    its batch norms frozen (see the module docstring)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    init = {i.name: np.array(numpy_helper.to_array(i)) for i in graph.initializer}
    for node in graph.node:  # the exporter keeps one copy of equal tensors and names the others by Identity
        if node.op_type == "Identity" and node.input[0] in init:
            init[node.output[0]] = init[node.input[0]]
    consts = {n.output[0]: np.array(numpy_helper.to_array(n.attribute[0].t)) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}

    def tensor(name: str) -> np.ndarray:
        if name in init:
            return init[name]
        if name in consts:
            return consts[name]
        raise ValueError(f"{onnx_path}: tensor {name!r} is neither an initializer nor a constant")

    state = model.state_dict()
    named = {_network_key(name): value for name, value in init.items() if _network_key(name) in state}
    folded = [n for n in graph.node if n.op_type == "Conv" and _network_key(n.input[1]) not in state]
    module_name = {id(module): name for name, module in model.named_modules()}
    # a convolution whose output also feeds something other than its batch norm (sgfa's stem: the
    # first residual's skip) is not folded; it and its batch norm keep their names and load by name
    pairs = [(conv, bn) for conv, bn in _conv_bn_pairs(model, input_size)
             if f"{module_name[id(conv)]}.weight" not in named]
    if len(folded) != len(pairs):
        raise ValueError(f"{onnx_path} has {len(folded)} folded convolutions, the network {len(pairs)} "
                         "convolutions followed by a batch norm")
    with torch.no_grad():
        for k, (node, (conv, bn)) in enumerate(zip(folded, pairs)):
            w = tensor(node.input[1])
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            if tuple(w.shape) != tuple(conv.weight.shape) or groups != conv.groups:
                raise ValueError(f"convolution {k} ({node.name}): file {w.shape} groups {groups}, "
                                 f"network {tuple(conv.weight.shape)} groups {conv.groups}")
            b = tensor(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], np.float32)
            conv.weight.copy_(torch.from_numpy(w))
            if conv.bias is not None:
                conv.bias.zero_()
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        for key, value in named.items():
            if tuple(value.shape) != tuple(state[key].shape):
                raise ValueError(f"{key}: file {value.shape}, network {tuple(state[key].shape)}")
            state[key].copy_(torch.from_numpy(value))
        folded_modules = {id(m) for pair in pairs for m in pair}
        unset = [name for owner, module in model.named_modules() if id(module) not in folded_modules
                 for name in (f"{owner}.{p}".lstrip(".") for p, _ in
                              [*module.named_parameters(recurse=False),
                               *(module.named_buffers(recurse=False) if isinstance(module, nn.BatchNorm2d) else ())]
                              if p != "num_batches_tracked")
                 if name not in named]  # a batch norm's statistics too; other buffers are constants of the code
        if unset:
            raise ValueError(f"{onnx_path} holds no value for {unset[:5]}{' ...' if len(unset) > 5 else ''}")
    return freeze_batch_norm(model)


def keep_start_card(run: str, onnx_file: Path) -> None:
    """Before a fine-tune's first step: the started-from file's name, digest and model card (its
    manifest beside it), kept in the run folder for the new card (``start_card``), since the
    file itself may be replaced when the fine-tune is shipped."""
    import hashlib

    from engines.files import atomic_write
    from models.training.checkpoint import run_dir

    path = run_dir(run) / START_CARD
    if path.is_file():
        return
    if not onnx_file.is_file():
        raise SystemExit(f"--init-onnx: no file at {onnx_file}")
    manifest = onnx_file.with_suffix(".json")
    card = json.loads(manifest.read_text()).get("card", {}) if manifest.is_file() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"file": str(onnx_file), "sha256": hashlib.sha256(onnx_file.read_bytes()).hexdigest(),
                                   "card": card}, indent=1))


def start_card(run: str) -> dict:
    """What ``keep_start_card`` kept for run ``run``, or {} when the run did not fine-tune a file."""
    from models.training.checkpoint import run_dir

    path = run_dir(run) / START_CARD
    return json.loads(path.read_text()) if path.is_file() else {}

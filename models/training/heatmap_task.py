"""The training Task of MobileNetV2-SDD (``models.nets.mnv2_sdd``): Gaussian heatmap targets at
stride 4, adaptive-wing (or MSE) loss, DARK decoding."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.heatmap_decode import dark_kernel, decode_heatmaps
from models.training.checkpoint import load_run_weights
from models.training.task import Task


def gaussian_heatmaps(points: torch.Tensor, size: int, stride: int, sigma: float) -> torch.Tensor:
    """(B, K, 2) crop points -> (B, K, size, size) unnormalised Gaussians (peak 1 at the point).

    A crop pixel-centre coordinate x is heatmap coordinate (x + 0.5) / stride - 0.5.
    """
    h = (points.float() + 0.5) / stride - 0.5
    grid = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-((grid.view(1, 1, -1) - h[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((grid.view(1, 1, -1) - h[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, K, H)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def heatmap_to_crop(coords: np.ndarray, stride: int) -> np.ndarray:
    return (coords + 0.5) * stride - 0.5


@dataclass
class HeatmapTask(Task):
    """MobileNetV2-SDD: Gaussian heatmap targets at stride 4, DARK decoding."""

    sigma: float = 1.5
    loss_name: str = "awing"
    foreground_weight: float = 10.0
    decode_method: str = "dark"
    init_run: str = ""  # training run whose last.pt a fresh network starts from (a continuation)
    imagenet_init: bool = False  # backbone from the shared ImageNet MobileNetV2 (models/training/imagenet_init.py)
    init_onnx: str = ""  # exported file whose weights a fresh network starts from, batch norms frozen

    decode_methods = ("dark", "argmax")

    def __post_init__(self):
        from models.nets import mnv2_sdd
        from models.training.losses import get_loss

        self.name = "mnv2_sdd"
        self.input_size = mnv2_sdd.INPUT_SIZE
        self.heatmap_size = mnv2_sdd.HEATMAP_SIZE
        self.stride = mnv2_sdd.STRIDE
        self.mean = mnv2_sdd.INPUT_MEAN
        self.std = mnv2_sdd.INPUT_STD
        self.colour_order = mnv2_sdd.COLOUR_ORDER
        self._loss = get_loss(self.loss_name)

    def blank_model(self) -> torch.nn.Module:
        """The network with random weights (a checkpoint is loaded into it); its batch norms
        frozen when the run fine-tunes an exported file (``models.training.onnx_init``)."""
        from models.nets import build_model

        model = build_model(self.name)
        if self.init_onnx:
            from models.training.onnx_init import freeze_batch_norm

            return freeze_batch_norm(model)
        return model

    def build_model(self) -> torch.nn.Module:
        """A fresh network to train: the weights of run ``init_run``, of the exported file
        ``init_onnx`` or of ImageNet if one is set, else random."""
        if sum(map(bool, (self.init_run, self.init_onnx, self.imagenet_init))) > 1:
            raise ValueError("init_run, init_onnx and imagenet_init are different starts; give one")
        if self.init_onnx:
            from models.nets import build_model
            from models.training.onnx_init import load_onnx_weights

            return load_onnx_weights(build_model(self.name), self.init_onnx, self.input_size)
        model = self.blank_model()
        if self.init_run:
            return load_run_weights(model, self.init_run, self.name)
        if self.imagenet_init:
            from models.training.imagenet_init import start_from_imagenet

            start_from_imagenet(model.backbone, self)
        return model

    def make_targets(self, points: torch.Tensor) -> torch.Tensor:
        return gaussian_heatmaps(points, self.heatmap_size, self.stride, self.sigma)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "mse":
            return self._loss(output, target)
        return self._loss(output, target, foreground_weight=self.foreground_weight)

    def points_from_output(self, output: np.ndarray, method: str | None = None) -> np.ndarray:
        coords, _ = decode_heatmaps(output.astype(np.float32), method=method or self.decode_method,
                                    kernel=self.decode_kernel())
        return heatmap_to_crop(coords, self.stride)

    def decode_kernel(self) -> int:
        return dark_kernel(self.sigma)

    def config(self) -> dict:
        config = {"task": "heatmap", "model": self.name, "input_size": self.input_size,
                  "heatmap_size": self.heatmap_size, "sigma": self.sigma, "loss": self.loss_name,
                  "foreground_weight": self.foreground_weight}
        if self.imagenet_init:
            config["imagenet_init"] = True
        if self.init_onnx:
            config["init_onnx"] = self.init_onnx
        return {**config, "init_run": self.init_run} if self.init_run else config

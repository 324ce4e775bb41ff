"""What is specific to one network: input size, normalisation, targets, loss, decoding.

The generic loop (``loop.py``) talks to a ``Task``; a coordinate-regression network
(ResNet18-FFLD) gets its own Task with its own input size, targets and loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.heatmap_decode import decode_heatmaps


class Task:
    """Interface: subclasses define the model-specific parts of training."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour_order: str  # "rgb" or "bgr"

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def make_targets(self, points: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) crop points -> whatever the loss compares the output with."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def points_from_output(self, output: np.ndarray) -> np.ndarray:
        """Network output (numpy) -> (B, 68, 2) points in crop pixel-centre coordinates."""
        raise NotImplementedError

    def config(self) -> dict:
        """Everything that must match when resuming and that goes into the manifest."""
        raise NotImplementedError

    def to_input(self, crops_bgr: np.ndarray) -> torch.Tensor:
        """(B, S, S, 3) uint8 BGR crops -> normalised float (B, 3, S, S)."""
        x = crops_bgr[..., ::-1] if self.colour_order == "rgb" else crops_bgr
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (t - mean) / std


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

    def __post_init__(self):
        from models.nets import mnv2_sdd

        self.name = "mnv2_sdd"
        self.input_size = mnv2_sdd.INPUT_SIZE
        self.heatmap_size = mnv2_sdd.HEATMAP_SIZE
        self.stride = mnv2_sdd.STRIDE
        self.mean = mnv2_sdd.INPUT_MEAN
        self.std = mnv2_sdd.INPUT_STD
        self.colour_order = mnv2_sdd.COLOUR_ORDER
        from models.training.losses import get_loss

        self._loss = get_loss(self.loss_name)

    def blank_model(self) -> torch.nn.Module:
        """The network with random weights (a checkpoint is loaded into it)."""
        from models.nets import build_model

        return build_model(self.name)

    def build_model(self) -> torch.nn.Module:
        """A fresh network to train: the weights of run ``init_run`` if set, else random."""
        model = self.blank_model()
        if self.init_run:
            from models.training.loop import load_run_weights

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
        """DARK smoothing kernel: odd, about 6 sigma of the target Gaussian, at least 5."""
        k = max(5, int(round(6 * self.sigma)))
        return k if k % 2 else k + 1

    def config(self) -> dict:
        config = {"task": "heatmap", "model": self.name, "input_size": self.input_size,
                  "heatmap_size": self.heatmap_size, "sigma": self.sigma, "loss": self.loss_name,
                  "foreground_weight": self.foreground_weight}
        if self.imagenet_init:
            config["imagenet_init"] = True
        return {**config, "init_run": self.init_run} if self.init_run else config


def build_task(model: str, **options) -> Task:
    if model == "mnv2_sdd":
        return HeatmapTask(**options)
    if model == "r18_ffld":
        from models.training.ffld_task import FFLDTask

        return FFLDTask(**options)
    raise ValueError(f"no training task for model {model!r}")


def task_from_config(t: dict) -> Task:
    """The Task a checkpoint was trained with, from its recorded ``config()``."""
    if t.get("task") == "ffld":
        from models.training.ffld_task import FFLDTask

        return FFLDTask.from_config(t)
    return HeatmapTask(sigma=t["sigma"], loss_name=t["loss"], foreground_weight=t["foreground_weight"],
                       init_run=t.get("init_run", ""), imagenet_init=t.get("imagenet_init", False))

"""The training Task of SGFA (``models.nets.sgfa``): Gaussian heatmap targets plus binary score
maps, loss MSE(heatmaps) + lambda * MSE(score maps), DARK decoding, each point's weight the score
map at the decoded point.

Conventions carried over from mnv2_sdd (``heatmap_task``): sigma in heatmap pixels, by default the
same share of the crop as mnv2_sdd's 1.5 px on its 48 px map (4 px at 128, 2 px at 64); the
crop -> heatmap mapping x_h = (x + 0.5) / stride - 0.5; the DARK kernel about 6 sigma. The score
radius defaults to 4% of the crop side, about 10% of the template's inter-ocular distance (the
usual failure threshold): a score of 1 says "this point is within a failure radius of the truth".
The heatmap loss is the paper's MSE by default; ``loss_name="awing"`` (with ``foreground_weight``)
is mnv2_sdd's measured choice, offered as an option.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.heatmap_decode import dark_kernel, decode_heatmaps, sample_maps
from models.landmarks68 import NUM_LANDMARKS
from models.training.checkpoint import load_run_weights
from models.training.heatmap_task import gaussian_heatmaps, heatmap_to_crop
from models.training.task import Task

MNV2_SIGMA_SHARE = 1.5 / 48  # mnv2_sdd's sigma as a share of its heatmap side
SCORE_RADIUS_SHARE = 0.04  # of the crop side: ~10% of the template's inter-ocular distance


def score_maps(points: torch.Tensor, size: int, stride: int, radius: float) -> torch.Tensor:
    """(B, K, 2) crop points -> (B, K, size, size) binary maps: 1 within ``radius`` heatmap pixels."""
    h = (points.float() + 0.5) / stride - 0.5
    grid = torch.arange(size, dtype=torch.float32)
    dx2 = (grid.view(1, 1, -1) - h[..., 0:1]) ** 2  # (B, K, W)
    dy2 = (grid.view(1, 1, -1) - h[..., 1:2]) ** 2  # (B, K, H)
    return (dy2.unsqueeze(-1) + dx2.unsqueeze(-2) <= radius**2).float()


@dataclass
class SGFATask(Task):
    output_size: int = 128  # the paper's; 64 is the measured departure for CPU (docs/DESIGN.md)
    head_channels: int = 128
    sigma: float | None = None  # heatmap pixels; None: MNV2_SIGMA_SHARE of the map
    score_radius: float | None = None  # heatmap pixels; None: SCORE_RADIUS_SHARE of the crop
    loss_name: str = "mse"  # heatmap loss: "mse" (the paper) or "awing" / "wmse" (mnv2_sdd's choice)
    foreground_weight: float = 10.0  # for awing / wmse
    score_weight: float = 1.0  # lambda
    decode_method: str = "dark"
    init_run: str = ""
    init_onnx: str = ""  # exported file whose weights a fresh network starts from, batch norms frozen

    decode_methods = ("dark", "argmax")

    def __post_init__(self):
        from models.nets import sgfa
        from models.training.losses import get_loss

        self.name = "sgfa"
        self.input_size = sgfa.INPUT_SIZE
        if self.output_size not in sgfa.OUTPUT_SIZES:
            raise ValueError(f"sgfa output size must be one of {sgfa.OUTPUT_SIZES}, got {self.output_size}")
        self.heatmap_size = self.output_size
        self.stride = self.input_size // self.output_size
        if self.sigma is None:
            self.sigma = round(MNV2_SIGMA_SHARE * self.heatmap_size, 4)
        if self.score_radius is None:
            self.score_radius = round(SCORE_RADIUS_SHARE * self.heatmap_size, 4)
        self.mean = sgfa.INPUT_MEAN
        self.std = sgfa.INPUT_STD
        self.colour_order = sgfa.COLOUR_ORDER
        self._loss = get_loss(self.loss_name)

    @classmethod
    def from_config(cls, t: dict) -> "SGFATask":
        return cls(output_size=t["heatmap_size"], head_channels=t["head_channels"], sigma=t["sigma"],
                   score_radius=t["score_radius"], loss_name=t["loss"], foreground_weight=t["foreground_weight"],
                   score_weight=t["score_weight"], init_run=t.get("init_run", ""),
                   init_onnx=t.get("init_onnx", ""))

    def blank_model(self) -> torch.nn.Module:
        from models.nets import build_model

        return build_model(self.name, output_size=self.output_size, head_channels=self.head_channels)

    def build_model(self) -> torch.nn.Module:
        """A fresh network: the weights of run ``init_run``, of the exported file ``init_onnx``
        (batch norms frozen, ``models.training.onnx_init``), else random."""
        if self.init_run and self.init_onnx:
            raise ValueError("init_run and init_onnx are different starts; give one")
        model = self.blank_model()
        if self.init_onnx:
            from models.training.onnx_init import load_onnx_weights

            return load_onnx_weights(model, self.init_onnx, self.input_size)
        return load_run_weights(model, self.init_run, self.name) if self.init_run else model

    def make_targets(self, points: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Heatmaps at every point (hidden ones too: the network still places them) and score maps,
        zero for the points ``hidden`` (B, 68) bool marks (synthetic occluders, ``models.training.occlusion``)."""
        heat = gaussian_heatmaps(points, self.heatmap_size, self.stride, self.sigma)
        score = score_maps(points, self.heatmap_size, self.stride, self.score_radius)
        if hidden is not None:
            score = score * (~hidden).float()[..., None, None]
        return torch.cat([heat, score], dim=1)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output = output.float()
        heat, score = output[:, :NUM_LANDMARKS], output[:, NUM_LANDMARKS:]
        heat_t, score_t = target[:, :NUM_LANDMARKS], target[:, NUM_LANDMARKS:]
        if self.loss_name == "mse":
            heat_loss = self._loss(heat, heat_t)
        else:
            heat_loss = self._loss(heat, heat_t, foreground_weight=self.foreground_weight)
        return heat_loss + self.score_weight * F.mse_loss(score, score_t)

    def decode(self, output: np.ndarray, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, 136, S, S) output -> crop points (B, 68, 2) and weights (B, 68): the score maps'
        values at the decoded points."""
        output = np.asarray(output, dtype=np.float32)
        coords, _ = decode_heatmaps(output[:, :NUM_LANDMARKS], method=method or self.decode_method,
                                    kernel=self.decode_kernel())
        weights = sample_maps(output[:, NUM_LANDMARKS:], coords)
        return heatmap_to_crop(coords, self.stride), weights

    def points_from_output(self, output: np.ndarray, method: str | None = None) -> np.ndarray:
        return self.decode(output, method)[0]

    def decode_kernel(self) -> int:
        return dark_kernel(self.sigma)

    def config(self) -> dict:
        config = {"task": "sgfa", "model": self.name, "input_size": self.input_size,
                  "heatmap_size": self.heatmap_size, "head_channels": self.head_channels, "sigma": self.sigma,
                  "score_radius": self.score_radius, "loss": self.loss_name,
                  "foreground_weight": self.foreground_weight, "score_weight": self.score_weight}
        if self.init_onnx:
            config["init_onnx"] = self.init_onnx
        return {**config, "init_run": self.init_run} if self.init_run else config

"""The training Task of DRR (``models.nets.drr``): Gaussian heatmap targets for the initialisation
head and a point loss on every recurrent step.

Loss = heatmap loss (adaptive wing with the weighted loss map, mnv2_sdd's measured choice, or the
paper's MSE) on the initial heatmaps + ``point_weight`` x the mean over steps 1..K of the mean
point-to-truth distance normalised by the inter-ocular distance (the NME itself, one term per
step: deep supervision of every step as in the paper). Targets and decoding share mnv2_sdd's
conventions (sigma 1.5 heatmap pixels at stride 4, x_h = (x + 0.5) / 4 - 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.heatmap_decode import dark_kernel
from models.landmarks68 import OUTER_EYE_CORNERS
from models.training.checkpoint import load_run_weights
from models.training.heatmap_task import gaussian_heatmaps
from models.training.task import Task


@dataclass
class DRRTask(Task):
    steps: int = 4
    recurrent: bool = True
    sigma: float = 1.5
    loss_name: str = "awing"
    foreground_weight: float = 10.0
    point_weight: float = 1.0
    imagenet_init: bool = False
    init_run: str = ""

    def __post_init__(self):
        from models.nets import drr
        from models.training.losses import get_loss

        self.name = "drr"
        self.input_size = drr.INPUT_SIZE
        self.heatmap_size = drr.FEATURE_SIZE
        self.stride = drr.STRIDE
        self.mean = drr.INPUT_MEAN
        self.std = drr.INPUT_STD
        self.colour_order = drr.COLOUR_ORDER
        self._loss = get_loss(self.loss_name)

    @classmethod
    def from_config(cls, t: dict) -> "DRRTask":
        return cls(steps=t["steps"], recurrent=t["recurrent"], sigma=t["sigma"], loss_name=t["loss"],
                   foreground_weight=t["foreground_weight"], point_weight=t["point_weight"],
                   imagenet_init=t.get("imagenet_init", False), init_run=t.get("init_run", ""))

    def blank_model(self) -> torch.nn.Module:
        from models.nets import build_model

        return build_model(self.name, steps=self.steps, recurrent=self.recurrent,
                           decode_kernel=dark_kernel(self.sigma))

    def build_model(self) -> torch.nn.Module:
        if self.init_run and self.imagenet_init:
            raise ValueError("init_run and imagenet_init are different starts; give one")
        model = self.blank_model()
        if self.init_run:
            return load_run_weights(model, self.init_run, self.name)
        if self.imagenet_init:
            from models.training.imagenet_init import start_from_imagenet

            start_from_imagenet(model.features.backbone, self)
        return model

    def make_targets(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (points.float() + 0.5) / self.stride - 0.5
        io = (h[:, OUTER_EYE_CORNERS[0]] - h[:, OUTER_EYE_CORNERS[1]]).norm(dim=-1).clamp(min=1e-3)
        return {"heatmaps": gaussian_heatmaps(points, self.heatmap_size, self.stride, self.sigma), "points": h,
                "io": io}

    def loss_terms(self, output: dict, target: dict) -> dict[str, torch.Tensor]:
        heat = output["heatmaps"].float()
        if self.loss_name == "mse":
            heat_loss = self._loss(heat, target["heatmaps"])
        else:
            heat_loss = self._loss(heat, target["heatmaps"], foreground_weight=self.foreground_weight)
        err = (output["shapes"][1:].float() - target["points"]).norm(dim=-1) / target["io"][None, :, None]
        return {"heatmaps": heat_loss, "steps": err.mean(dim=(1, 2))}

    def loss(self, output: dict, target: dict) -> torch.Tensor:
        terms = self.loss_terms(output, target)
        return terms["heatmaps"] + self.point_weight * terms["steps"].mean()

    def points_from_output(self, output: np.ndarray, method: str | None = None) -> np.ndarray:
        """(N, 68, 3) [u_x, u_y, confidence] -> crop pixel-centre points."""
        return np.asarray(output, dtype=np.float32)[..., :2] * self.input_size - 0.5

    def shape_to_crop(self, shape_h: np.ndarray) -> np.ndarray:
        """Feature pixel-centre points (any step of ``forward_all``) -> crop pixel-centre points."""
        return (np.asarray(shape_h, dtype=np.float32) + 0.5) * self.stride - 0.5

    def decode_kernel(self) -> int:
        return dark_kernel(self.sigma)

    def config(self) -> dict:
        config = {"task": "drr", "model": self.name, "input_size": self.input_size,
                  "heatmap_size": self.heatmap_size, "steps": self.steps, "recurrent": self.recurrent,
                  "sigma": self.sigma, "loss": self.loss_name, "foreground_weight": self.foreground_weight,
                  "point_weight": self.point_weight}
        if self.imagenet_init:
            config["imagenet_init"] = True
        return {**config, "init_run": self.init_run} if self.init_run else config

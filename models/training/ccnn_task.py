"""The training Task of CCNN (``models.nets.ccnn``): deep supervision of every heatmap unit and
every regression unit.

Loss = the mean over the K + 1 heatmap sets (baseline and K units) of the heatmap loss (adaptive
wing with the weighted loss map, mnv2_sdd's measured choice, by default; ``loss_name="mse"`` is
the paper's L2) + ``point_weight`` x the mean over the K regression units of the mean
point-to-truth distance normalised by the inter-ocular distance (an L1 loss in NME units). Means
rather than sums keep the loss's scale the same for the K = 1, 2, 4 ablations. Targets and
decoding share mnv2_sdd's conventions (sigma 1.5 map pixels at stride 4, x_h = (x + 0.5) / 4 - 0.5).
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
class CCNNTask(Task):
    steps: int = 4
    heatmap_only: bool = False
    input_size: int = 0  # 0: the network's default (128 px scaled, 256 px paper)
    paper: bool = False
    sigma: float = 1.5
    loss_name: str = "awing"
    foreground_weight: float = 10.0
    point_weight: float = 1.0
    imagenet_init: bool = False
    init_run: str = ""

    def __post_init__(self):
        from models.nets import ccnn
        from models.training.losses import get_loss

        self.name = "ccnn"
        self.input_size = self.input_size or (ccnn.PAPER_INPUT_SIZE if self.paper else ccnn.INPUT_SIZE)
        self.stride = ccnn.STRIDE
        self.heatmap_size = self.input_size // self.stride
        self.mean = ccnn.INPUT_MEAN
        self.std = ccnn.INPUT_STD
        self.colour_order = ccnn.COLOUR_ORDER
        self._loss = get_loss(self.loss_name)
        if self.paper and self.imagenet_init:
            raise ValueError("the paper-size CCNN has no MobileNetV2 branch to start from ImageNet")

    @classmethod
    def from_config(cls, t: dict) -> "CCNNTask":
        return cls(steps=t["steps"], heatmap_only=t["heatmap_only"], input_size=t["input_size"],
                   paper=t.get("paper", False), sigma=t["sigma"], loss_name=t["loss"],
                   foreground_weight=t["foreground_weight"], point_weight=t["point_weight"],
                   imagenet_init=t.get("imagenet_init", False), init_run=t.get("init_run", ""))

    def blank_model(self) -> torch.nn.Module:
        from models.nets import build_model

        return build_model(self.name, steps=self.steps, heatmap_only=self.heatmap_only, paper=self.paper,
                           input_size=self.input_size, decode_kernel=dark_kernel(self.sigma))

    def build_model(self) -> torch.nn.Module:
        if self.init_run and self.imagenet_init:
            raise ValueError("init_run and imagenet_init are different starts; give one")
        model = self.blank_model()
        if self.init_run:
            return load_run_weights(model, self.init_run, self.name)
        if self.imagenet_init:
            from models.training.imagenet_init import start_from_imagenet

            start_from_imagenet(model.branch_a.backbone, self)
        return model

    def make_targets(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (points.float() + 0.5) / self.stride - 0.5
        io = (h[:, OUTER_EYE_CORNERS[0]] - h[:, OUTER_EYE_CORNERS[1]]).norm(dim=-1).clamp(min=1e-3)
        return {"heatmaps": gaussian_heatmaps(points, self.heatmap_size, self.stride, self.sigma), "points": h,
                "io": io}

    def loss_terms(self, output: dict, target: dict) -> dict[str, torch.Tensor]:
        """Per heatmap set (K + 1: baseline first) and per regression unit (K, or none)."""
        heat = []
        for maps in output["heatmaps"]:
            if self.loss_name == "mse":
                heat.append(self._loss(maps.float(), target["heatmaps"]))
            else:
                heat.append(self._loss(maps.float(), target["heatmaps"], foreground_weight=self.foreground_weight))
        err = (output["points"].float() - target["points"]).norm(dim=-1) / target["io"][None, :, None]
        return {"heatmaps": torch.stack(heat), "points": err.mean(dim=(1, 2))}

    def loss(self, output: dict, target: dict) -> torch.Tensor:
        terms = self.loss_terms(output, target)
        loss = terms["heatmaps"].mean()
        return loss + self.point_weight * terms["points"].mean() if len(terms["points"]) else loss

    def points_from_output(self, output: np.ndarray, method: str | None = None) -> np.ndarray:
        """(N, 68, 3) [u_x, u_y, confidence] -> crop pixel-centre points."""
        return np.asarray(output, dtype=np.float32)[..., :2] * self.input_size - 0.5

    def map_to_crop(self, points_h: np.ndarray) -> np.ndarray:
        """Map pixel-centre points (any unit of ``forward_all``) -> crop pixel-centre points."""
        return (np.asarray(points_h, dtype=np.float32) + 0.5) * self.stride - 0.5

    def decode_kernel(self) -> int:
        return dark_kernel(self.sigma)

    def config(self) -> dict:
        config = {"task": "ccnn", "model": self.name, "input_size": self.input_size,
                  "heatmap_size": self.heatmap_size, "steps": self.steps, "heatmap_only": self.heatmap_only,
                  "sigma": self.sigma, "loss": self.loss_name, "foreground_weight": self.foreground_weight,
                  "point_weight": self.point_weight}
        if self.paper:
            config["paper"] = True
        if self.imagenet_init:
            config["imagenet_init"] = True
        return {**config, "init_run": self.init_run} if self.init_run else config

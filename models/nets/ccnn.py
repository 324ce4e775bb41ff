"""CCNN: the coarse-to-fine cascade of heatmap and regression units (after Mahpod, Das, Maiorana,
Keller, Campisi, "Facial Landmark Point Localization using Coarse-to-Fine Deep Recurrent Neural
Network").

Input: (N, 3, S, S) RGB normalised with ``INPUT_MEAN``/``INPUT_STD`` (0-255 units); S = 128 (our
aligner's crop at 128 px, as sgfa's) unless ``input_size`` says otherwise (160 and 192 were measured
slower, docs/DESIGN.md "CCNN"; 256 for ``paper``); maps at stride 4 (M = S / 4).

- Two base CNNs that share no weights; their feature maps are concatenated (F). Scaled (default):
  MobileNetV2 conv-deconv to 64 maps (drr's ``ConvDeconv``, ImageNet start possible) and a light
  4-layer CNN to 32 maps. ``paper=True``: two plain CNNs of the paper's size (256 px input).
- A 1x1 convolution on F gives the baseline heatmaps H0.
- K heatmap units (``ccnn_units.HeatmapUnit``): H_k = B_k(F, H_{k-1}).
- K regression units (``ccnn_units.RegressionUnit``), the parallel cascade: unit k sees F, H_k and
  H0 (and its predecessor's last feature map) and regresses the residual R_k of H_k's DARK
  positions D(H_k): P_k = D(H_k) + R_k. D is computed on detached heatmaps (no gradient through
  the peak position: the heatmaps learn from their own loss); the residuals start at zero.
- ``heatmap_only=True`` (the ablation) builds no regression units; the output is D(H_K).

Training mode returns ``{"heatmaps": (K + 1, N, 68, M, M), "points": (K, N, 68, 2)}`` (points in
map pixel-centre units; K = 0 rows when heatmap-only). Eval mode returns (N, 68, 3): the last
regression unit's points in normalised crop units u = (h + 0.5) / M and a confidence, H_K's
bilinear value at that point clamped to [0, 1] (the heatmap peak where the regression agrees with
the heatmap, lower the further it moved the point away), the layout of r18_ffld's and drr's
output, so the export writes the ``coords`` kind. Only the last unit's decoding runs in eval mode.
"""
from __future__ import annotations

import torch
from torch import nn

from models.landmarks68 import NUM_LANDMARKS
from models.nets.ccnn_units import HeatmapUnit, LightBranch, PaperBranch, RegressionUnit, conv_bn_relu
from models.nets.drr import ConvDeconv
from models.nets.heatmap_layers import DarkDecode, sample_points

INPUT_SIZE = 128
PAPER_INPUT_SIZE = 256
STRIDE = 4
INPUT_MEAN = (127.5, 127.5, 127.5)
INPUT_STD = (127.5, 127.5, 127.5)
COLOUR_ORDER = "rgb"


class CCNN(nn.Module):
    def __init__(self, steps: int = 4, heatmap_only: bool = False, paper: bool = False, input_size: int | None = None,
                 channels: int = 64, light_channels: int = 32, feature_channels: int = 32, unit_channels: int = 48,
                 regression_channels: int = 48, decode_kernel: int = 11):
        super().__init__()
        if steps < 1:
            raise ValueError(f"CCNN needs at least one heatmap unit, got steps={steps}")
        self.input_size = input_size or (PAPER_INPUT_SIZE if paper else INPUT_SIZE)
        if self.input_size % 32:
            raise ValueError(f"input size must be a multiple of 32, got {self.input_size}")
        self.map_size = self.input_size // STRIDE
        self.steps = steps
        self.heatmap_only = heatmap_only
        if paper:
            self.branch_a, self.branch_b = PaperBranch(), PaperBranch()
            features = self.branch_a.out_channels + self.branch_b.out_channels
        else:
            self.branch_a, self.branch_b = ConvDeconv(channels), LightBranch(light_channels)
            features = channels + self.branch_b.out_channels
        self.baseline = nn.Conv2d(features, NUM_LANDMARKS, 1)
        nn.init.normal_(self.baseline.weight, std=0.001)
        nn.init.zeros_(self.baseline.bias)
        # scaled: one 1x1 projection of F that every unit reads (the paper's units read F itself)
        self.unit_features = nn.Identity() if paper else conv_bn_relu(features, feature_channels)
        features = features if paper else feature_channels
        self.heatmap_units = nn.ModuleList(HeatmapUnit(features, unit_channels, paper) for _ in range(steps))
        self.regression_units = nn.ModuleList(
            () if heatmap_only else (RegressionUnit(features, self.map_size, regression_channels, paper)
                                     for _ in range(steps)))
        self.decode = DarkDecode(decode_kernel)

    def _positions(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", enabled=False):
            return self.decode(heatmaps.detach().float())

    def _run(self, x: torch.Tensor, every_unit: bool) -> tuple[list, list]:
        f = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        heat = [self.baseline(f)]
        f = self.unit_features(f)
        for unit in self.heatmap_units:
            heat.append(unit(f, heat[-1]))
        points, previous = [], None
        for k, unit in enumerate(self.regression_units):
            residual, previous = unit(f, heat[k + 1], heat[0], previous)
            if every_unit or k == self.steps - 1:
                points.append(self._positions(heat[k + 1])[0].detach() + residual)
        return heat, points

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training-mode dictionary in any mode (every unit's heatmaps and points)."""
        heat, points = self._run(x, every_unit=True)
        n = x.shape[0]
        stacked = torch.stack(points) if points else x.new_zeros((0, n, NUM_LANDMARKS, 2))
        return {"heatmaps": torch.stack(heat), "points": stacked}

    def forward(self, x: torch.Tensor):
        if self.training:
            return self.forward_all(x)
        heat, points = self._run(x, every_unit=False)
        last = heat[-1].float()
        if self.heatmap_only:
            final, confidence = self._positions(last)
        else:
            final = points[-1]
            confidence = sample_points(last, final).clamp(0, 1)
        u = (final + 0.5) / last.shape[-1]
        return torch.cat([u, confidence.unsqueeze(-1)], dim=-1)

"""DRR: deep recurrent regression with shape-indexed pooling (after Lai et al., "Deep Recurrent
Regression for Facial Landmark Detection").

Input: (N, 3, 192, 192) RGB normalised with ``INPUT_MEAN``/``INPUT_STD`` (0-255 units), the
aligner's 192 px crop (the same crop as mnv2_sdd's).

- Convolution-deconvolution backbone (the departure from the paper's VGG-19, docs/DESIGN.md):
  MobileNetV2 (ImageNet start possible) down to stride 32, then three stride-2 transposed
  convolutions back to stride 4 (48x48), each summed with a 1x1 projection of the backbone's
  features at that stride (U-Net skips), giving ``channels`` feature maps F.
- Initialisation head: a 1x1 convolution to 68 heatmaps (Gaussian targets);
  their DARK peaks give S0 (detached: no gradient flows through the peak position).
- K recurrent steps: at the current shape, shape-indexed pooling (per point and channel the max
  over a ``pool_size`` x ``pool_size`` grid of bilinear samples ``pool_spacing`` feature pixels
  apart, on a 1x1 reduction of F to ``point_channels``), a shared linear projection to the
  step feature F^k (``hidden`` wide), an LSTM cell shared by every step whose hidden state is the
  recurrent shape feature F~^k, and per step the update dS^k = R^k(F^k + F~^k) + b^k (the paper's
  Eq. 7) in feature pixels. ``recurrent=False`` drops F~ (a plain cascade of the same steps, the
  ablation). Each step's shape is detached before the next step pools at it.

Training mode returns ``{"heatmaps": (N, 68, 48, 48), "shapes": (K + 1, N, 68, 2)}`` (S0..SK in
feature pixel-centre units). Eval mode returns (N, 68, 3): the last shape in normalised crop
units u = (h + 0.5) / 48 and a confidence, the initial heatmap's value at the final point
(clamped to [0, 1]), the same (N, 68, 3) layout as r18_ffld's, so the export writes the
``coords`` kind. ``forward_all`` returns the training-mode dictionary in any mode (ablations:
the NME after each step).
"""
from __future__ import annotations

import torch
from torch import nn

from models.landmarks68 import NUM_LANDMARKS
from models.nets.heatmap_layers import DarkDecode, pooling_offsets, sample_points, shape_indexed_max_pool
from models.nets.mobilenetv2 import MobileNetV2Features, init_weights

INPUT_SIZE = 192
FEATURE_SIZE = 48
STRIDE = INPUT_SIZE // FEATURE_SIZE
INPUT_MEAN = (127.5, 127.5, 127.5)
INPUT_STD = (127.5, 127.5, 127.5)
COLOUR_ORDER = "rgb"
# MobileNetV2Features.layers indices whose outputs are the skips at strides 16, 8, 4
SKIP_TAPS = {13: 96, 6: 32, 3: 24}


def _bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ConvDeconv(nn.Module):
    """MobileNetV2 to stride 32, transposed convolutions back to stride 4 with 1x1 skip projections."""

    def __init__(self, channels: int = 64, reduce: int = 128):
        super().__init__()
        self.backbone = MobileNetV2Features()
        self.reduce = _bn_relu(nn.Conv2d(self.backbone.out_channels, reduce, 1, bias=False), reduce)
        widths = (reduce, channels, channels, channels)
        self.up = nn.ModuleList(
            _bn_relu(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1, bias=False), widths[i + 1])
            for i in range(3))
        self.skip = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, widths[i + 1], 1, bias=False), nn.BatchNorm2d(widths[i + 1]))
            for i, cin in enumerate(SKIP_TAPS.values()))
        for part in (self.reduce, self.up, self.skip):
            init_weights(part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = {}
        for i, layer in enumerate(self.backbone.layers):
            x = layer(x)
            if i in SKIP_TAPS:
                taps[i] = x
        x = self.reduce(x)
        for up, skip, tap in zip(self.up, self.skip, SKIP_TAPS):
            x = up(x) + skip(taps[tap])
        return x


class DRR(nn.Module):
    def __init__(self, steps: int = 4, recurrent: bool = True, channels: int = 64, point_channels: int = 32,
                 hidden: int = 256, pool_size: int = 3, pool_spacing: float = 1.0, decode_kernel: int = 11):
        super().__init__()
        self.steps = steps
        self.recurrent = recurrent
        self.features = ConvDeconv(channels)
        self.init_head = nn.Conv2d(channels, NUM_LANDMARKS, 1)
        self.point_reduce = _bn_relu(nn.Conv2d(channels, point_channels, 1, bias=False), point_channels)
        self.project = nn.Sequential(nn.Linear(NUM_LANDMARKS * point_channels, hidden), nn.ReLU(inplace=True))
        self.lstm = nn.LSTMCell(hidden, hidden) if recurrent else None
        self.regress = nn.ModuleList(nn.Linear(hidden, NUM_LANDMARKS * 2) for _ in range(steps))
        self.register_buffer("offsets", pooling_offsets(pool_size, pool_spacing), persistent=False)
        self.decode = DarkDecode(decode_kernel)
        init_weights(self.point_reduce)
        nn.init.normal_(self.init_head.weight, std=0.001)
        nn.init.zeros_(self.init_head.bias)
        for r in self.regress:
            nn.init.zeros_(r.weight)
            nn.init.zeros_(r.bias)

    def forward_all(self, x: torch.Tensor, start: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``start`` (N, 68, 2) in feature pixel-centre units replaces S0 as the first shape the
        steps refine (a tracker's previous-frame start); ``shapes[0]`` is then ``start``."""
        f = self.features(x)
        heatmaps = self.init_head(f)
        if start is None:
            with torch.autocast("cpu", enabled=False):
                shape, _ = self.decode(heatmaps.detach().float())
        else:
            shape = start.float()
        shape = shape.detach()
        pf = self.point_reduce(f)
        n = x.shape[0]
        state = None
        shapes = [shape]
        for k in range(self.steps):
            pooled = shape_indexed_max_pool(pf, shape, self.offsets)  # (N, 68, C)
            feat = self.project(pooled.reshape(n, -1))
            if self.lstm is not None:
                with torch.autocast("cpu", enabled=False):
                    state = self.lstm(feat.float(), state)
                feat = feat + state[0]
            with torch.autocast("cpu", enabled=False):
                delta = self.regress[k](feat.float()).reshape(n, NUM_LANDMARKS, 2)
            shape = shape + delta
            shapes.append(shape)
            shape = shape.detach()
        return {"heatmaps": heatmaps, "shapes": torch.stack(shapes)}

    def forward(self, x: torch.Tensor):
        out = self.forward_all(x)
        if self.training:
            return out
        final = out["shapes"][-1]
        confidence = sample_points(out["heatmaps"].float(), final).clamp(0, 1)
        u = (final + 0.5) / out["heatmaps"].shape[-1]
        return torch.cat([u, confidence.unsqueeze(-1)], dim=-1)

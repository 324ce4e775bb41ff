"""SGFA: score-guided face alignment (after Yan et al., "Score-Guided Face Alignment Network
Under Occlusions").

Input: (N, 3, 128, 128) RGB normalised with ``INPUT_MEAN``/``INPUT_STD`` (0-255 units), the
aligner's 128 px crop. A 7x7 stride-2 convolution to 64x64, three residual blocks, then two
branches of the same shape: an hourglass (symmetric top-down / bottom-up, skip branches at
every scale), two residual blocks to ``head_channels``, nearest-neighbour upsampling to the
output size, one residual block and a 1x1 convolution. One branch gives 68 heatmaps
(Gaussian targets), the other 68 score maps (1 within a radius of the true point).

``forward`` returns both as one (N, 136, S, S) tensor (heatmaps first), so the generic
training loop and evaluation see one output; the export splits it into two named outputs.
``output_size`` is 128 (the paper) or 64 (no upsampling: the measured departure for CPU,
docs/DESIGN.md). Residual blocks are pre-activation bottlenecks (BN, ReLU before every
convolution; the first 7x7 convolution alone sees the raw input).
"""
from __future__ import annotations

import torch
from torch import nn

from models.landmarks68 import NUM_LANDMARKS

INPUT_SIZE = 128
INPUT_MEAN = (127.5, 127.5, 127.5)
INPUT_STD = (127.5, 127.5, 127.5)
COLOUR_ORDER = "rgb"
OUTPUT_SIZES = (128, 64)


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, plus the input
    (through BN-ReLU-1x1 when the channel count changes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1, bias=False),
        )
        self.project = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.pre(x)
        skip = x if self.project is None else self.project(a)
        return skip + self.body(a)


class Hourglass(nn.Module):
    """Symmetric hourglass: at each of ``depth`` scales a skip residual, max-pool down, recurse,
    nearest upsample and add."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.upsample(self.up(self.inner(self.down(self.pool(x)))))


class Branch(nn.Module):
    """Hourglass, two residual blocks to ``head_channels``, upsampling to the output size,
    a residual block, BN-ReLU and a 1x1 convolution to 68 maps."""

    def __init__(self, channels: int, head_channels: int, depth: int, upsample: bool):
        super().__init__()
        self.hourglass = Hourglass(depth, channels)
        self.head = nn.Sequential(Residual(channels, head_channels), Residual(head_channels, head_channels))
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity()
        self.refine = Residual(head_channels, head_channels)
        self.out = nn.Sequential(nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
                                 nn.Conv2d(head_channels, NUM_LANDMARKS, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.refine(self.upsample(self.head(self.hourglass(x)))))


class SGFA(nn.Module):
    def __init__(self, output_size: int = 128, channels: int = 64, head_channels: int = 128, depth: int = 4):
        super().__init__()
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"SGFA output size must be one of {OUTPUT_SIZES}, got {output_size}")
        self.output_size = output_size
        self.stem = nn.Conv2d(3, channels, 7, stride=2, padding=3)
        self.trunk = nn.Sequential(*(Residual(channels, channels) for _ in range(3)))
        upsample = output_size == INPUT_SIZE
        self.heatmap = Branch(channels, head_channels, depth, upsample)
        self.score = Branch(channels, head_channels, depth, upsample)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for branch in (self.heatmap, self.score):
            nn.init.normal_(branch.out[-1].weight, std=0.001)
            nn.init.zeros_(branch.out[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(self.stem(x))
        return torch.cat([self.heatmap(x), self.score(x)], dim=1)


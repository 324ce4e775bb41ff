"""The parts of CCNN (``models.nets.ccnn``): base branches, heatmap units, regression units.

Two sizes of each: ``paper`` (our reading of the paper's Tables 2-4: plain convolutions with
64-128 channels at 256/128/64 px, 7x7, 9x9 and 13x13 filters at 64x64; built to measure its cost)
and the scaled parts the shipped variant uses (MobileNetV2 conv-deconv branch, a light CNN branch,
separable and dilated convolutions in place of the wide filters; docs/DESIGN.md, "CCNN").
"""
from __future__ import annotations

import torch
from torch import nn

from models.landmarks68 import NUM_LANDMARKS
from models.nets.mobilenetv2 import init_weights


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1,
                 groups: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def separable(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Depthwise ``kernel`` x ``kernel`` (dilated) then pointwise, each with BN + ReLU."""
    return nn.Sequential(conv_bn_relu(cin, cin, kernel, stride, dilation, groups=cin), conv_bn_relu(cin, cout))


# ---------------------------------------------------------------- base branches


class LightBranch(nn.Module):
    """The second base CNN of the scaled variant: stride 4, ``channels`` maps, receptive field
    widened by a dilated separable block (about 0.04 GFLOPs at 192 px)."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 16, 3, stride=2), separable(16, channels, 3, stride=2))
        self.blocks = nn.ModuleList([separable(channels, channels, 3), separable(channels, channels, 3, dilation=2)])
        self.out_channels = channels
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return x


class PaperBranch(nn.Module):
    """A base CNN at the paper's size: 3x3 convolutions with 64 channels at full size and 128 at
    half size (max pooling between), then at quarter size 3x3, 9x9 and 13x13 convolutions and a 1x1."""

    def __init__(self):
        super().__init__()
        plan = [(3, 64, 3), (64, 64, 3), "pool", (64, 128, 3), (128, 128, 3), "pool",
                (128, 128, 3), (128, 128, 9), (128, 64, 13), (64, 128, 1)]
        self.layers = nn.Sequential(*(nn.MaxPool2d(2) if p == "pool" else conv_bn_relu(p[0], p[1], p[2]) for p in plan))
        self.out_channels = 128
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# ---------------------------------------------------------------- heatmap units


class HeatmapUnit(nn.Module):
    """Features + the previous heatmaps -> refined heatmaps (the paper's B1-B4).

    Scaled: 1x1 to ``channels``, a separable 7x7, a separable 3x3 dilated 6 (the 13x13 receptive
    field of the paper's widest filter), 1x1 to 68. Paper: 7x7 (64), 13x13 (64), 1x1 (128), 1x1 (68).
    """

    def __init__(self, cin: int, channels: int = 48, paper: bool = False):
        super().__init__()
        cin += NUM_LANDMARKS
        if paper:
            self.body = nn.Sequential(conv_bn_relu(cin, 64, 7), conv_bn_relu(64, 64, 13), conv_bn_relu(64, 128))
            last = 128
        else:
            self.body = nn.Sequential(conv_bn_relu(cin, channels), separable(channels, channels, 7),
                                      separable(channels, channels, 3, dilation=6))
            last = channels
        self.out = nn.Conv2d(last, NUM_LANDMARKS, 1)
        init_weights(self.body)
        nn.init.normal_(self.out.weight, std=0.001)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([features, heatmaps.to(features.dtype)], dim=1)))


# ---------------------------------------------------------------- regression units


class RegressionUnit(nn.Module):
    """Features + its heatmap unit's heatmaps + the baseline heatmaps -> (N, 68, 2) residual of the
    heatmap-based positions, in heatmap pixels (the paper's C1-C6).

    Downsamples to 1/8 of the map (scaled: 2x2 average pooling, a 1x1 convolution, two stride-2
    separable stages; paper: 3x3 convolutions and max pooling to 1/16), adds the previous regression unit's last feature map (the regression
    cascade: each unit refines on its predecessor's evidence), and a fully connected layer, zero at
    the start, gives the residual.
    """

    def __init__(self, cin: int, map_size: int, channels: int = 48, paper: bool = False):
        super().__init__()
        cin += 2 * NUM_LANDMARKS
        if paper:
            widths = (64, 128, 128, 256)
            layers, c = [], cin
            for w in widths:
                layers += [conv_bn_relu(c, w, 3), nn.MaxPool2d(2)]
                c = w
            self.body = nn.Sequential(*layers)
            side = map_size // 16
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, 512), nn.ReLU(inplace=True))
            self.out = nn.Linear(512, NUM_LANDMARKS * 2)
        else:
            widths = (channels, 96, 128)
            self.body = nn.Sequential(nn.AvgPool2d(2), conv_bn_relu(cin, widths[0]),
                                      *(separable(widths[i], widths[i + 1], 3, stride=2) for i in range(2)))
            side = map_size // 8
            self.fc = nn.Flatten()
            self.out = nn.Linear(widths[-1] * side * side, NUM_LANDMARKS * 2)
        init_weights(self.body)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, heatmaps: torch.Tensor, baseline: torch.Tensor,
                previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (residual (N, 68, 2) in float32, this unit's last feature map for the next unit)."""
        x = torch.cat([features, heatmaps.to(features.dtype), baseline.to(features.dtype)], dim=1)
        z = self.body(x)
        if previous is not None:
            z = z + previous
        with torch.autocast("cpu", enabled=False):
            residual = self.out(self.fc(z.float()).float())
        return residual.reshape(-1, NUM_LANDMARKS, 2), z

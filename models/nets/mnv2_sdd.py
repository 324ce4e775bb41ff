"""MobileNetV2-SDD: MobileNetV2 (width 1.0) with a light up-sampling heatmap head.

Input: (N, 3, 192, 192) RGB normalised with ``INPUT_MEAN``/``INPUT_STD`` (0-255 units).
Output: (N, 68, 48, 48) Gaussian heatmaps (stride 4). Heatmap pixel (u, v) covers crop
pixels [4u, 4u+4): a heatmap pixel-centre coordinate h maps to crop x = 4 * (h + 0.5) - 0.5.

Head ("SDD"): 1x1 reduce 1280 -> ``reduce`` (BN, ReLU); one pixel-shuffle x2 block
(conv, BN, ReLU, PixelShuffle); two stride-2 transposed convolutions (BN, ReLU);
a final 1x1 convolution to 68 heatmaps.
"""
from __future__ import annotations

import torch
from torch import nn

from models.landmarks68 import NUM_LANDMARKS
from models.nets.mobilenetv2 import MobileNetV2Features, init_weights

INPUT_SIZE = 192
HEATMAP_SIZE = 48
STRIDE = INPUT_SIZE // HEATMAP_SIZE
INPUT_MEAN = (127.5, 127.5, 127.5)
INPUT_STD = (127.5, 127.5, 127.5)
COLOUR_ORDER = "rgb"


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MobileNetV2SDD(nn.Module):
    def __init__(self, reduce: int = 256, shuffle_channels: int = 128, deconv_channels=(64, 64), width: float = 1.0):
        super().__init__()
        self.backbone = MobileNetV2Features(width=width)
        self.reduce = nn.Sequential(
            nn.Conv2d(self.backbone.out_channels, reduce, 1, bias=False), nn.BatchNorm2d(reduce), nn.ReLU(inplace=True)
        )
        self.shuffle = nn.Sequential(
            nn.Conv2d(reduce, shuffle_channels * 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(shuffle_channels * 4),
            nn.ReLU(inplace=True),
            nn.PixelShuffle(2),
        )
        self.deconv = nn.Sequential(
            _deconv(shuffle_channels, deconv_channels[0]), _deconv(deconv_channels[0], deconv_channels[1])
        )
        self.final = nn.Conv2d(deconv_channels[1], NUM_LANDMARKS, 1)
        for part in (self.reduce, self.shuffle, self.deconv):
            init_weights(part)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        x = self.shuffle(self.reduce(x))
        return self.final(self.deconv(x))

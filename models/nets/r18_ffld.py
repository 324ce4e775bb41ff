"""ResNet18-FFLD: a quarter-width ResNet18 regressing 68 points (S0), refined by three CropNets.

Input: (N, 3, 224, 224) RGB normalised with ``INPUT_MEAN``/``INPUT_STD`` (0-255 units).
Coordinates are normalised crop units u ((0, 0) top-left corner of the crop, (1, 1) the
bottom-right one; crop pixel x = u * 224 - 0.5). A feature map of side W then has its
pixel centre f at f = u * W - 0.5, so ``grid_sample`` (align_corners=False) takes g = 2u - 1
for every map.

Backbone (widths 16, 32, 64, 128): stem 7x7/2 -> 112x112x16, max-pool, four stages of
two basic blocks at 56 (16), 28 (32), 14 (64), 7 (128). S0 = ``mean_shape`` + 0.1 x FC of
the flattened 7x7x128 map.

Refinement stage k (k = 1, 2, 3 on the 28, 56 and 112 maps): an 8x8 bilinear patch with
one-feature-pixel spacing is cropped around each current estimate (``grid_sample``: the
gradient reaches the backbone through the features and through the crop locations); a
per-landmark 1x1 "channel selection" convolution (grouped, 68 groups) reduces each
patch to 4 channels; the CropNet (BatchNorm, one residual block to 128 channels, 2x2
max-pool, FC to 2 x 68 initialised at zero) predicts the correction in feature pixels of
its map: delta_u = FC / W. Cropping first and selecting channels on the 8x8 patches costs
68 x 64 samples per map instead of convolving the whole map.

Confidence: an auxiliary head (FC on the last CropNet's pooled features and the
backbone's global average) gives per-landmark logits; sigmoid(logit) in [0, 1] is trained
to be exp(-e^2 / (2 s^2)) of the final point's error e (inter-ocular units, s =
``CONFIDENCE_SIGMA`` of the task) and 0 on non-face crops (see ``models.training.ffld_task``).

In training mode the network returns an ``FFLDOutput`` with every stage; in eval mode a
(N, 68, 3) tensor [u_x, u_y, confidence] of the final stage.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.landmarks68 import NUM_LANDMARKS

INPUT_SIZE = 224
INPUT_MEAN = (127.5, 127.5, 127.5)
INPUT_STD = (127.5, 127.5, 127.5)
COLOUR_ORDER = "rgb"
WIDTHS = (16, 32, 64, 128)
PATCH = 8
SELECTED_CHANNELS = 4
CROPNET_CHANNELS = 128
STAGE_SOURCES = ("f28", "f56", "f112")  # feature map each refinement stage crops from
S0_SCALE = 0.1  # S0 = mean shape + S0_SCALE * FC output


@dataclass
class FFLDOutput:
    """Everything the training losses need (training mode)."""

    shapes: list[torch.Tensor]  # S0, S1, S2, S3 that were computed, each (N, 68, 2) float32, u units
    confidence_logits: torch.Tensor | None  # (N, 68) float32, None while the stages are off
    features: dict[str, torch.Tensor]  # the maps the stages crop from


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.conv2 = _conv_bn(cout, cout, 3)
        self.shortcut = _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class QuarterResNet18(nn.Module):
    """Returns the 112, 56, 28 and 7 px maps."""

    def __init__(self, widths=WIDTHS):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f112 = self.stem(x)
        f56 = self.layer1(self.pool(f112))
        f28 = self.layer2(f56)
        f7 = self.layer4(self.layer3(f28))
        return {"f112": f112, "f56": f56, "f28": f28, "f7": f7}


def patch_offsets(patch: int = PATCH) -> torch.Tensor:
    """(patch, patch, 2) offsets (x, y) in feature pixels, centred on 0 (-3.5 ... 3.5 for 8)."""
    d = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2
    return torch.stack(torch.meshgrid(d, d, indexing="xy"), dim=-1)


def crop_patches(features: torch.Tensor, points_u: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Bilinear (P, P) patches of ``features`` (N, C, H, W) around (N, K, 2) u-unit points.

    Returns (N, K * C, P, P): landmark k's C channels are rows k*C ... (k+1)*C - 1.
    Outside the map reads zeros.
    """
    c, h, w = (int(d) for d in features.shape[1:])
    k, p = int(points_u.shape[1]), int(offsets.shape[0])
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float32)
    grid = (2 * points_u - 1)[:, :, None, None, :] + offsets * scale  # (N, K, P, P, 2)
    sampled = F.grid_sample(features.float(), grid.reshape(-1, k * p, p, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (N, C, K*P, P)
    return sampled.reshape(-1, c, k, p, p).transpose(1, 2).reshape(-1, k * c, p, p)


class CropNet(nn.Module):
    """(N, K*4, 8, 8) selected patches -> (N, 2K) correction and (N, 128*4*4) pooled features."""

    def __init__(self, cin: int, channels: int = CROPNET_CHANNELS, points: int = NUM_LANDMARKS, patch: int = PATCH):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.block = BasicBlock(cin, channels)
        self.pool = nn.MaxPool2d(2)
        self.features = channels * (patch // 2) ** 2
        self.fc = nn.Linear(self.features, 2 * points)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pool(self.block(self.norm(x))).flatten(1)
        with torch.autocast("cpu", enabled=False):
            return self.fc(pooled.float()), pooled


class RefineStage(nn.Module):
    def __init__(self, source_channels: int, points: int = NUM_LANDMARKS):
        super().__init__()
        self.points = points
        self.select = nn.Conv2d(points * source_channels, points * SELECTED_CHANNELS, 1, groups=points, bias=False)
        self.cropnet = CropNet(points * SELECTED_CHANNELS, points=points)

    def forward(self, features: torch.Tensor, shape: torch.Tensor, offsets: torch.Tensor):
        patches = crop_patches(features, shape, offsets)
        delta, pooled = self.cropnet(self.select(patches.to(features.dtype)))
        side = torch.tensor([float(features.shape[3]), float(features.shape[2])])
        return shape + delta.view(-1, self.points, 2) / side, pooled


class R18FFLD(nn.Module):
    """See the module docstring. ``refine=False`` trains S0 alone (the baseline phase): in
    training mode the stages are skipped; in eval mode they always run (zero-initialised
    CropNets leave S0 unchanged)."""

    def __init__(self, refine: bool = True, mean_shape: torch.Tensor | None = None):
        super().__init__()
        self.backbone = QuarterResNet18()
        self.s0 = nn.Linear(WIDTHS[3] * 7 * 7, 2 * NUM_LANDMARKS)
        nn.init.normal_(self.s0.weight, std=1e-3)
        nn.init.zeros_(self.s0.bias)
        channels = {"f28": WIDTHS[1], "f56": WIDTHS[0], "f112": WIDTHS[0]}
        self.stages = nn.ModuleList(RefineStage(channels[s]) for s in STAGE_SOURCES)
        self.confidence = nn.Linear(self.stages[-1].cropnet.features + WIDTHS[3], NUM_LANDMARKS)
        nn.init.zeros_(self.confidence.weight)
        nn.init.zeros_(self.confidence.bias)
        shape = torch.full((NUM_LANDMARKS, 2), 0.5) if mean_shape is None else torch.as_tensor(mean_shape).float()
        self.register_buffer("mean_shape", shape.clone())
        self.register_buffer("offsets", patch_offsets())
        self.refine = refine
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, all_stages: bool = False):
        """Training mode or ``all_stages``: an ``FFLDOutput``; eval mode: (N, 68, 3) [u_x, u_y, confidence]."""
        refine = self.refine or not self.training
        features = self.backbone(x)
        with torch.autocast("cpu", enabled=False):
            s0 = self.s0(features["f7"].float().flatten(1))
        shapes = [self.mean_shape + S0_SCALE * s0.view(-1, NUM_LANDMARKS, 2)]
        logits = None
        if refine:
            for stage, source in zip(self.stages, STAGE_SOURCES):
                shape, pooled = stage(features[source], shapes[-1], self.offsets)
                shapes.append(shape)
            glob = features["f7"].float().mean(dim=(2, 3))
            with torch.autocast("cpu", enabled=False):
                logits = self.confidence(torch.cat([pooled.float(), glob], dim=1))
        if self.training or all_stages:
            return FFLDOutput(shapes, logits, features)
        conf = torch.sigmoid(logits)
        return torch.cat([shapes[-1], conf.unsqueeze(-1)], dim=-1)

"""Torch layers on heatmaps and feature maps shared by networks and the export (ONNX-exportable).

- ``DarkDecode``: heatmaps -> sub-pixel peaks and peak values, the same DARK step as the host
  decoder ``models.heatmap_decode`` (argmax, Gaussian blur, second-order Taylor offset in the
  log domain, clamped to one pixel); not differentiable in the peak position.
- ``sample_points``: bilinear values of maps at points given in heatmap pixel-centre units.
- ``shape_indexed_max_pool``: per point and channel, the maximum of the feature map over a
  ``size`` x ``size`` grid of bilinear samples around the point (DRR's shape-indexed pooling).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DarkDecode(nn.Module):
    """(N, K, H, W) heatmaps -> coords (N, K, 2) in heatmap pixel-centre units, peak (N, K) in [0, 1]."""

    def __init__(self, kernel: int):
        super().__init__()
        from models.heatmap_decode import gaussian_kernel_1d

        self.kernel = kernel
        g = torch.tensor(gaussian_kernel_1d(kernel), dtype=torch.float32)
        # the 2D Gaussian blur as two 1D passes: the same result, 2k instead of k^2 multiplications
        # (as one 9x9 convolution it took 4.6 of drr's 10.6 ms in ONNX Runtime, 2026-12-07)
        self.register_buffer("gx", g.view(1, 1, 1, kernel), persistent=False)
        self.register_buffer("gy", g.view(1, 1, kernel, 1), persistent=False)

    def forward(self, hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, h * w)
        peak, idx = flat.max(dim=2)
        px, py = idx % w, torch.div(idx, w, rounding_mode="floor")
        # blurred map one pixel beyond each border (zeros outside), as the host decoder sees it
        pad = self.kernel // 2 + 1
        smooth = F.conv2d(F.conv2d(hm.reshape(n * k, 1, h, w), self.gx, padding=(0, pad)), self.gy, padding=(pad, 0))
        logm = torch.log(torch.clamp(smooth, min=1e-10)).reshape(n, k, (h + 2) * (w + 2))

        def at(dy, dx):
            return torch.gather(logm, 2, ((py + 1 + dy) * (w + 2) + px + 1 + dx).unsqueeze(2)).squeeze(2)

        c = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = at(0, 1) - 2 * c + at(0, -1)
        dyy = at(1, 0) - 2 * c + at(-1, 0)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy * dxy
        ok = (dxx < 0) & (det > 1e-6)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = torch.where(ok, -(dyy * dx - dxy * dy) / safe, torch.zeros_like(det))
        oy = torch.where(ok, -(dxx * dy - dxy * dx) / safe, torch.zeros_like(det))
        ox = torch.where((px == 0) | (px == w - 1), torch.zeros_like(ox), ox)
        oy = torch.where((py == 0) | (py == h - 1), torch.zeros_like(oy), oy)
        coords = torch.stack([px.float() + ox.clamp(-1, 1), py.float() + oy.clamp(-1, 1)], dim=-1)
        return coords, peak.clamp(0, 1)


def _grid(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Heatmap pixel-centre points (..., 2) -> grid_sample units (align_corners=False)."""
    x = (points[..., 0] + 0.5) * (2.0 / width) - 1.0
    y = (points[..., 1] + 0.5) * (2.0 / height) - 1.0
    return torch.stack([x, y], dim=-1)


def sample_points(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) maps, (N, K, 2) points -> (N, K): map k's bilinear value at point k (zero outside)."""
    n, k, h, w = maps.shape
    grid = _grid(points, h, w).reshape(n * k, 1, 1, 2)
    return F.grid_sample(maps.reshape(n * k, 1, h, w), grid, align_corners=False).reshape(n, k)


def pooling_offsets(size: int, spacing: float) -> torch.Tensor:
    """(size * size, 2) offsets of a square grid centred on 0, ``spacing`` apart (x fastest)."""
    d = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * spacing
    gy, gx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def shape_indexed_max_pool(features: torch.Tensor, points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) features, (N, K, 2) points in feature pixel-centre units, (P, 2) offsets ->
    (N, K, C): per point and channel the max over the P bilinear samples at point + offset
    (zero outside the map)."""
    n, c, h, w = features.shape
    k = points.shape[1]
    grid = _grid(points[:, :, None, :] + offsets.to(points.dtype), h, w)  # (N, K, P, 2)
    sampled = F.grid_sample(features, grid.to(features.dtype), align_corners=False)  # (N, C, K, P)
    return sampled.amax(dim=3).transpose(1, 2).reshape(n, k, c)

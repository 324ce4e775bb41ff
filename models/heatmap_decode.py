"""Heatmaps -> landmark coordinates (numpy, vectorised over batch and landmarks).

``decode_heatmaps(heatmaps, method="dark"|"argmax", kernel=...)`` returns coordinates in
heatmap pixel-centre units ((0, 0) is the centre of the top-left heatmap pixel) and a
per-landmark confidence.

DARK (Zhang et al., CVPR 2020): smooth each heatmap with a Gaussian (``kernel`` x
``kernel``), take the log, and refine the integer argmax by one Newton step of the
second-order Taylor expansion, offset = -H^-1 g, with central finite differences for the
gradient g and Hessian H at the peak. The step is skipped (offset 0) where H is not
negative definite (not a maximum, or nearly singular), along an axis where the peak lies
on the heatmap border, and it is clipped to +-1 pixel.

Confidence: the raw heatmap value at the integer peak, clipped to [0, 1]. Targets are
unnormalised Gaussians with peak 1, so a confident, well-placed prediction scores near 1
and a diffuse or missing one near 0.

``sample_maps(maps, coords)``: bilinear values of other maps (SGFA's score maps) at decoded points.
"""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_KERNEL = 9


def argmax_peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer peak columns, rows and peak values, each (N, K)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    values = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    return idx % w, idx // w, values


def gaussian_kernel_1d(kernel: int) -> np.ndarray:
    """OpenCV's Gaussian for an odd ``kernel`` size (sigma = 0.3 * ((kernel - 1) / 2 - 1) + 0.8)."""
    return cv2.getGaussianKernel(kernel, 0).astype(np.float64).ravel()


def smoothed_neighbourhood(heatmaps: np.ndarray, px: np.ndarray, py: np.ndarray, kernel: int) -> np.ndarray:
    """The Gaussian-smoothed heatmap on the 3x3 pixels around each peak, (N, K, 3, 3).

    Only these nine values enter the Taylor step, so the blur is evaluated there alone:
    a (kernel + 2)-square patch around the peak (zeros outside the map) times the
    separable kernel, instead of blurring whole maps.
    """
    n, k, h, w = heatmaps.shape
    r = kernel // 2 + 1
    padded = np.pad(heatmaps, ((0, 0), (0, 0), (r, r), (r, r)))
    span = np.arange(kernel + 2)
    rows = (py[..., None, None] + span[:, None])  # top-left of the patch is (py - r) + r in padded coords
    cols = (px[..., None, None] + span[None, :])
    patch = padded[np.arange(n)[:, None, None, None], np.arange(k)[None, :, None, None], rows, cols]
    g = gaussian_kernel_1d(kernel)
    band = np.zeros((3, kernel + 2))
    for j in range(3):
        band[j, j : j + kernel] = g
    return band @ patch.astype(np.float64) @ band.T


def dark_offsets(log_nb: np.ndarray, px: np.ndarray, py: np.ndarray, width: int, height: int) -> np.ndarray:
    """Newton offsets (N, K, 2) from 3x3 log-neighbourhoods, with the guards above."""
    c = log_nb[..., 1, 1]
    dx = 0.5 * (log_nb[..., 1, 2] - log_nb[..., 1, 0])
    dy = 0.5 * (log_nb[..., 2, 1] - log_nb[..., 0, 1])
    dxx = log_nb[..., 1, 2] - 2 * c + log_nb[..., 1, 0]
    dyy = log_nb[..., 2, 1] - 2 * c + log_nb[..., 0, 1]
    dxy = 0.25 * (log_nb[..., 2, 2] - log_nb[..., 2, 0] - log_nb[..., 0, 2] + log_nb[..., 0, 0])
    det = dxx * dyy - dxy * dxy
    ok = (dxx < 0) & (det > 1e-6)
    safe = np.where(ok, det, 1.0)
    off_x = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
    off_y = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
    off_x = np.where((px == 0) | (px == width - 1), 0.0, off_x)
    off_y = np.where((py == 0) | (py == height - 1), 0.0, off_y)
    return np.clip(np.stack([off_x, off_y], axis=-1), -1.0, 1.0)


def decode_heatmaps(
    heatmaps: np.ndarray, method: str = "dark", kernel: int = DEFAULT_KERNEL
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) heatmaps -> coords (N, K, 2) float32 (x, y) in heatmap pixel-centre units,
    confidence (N, K) float32 in [0, 1]."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W), got shape {heatmaps.shape}")
    if method not in ("dark", "argmax"):
        raise ValueError(f"unknown decode method {method!r}: use 'dark' or 'argmax'")
    if method == "dark" and (kernel < 1 or kernel % 2 == 0):
        raise ValueError(f"DARK kernel must be a positive odd size, got {kernel}")
    px, py, peak = argmax_peaks(heatmaps)
    coords = np.stack([px, py], axis=-1).astype(np.float32)
    if method == "dark":
        nb = smoothed_neighbourhood(heatmaps, px, py, kernel)
        h, w = heatmaps.shape[2:]
        coords += dark_offsets(np.log(np.maximum(nb, 1e-10)), px, py, w, h).astype(np.float32)
    return coords, np.clip(peak, 0.0, 1.0).astype(np.float32)


def sample_maps(maps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear values of (N, K, H, W) maps at (N, K, 2) heatmap pixel-centre coordinates (clamped
    to the map), clipped to [0, 1]: each point's weight read from its score map."""
    n, k, h, w = maps.shape
    x = np.clip(coords[..., 0], 0, w - 1)
    y = np.clip(coords[..., 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    fx, fy = x - x0, y - y0
    flat = maps.reshape(n, k, h * w)

    def at(yy, xx):
        return np.take_along_axis(flat, (yy * w + xx)[..., None], axis=2)[..., 0]

    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    value = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1)))
    return np.clip(value, 0.0, 1.0).astype(np.float32)


def _benchmark(runs: int = 2000) -> None:
    """``python -m models.heatmap_decode``: CPU time per batch-1 decode of 68 48x48 maps."""
    import time

    rng = np.random.default_rng(0)
    grid = np.arange(48.0)
    centres = rng.uniform(2, 45, (1, 68, 2))
    maps = (np.exp(-((grid - centres[..., 1:2]) ** 2) / 4.5)[..., :, None]
            * np.exp(-((grid - centres[..., 0:1]) ** 2) / 4.5)[..., None, :]).astype(np.float32)
    for method in ("argmax", "dark"):
        decode_heatmaps(maps, method)
        times = []
        for _ in range(runs):
            t = time.process_time()
            decode_heatmaps(maps, method)
            times.append(time.process_time() - t)
        print(f"{method}: median {1e3 * np.median(times):.3f} ms CPU per batch-1 decode (68 x 48 x 48)")


if __name__ == "__main__":
    _benchmark()


def dark_kernel(sigma: float) -> int:
    """DARK smoothing kernel for targets of Gaussian ``sigma`` (heatmap pixels): odd, about
    6 sigma, at least 5."""
    k = max(5, int(round(6 * sigma)))
    return k if k % 2 else k + 1

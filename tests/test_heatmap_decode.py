"""Heatmap decoding: sub-pixel accuracy of DARK vs argmax, guards, confidence, shapes."""
import numpy as np
import pytest

from models.heatmap_decode import decode_heatmaps


def gaussian_maps(centres: np.ndarray, size: int = 48, sigma: float = 1.5, peak: float = 1.0) -> np.ndarray:
    """(N, K, size, size) Gaussians centred on (N, K, 2) heatmap pixel-centre coordinates."""
    grid = np.arange(size, dtype=np.float64)
    gx = np.exp(-((grid - centres[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((grid - centres[..., 1:2]) ** 2) / (2 * sigma**2))
    return (peak * gy[..., :, None] * gx[..., None, :]).astype(np.float32)


def test_dark_recovers_subpixel_peaks_argmax_does_not():
    rng = np.random.default_rng(1)
    centres = rng.uniform(3, 44, (2, 68, 2))
    maps = gaussian_maps(centres)
    dark, conf = decode_heatmaps(maps, method="dark")
    argmax, _ = decode_heatmaps(maps, method="argmax")
    dark_err = np.abs(dark - centres).max()
    argmax_err = np.abs(argmax - centres).max()
    assert dark.shape == (2, 68, 2) and dark.dtype == np.float32
    assert conf.shape == (2, 68) and conf.dtype == np.float32
    assert dark_err < 0.05
    assert argmax_err > 0.3  # integer peaks are up to half a pixel off
    assert np.abs(dark - centres).mean() < np.abs(argmax - centres).mean() / 10


@pytest.mark.parametrize("sigma,kernel", [(1.0, 5), (2.0, 11), (3.0, 17)])
def test_dark_accuracy_across_sigma_and_kernel(sigma, kernel):
    centres = np.array([[[20.3, 17.8], [30.75, 25.25], [10.5, 40.1]]])
    coords, _ = decode_heatmaps(gaussian_maps(centres, sigma=sigma), method="dark", kernel=kernel)
    assert np.abs(coords - centres).max() < 0.05


def test_confidence_is_the_clipped_peak_value():
    centres = np.array([[[20.0, 20.0], [10.0, 30.0], [30.0, 10.0]]])
    maps = gaussian_maps(centres) * np.array([0.6, 1.7, -0.2], np.float32)[None, :, None, None]
    _, conf = decode_heatmaps(maps)
    np.testing.assert_allclose(conf[0], [0.6, 1.0, 0.0], atol=1e-6)


def test_guards_give_finite_results_for_flat_border_and_negative_maps():
    maps = np.zeros((1, 4, 48, 48), np.float32)
    maps[0, 1] = gaussian_maps(np.array([[[0.0, 47.0]]]))[0, 0]  # peak on a corner
    maps[0, 2] = -1.0  # all negative: log of the clipped blur is flat
    maps[0, 3, 10, 10] = 1.0  # a single spike
    coords, conf = decode_heatmaps(maps, method="dark")
    assert np.all(np.isfinite(coords)) and np.all(np.isfinite(conf))
    np.testing.assert_allclose(coords[0, 1], [0.0, 47.0], atol=1e-6)  # no step along border axes
    assert np.all(np.abs(coords[0, 3] - [10, 10]) <= 1.0)
    assert np.all((conf >= 0) & (conf <= 1))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="method"):
        decode_heatmaps(np.zeros((1, 1, 8, 8), np.float32), method="soft")
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        decode_heatmaps(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="odd"):
        decode_heatmaps(np.zeros((1, 1, 8, 8), np.float32), kernel=4)

"""NME, CED, AUC and FR against hand-computed numbers; misses are failures."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from app.eval.plots import plot_ced
from models.metrics import (
    MISS,
    auc,
    ced,
    count_misses,
    failure_rate,
    mean_nme,
    nme,
    nme_per_face,
    normalising_distance,
)
from models.landmarks68 import INNER_49, JAW


def known_shape() -> np.ndarray:
    """A 68-point shape whose outer eye corners are 100 px apart and eye centres 70 px apart."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, size=(68, 2))
    gt[36:42] = [(0, 0), (10, -5), (20, -5), (30, 0), (20, 5), (10, 5)]  # mean (15, 0)
    gt[42:48] = [(70, 0), (80, -5), (90, -5), (100, 0), (90, 5), (80, 5)]  # mean (85, 0); 45 at (100, 0)
    return gt


def test_normalising_distances():
    gt = known_shape()
    assert normalising_distance(gt, "io") == pytest.approx(100.0)
    assert normalising_distance(gt, "ip") == pytest.approx(70.0)
    with pytest.raises(ValueError, match="normaliser"):
        normalising_distance(gt, "bbox")


def test_box_normaliser_is_the_root_of_the_landmark_box_area():
    gt = known_shape()
    gt[:, 0] = np.interp(gt[:, 0], (gt[:, 0].min(), gt[:, 0].max()), (10, 170))  # width 160
    gt[:, 1] = np.interp(gt[:, 1], (gt[:, 1].min(), gt[:, 1].max()), (-20, 70))  # height 90
    assert normalising_distance(gt, "box") == pytest.approx(120.0)  # sqrt(160 * 90)
    pred = gt + [3.0, 4.0]  # 5 px off everywhere
    assert nme(pred, gt, "box") == pytest.approx(5.0 / 120.0)
    profile = gt.copy()
    profile[45] = profile[36]  # outer eye corners coincide (a profile face): io is undefined, box is not
    with pytest.raises(ValueError, match="zero io"):
        nme(pred, profile, "io")
    assert nme(pred, profile, "box") > 0


def test_nme_of_a_known_offset():
    gt = known_shape()
    pred = gt + [3.0, 4.0]  # every point 5 px off
    assert nme(pred, gt, "io") == pytest.approx(0.05)
    assert nme(pred, gt, "ip") == pytest.approx(5 / 70)
    assert nme(gt, gt) == 0.0


def test_nme_over_a_subset_keeps_the_full_normaliser():
    gt = known_shape()
    pred = gt.copy()
    pred[list(JAW)] += [6.0, 8.0]  # 17 jaw points 10 px off, the rest exact
    assert nme(pred, gt, "io") == pytest.approx(17 * 10 / 68 / 100)
    assert nme(pred, gt, "io", indices=INNER_49) == 0.0
    assert nme(pred, gt, "io", indices=JAW) == pytest.approx(0.1)


def test_nme_rejects_mismatched_shapes():
    gt = known_shape()
    with pytest.raises(ValueError, match="must both be"):
        nme(gt[:49], gt)


def test_auc_exact_values():
    assert auc(np.zeros(10)) == 1.0
    assert auc([0.04]) == pytest.approx(0.5)
    assert auc([0.02, 0.06, MISS]) == pytest.approx((0.75 + 0.25 + 0.0) / 3)
    assert auc([0.08, 0.5]) == 0.0
    assert auc([0.05], threshold=0.1) == pytest.approx(0.5)


def test_auc_is_the_area_under_the_ced():
    errors = np.random.default_rng(1).gamma(4.0, 0.01, size=200)
    errors[::17] = MISS
    x = np.linspace(0, 0.08, 200_001)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it (2.4 removed trapz)
    area = trapezoid(ced(errors, x), x) / 0.08
    assert auc(errors) == pytest.approx(area, abs=1e-4)


def test_ced_counts_faces_at_or_below_each_threshold():
    errors = [0.01, 0.02, 0.02, 0.05, MISS]
    assert ced(errors, [0.0, 0.01, 0.02, 0.049, 0.08, 1e9]).tolist() == [0.0, 0.2, 0.6, 0.6, 0.8, 0.8]


def test_failure_rate_counts_misses_and_errors_above_the_threshold():
    assert failure_rate([0.02, 0.08, 0.09, MISS]) == pytest.approx(0.5)  # 0.08 itself is no failure
    assert failure_rate(np.zeros(5)) == 0.0
    assert failure_rate([MISS, MISS]) == 1.0


def test_mean_nme_is_over_found_faces_only():
    assert mean_nme([0.02, 0.04, MISS]) == pytest.approx(0.03)
    assert math.isnan(mean_nme([MISS]))
    assert count_misses([0.02, MISS, MISS]) == 2


def test_nan_errors_are_rejected():
    with pytest.raises(ValueError, match="miss is math.inf"):
        auc([0.02, math.nan])


def test_plot_ced_writes_a_png(tmp_path):
    path = plot_ced({"a": [0.01, 0.03, MISS], "b": [0.02, 0.02, 0.1]}, tmp_path / "sub" / "ced.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image.shape == (480, 640, 3)
    assert image.min() < 100  # something was drawn


@pytest.mark.parametrize("norm", ["io", "ip"])
def test_nme_per_face_equals_nme_of_each_face(norm):
    rng = np.random.default_rng(1)
    gt = np.stack([known_shape() + rng.normal(0, 1, (68, 2)) for _ in range(4)])
    pred = gt + rng.normal(0, 3, gt.shape)
    expected = [nme(p, g, norm, indices=INNER_49) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(nme_per_face(pred, gt, norm, indices=INNER_49), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="must both be"):
        nme_per_face(pred[:2], gt)

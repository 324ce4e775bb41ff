import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import align
from models.datasets import list_annotated
from models.landmarks68 import FIVE_POINT_MASK, MIRROR, keypoints_from_landmarks
from tests.conftest import read_image


def _similarity(scale, angle, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


@settings(max_examples=200, deadline=None)
@given(
    scale=st.floats(0.05, 20.0),
    angle=st.floats(-np.pi, np.pi),
    tx=st.floats(-2000, 2000),
    ty=st.floats(-2000, 2000),
)
def test_estimate_similarity_recovers_an_exact_similarity(scale, angle, tx, ty):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, size=(6, 2))
    m = _similarity(scale, angle, tx, ty)
    est = align.estimate_similarity(src, align.transform_points(src, m))
    assert np.allclose(est, m, atol=1e-6 * max(1.0, abs(tx), abs(ty)))


def test_round_trip_moves_no_point_more_than_a_hundredth_of_a_pixel(helen_test_dir):
    for item in list_annotated(helen_test_dir)[:40]:
        image = read_image(item.image_path)
        gt = item.load_points()
        crop = align.align_from_landmarks(image, gt, 192)
        back = align.transform_points(align.transform_points(gt, crop.matrix), crop.inverse)
        assert np.abs(back - gt).max() <= 0.01


def test_aligned_keypoints_land_near_the_template(helen_test_dir):
    item = list_annotated(helen_test_dir)[0]
    gt = item.load_points()
    crop = align.align_from_landmarks(read_image(item.image_path), gt, 192)
    mapped = align.transform_points(keypoints_from_landmarks(gt), crop.matrix)
    err = np.linalg.norm(mapped - align.template_points(192), axis=1)[FIVE_POINT_MASK]
    assert err.max() < 0.12 * 192  # a real face deviates from the mean shape, but not wildly
    assert crop.image.shape == (192, 192, 3)


def test_crop_pixels_match_the_mapped_points():
    image = np.zeros((300, 400, 3), np.uint8)
    image[150, 220] = 255  # one bright pixel
    keypoints = np.array([[180, 120], [250, 120], [215, 160], [190, 200], [240, 200], [215, 200.0]])
    crop = align.align(image, keypoints, FIVE_POINT_MASK, 128)
    x, y = align.transform_points(np.array([[220.0, 150.0]]), crop.matrix)[0]
    peak = np.unravel_index(np.argmax(crop.image[..., 0]), crop.image.shape[:2])
    assert abs(peak[0] - y) <= 1 and abs(peak[1] - x) <= 1


def test_alignment_works_from_a_partial_keypoint_set():
    keypoints = align.template_points(100) * 2 + 7
    mask = np.array([True, True, True, False, False, True])  # BlazeFace: no mouth corners
    m = align.alignment_matrix(np.where(mask[:, None], keypoints, np.nan), mask, 100)
    assert np.allclose(align.transform_points(keypoints, m), align.template_points(100), atol=1e-9)


def test_degenerate_points_raise_a_clear_error():
    with pytest.raises(ValueError, match="degenerate"):
        align.estimate_similarity(np.zeros((3, 2)), np.ones((3, 2)))


def test_mirror_permutation_is_an_involution_that_swaps_eyes():
    assert np.array_equal(MIRROR[MIRROR], np.arange(68))
    assert MIRROR[36] == 45 and MIRROR[48] == 54 and MIRROR[8] == 8 and MIRROR[30] == 30


def test_keypoints_from_landmarks_average_their_points_and_a_missing_point_spoils_only_its_slot():
    from models.landmarks68 import LEFT_EYE, RIGHT_EYE

    points = np.random.default_rng(0).uniform(0, 100, (68, 2))
    expected = np.stack([points[list(LEFT_EYE)].mean(0), points[list(RIGHT_EYE)].mean(0), points[30], points[48],
                         points[54], points[[62, 66]].mean(0)])
    np.testing.assert_allclose(keypoints_from_landmarks(points), expected, atol=1e-12)
    points[37] = np.nan  # a left-eye point
    keypoints = keypoints_from_landmarks(points)
    assert np.isnan(keypoints[0]).all() and np.isfinite(keypoints[1:]).all()
    np.testing.assert_allclose(keypoints[1:], expected[1:], atol=1e-12)

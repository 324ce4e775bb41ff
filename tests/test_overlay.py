"""Overlay drawing on a real 300-VW frame with its real annotation used as the landmarks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.overlay import (
    CONFIDENCE_RAMP,
    GROUND_TRUTH_COLOUR,
    OverlayOptions,
    confidence_colours,
    draw_frame_result,
    draw_keypoints,
    draw_landmarks,
    draw_stats_panel,
    point_radius,
    stats_panel_layout,
    text_scale,
)
from app.stats import LatencyStats
from app.types import STAGES, FaceResult, Frame, FrameResult, StageTimings
from models.datasets import data_root
from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks
from models.pts import read_pts
from models.types import Detection, Landmarks

NOTHING = OverlayOptions(
    points=False, contours=False, box=False, keypoints=False, face_ids=False,
    confidence_colours=False, stats_panel=False, ground_truth=False,
)


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    clip = data_root() / "300vw_sample" / "001"
    image = cv2.imread(str(clip / "imgs" / "000006.jpg"))
    assert image is not None
    return image, read_pts(clip / "annot" / "000006.pts")


def make_result(image: np.ndarray, points: np.ndarray, ground_truth: np.ndarray | None = None) -> FrameResult:
    keypoints = keypoints_from_landmarks(points)
    keypoints[~FIVE_POINT_MASK] = np.nan
    lo, hi = points.min(axis=0), points.max(axis=0)
    box = np.concatenate([lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)])
    detection = Detection(box, 0.99, keypoints, FIVE_POINT_MASK.copy())
    landmarks = Landmarks(points, np.linspace(0.0, 1.0, 68))
    face = FaceResult(7, landmarks, landmarks, detection)
    return FrameResult(Frame(image, 6, 0.2, ground_truth), (face,), StageTimings(), True)


def make_stats() -> LatencyStats:
    stats = LatencyStats()
    for i in range(30):
        stats.add(StageTimings(detect=9.0, align=0.4, infer=5.0, decode=0.3, smooth=0.1, render=1.2), i / 30)
    return stats


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def distance_to(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    """Per-pixel distance to the nearest of ``points`` (rounded to pixels)."""
    seeds = np.full(shape[:2], 255, np.uint8)
    p = np.round(points).astype(int)
    seeds[p[:, 1], p[:, 0]] = 0
    return cv2.distanceTransform(seeds, cv2.DIST_L2, 5)


def test_all_layers_off_leaves_the_frame_untouched(sample) -> None:
    image, points = sample
    out = draw_frame_result(image, make_result(image, points, points), NOTHING, make_stats().summary())
    np.testing.assert_array_equal(out, image)


def test_points_are_drawn_where_the_landmarks_are_and_nowhere_else(sample) -> None:
    image, points = sample
    original = image.copy()
    out = draw_frame_result(image, make_result(image, points), OverlayOptions(**{**NOTHING.__dict__, "points": True}))
    np.testing.assert_array_equal(image, original)  # drew on a copy
    diff = changed(out, image)
    p = np.round(points).astype(int)
    assert diff[p[:, 1], p[:, 0]].all()  # a dot on every landmark
    radius = point_radius(np.linalg.norm(points.max(0) - points.min(0)))
    dist = distance_to(image.shape, points)
    assert dist[diff].max() <= radius + 2.0  # nothing away from the dots (rounding + anti-aliasing)


def test_contours_follow_the_landmarks(sample) -> None:
    image, points = sample
    out = draw_frame_result(image, make_result(image, points), OverlayOptions(**{**NOTHING.__dict__, "contours": True}))
    diff = changed(out, image)
    jaw_midpoints = np.round((points[0:16] + points[1:17]) / 2).astype(int)
    assert diff[jaw_midpoints[:, 1], jaw_midpoints[:, 0]].all()
    lo, hi = np.floor(points.min(0)).astype(int) - 3, np.ceil(points.max(0)).astype(int) + 3
    inside = np.zeros_like(diff)
    inside[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = True
    assert diff.any() and not diff[~inside].any()


LAYERS = ("points", "contours", "box", "keypoints", "face_ids", "stats_panel", "ground_truth")


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_draws_alone_and_switches_off(sample, layer) -> None:
    image, points = sample
    result = make_result(image, points, ground_truth=points + 3.0)
    stats = make_stats().summary()
    alone = draw_frame_result(image, result, OverlayOptions(**{**NOTHING.__dict__, layer: True}), stats)
    assert changed(alone, image).any()
    everything = OverlayOptions(**{name: True for name in NOTHING.__dict__})
    all_on = draw_frame_result(image, result, everything, stats)
    all_but = draw_frame_result(image, result, OverlayOptions(**{**everything.__dict__, layer: False}), stats)
    assert changed(all_on, all_but).any()


def test_confidence_colouring_maps_low_to_red_and_high_to_green(sample) -> None:
    image, points = sample
    opts = OverlayOptions(**{**NOTHING.__dict__, "points": True, "confidence_colours": True})
    out = draw_frame_result(image, make_result(image, points), opts)  # confidence rises 0 -> 1 over the points
    low, high = np.round(points[0]).astype(int), np.round(points[67]).astype(int)
    b, g, r = out[low[1], low[0]].astype(int)
    assert r > 200 and g < 100
    b, g, r = out[high[1], high[0]].astype(int)
    assert g > 200 and r < 120
    ends = [list(CONFIDENCE_RAMP[0][1]), list(CONFIDENCE_RAMP[-1][1])]
    assert confidence_colours(np.array([0.0, 1.0])).tolist() == ends
    assert confidence_colours(np.array([np.nan, 7.0])).tolist() == ends  # NaN counts as 0, clipped to [0, 1]


def test_keypoints_draw_only_the_slots_the_detector_produced(sample) -> None:
    image, points = sample
    keypoints = keypoints_from_landmarks(points)  # all six slots hold real coordinates
    mask = np.array([True, True, False, False, False, False])
    detection = Detection(np.concatenate([points.min(0), points.max(0)]), 0.9, keypoints, mask)
    canvas = image.copy()
    draw_keypoints(canvas, detection)
    dist_present = distance_to(image.shape, keypoints[mask])
    dist_absent = distance_to(image.shape, keypoints[~mask])
    diff = changed(canvas, image)
    assert diff.any()
    assert dist_present[diff].max() < dist_absent[diff].min()  # every change belongs to a present slot
    assert not diff[np.round(keypoints[2, 1]).astype(int), np.round(keypoints[2, 0]).astype(int)]


def test_ground_truth_comes_from_the_frame_or_the_caller(sample) -> None:
    image, points = sample
    gt = points + np.array([40.0, 0.0])
    opts = OverlayOptions(**{**NOTHING.__dict__, "ground_truth": True})
    from_frame = draw_frame_result(image, make_result(image, points, ground_truth=gt), opts)
    given = draw_frame_result(image, make_result(image, points), opts, ground_truth=gt)
    np.testing.assert_array_equal(from_frame, given)
    diff = changed(given, image)
    assert distance_to(image.shape, gt)[diff].max() < 8
    centre = np.round(gt[30]).astype(int)
    assert tuple(given[centre[1], centre[0]]) == GROUND_TRUTH_COLOUR  # the cross centre, opaque


def test_in_place_draws_on_the_given_image(sample) -> None:
    image, points = sample
    canvas = image.copy()
    out = draw_frame_result(canvas, make_result(image, points), in_place=True)
    assert out is canvas and changed(canvas, image).any()


@pytest.mark.parametrize("size", [(320, 180), (320, 240), (480, 270), (640, 480), (1280, 720), (1920, 1080)])
def test_stats_panel_text_fits_inside_the_frame(size) -> None:
    width, height = size
    stats = LatencyStats()
    for i in range(10):  # wide figures: four-digit latencies, three-digit rate
        timings = StageTimings(detect=1234.5, align=999.9, infer=1000.0, decode=88.8, smooth=0.1, render=5.0)
        stats.add(timings, i / 999.9)
    summary = stats.summary()
    layout = stats_panel_layout((height, width, 3), summary)
    x, y, w, h = layout.rect
    assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
    assert [label for label, _ in layout.lines] == ["FPS", *STAGES, "total"]
    black = np.zeros((height, width, 3), np.uint8)
    draw_stats_panel(black, summary)
    ys, xs = np.nonzero(np.any(black > 40, axis=2))  # the text (the background is dark)
    assert len(xs) > 0
    assert xs.min() >= x + 1 and xs.max() <= x + w - 2 and ys.min() >= y + 1 and ys.max() <= y + h - 2


def test_text_grows_with_the_frame() -> None:
    scales = [text_scale(w)[0] for w in (320, 640, 1280, 1920)]
    assert scales == sorted(scales) and scales[-1] > 2.5 * scales[0]


def test_panel_shows_dashes_for_missing_figures() -> None:
    summary = LatencyStats().summary()
    layout = stats_panel_layout((240, 320, 3), summary)
    assert dict(layout.lines)["FPS"] == "--" and dict(layout.lines)["infer"] == "--"


def test_non_finite_points_are_skipped(sample) -> None:
    image, points = sample
    broken = points.copy()
    broken[10:20] = np.nan
    broken[5] = [1e12, -1e12]
    out = draw_frame_result(image, make_result(image, broken), OverlayOptions(box=True, keypoints=True))
    drawn = changed(out, image)
    finite = [i for i in range(68) if i != 5 and not 10 <= i < 20]
    for i in finite:  # every finite point still gets its dot
        x, y = np.round(broken[i]).astype(int)
        assert drawn[y, x], f"point {i} not drawn"
    clean = draw_frame_result(image, make_result(image, points), OverlayOptions(box=True, keypoints=True))
    far = distance_to(image.shape, points[finite]) > 12  # away from every drawn point and contour
    assert not (drawn & far & ~changed(clean, image)).any()  # no stray line towards the point at 1e12
    canvas = image.copy()
    draw_landmarks(canvas, np.full((68, 2), np.nan))
    np.testing.assert_array_equal(canvas, image)


def test_a_bad_image_is_rejected_with_a_clear_message(sample) -> None:
    image, points = sample
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        draw_frame_result(image[:, :, 0], make_result(image, points))
    with pytest.raises(ValueError, match="uint8"):
        draw_frame_result(image.astype(np.float32), make_result(image, points))


@pytest.mark.parametrize("shape", [(3, 3, 3), (3, 640, 3), (480, 2, 3), (1, 1, 3)])
def test_a_frame_too_small_for_the_panel_is_drawn_without_it(shape) -> None:
    image = np.full(shape, 90, np.uint8)
    frame = Frame(image, 0, 0.0)
    out = draw_frame_result(image, FrameResult(frame, ()), stats=LatencyStats().summary())
    assert out.shape == shape and np.array_equal(out, image)

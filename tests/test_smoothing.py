"""One Euro landmark smoother: jitter, lag, scale invariance, timestamps, reset.

``python -m tests.test_smoothing`` (from the repository root) prints the filter's
figures at the default parameters.
"""
from __future__ import annotations

import numpy as np
import pytest

from app.smoothing import LandmarkSmoother, OneEuroParams
from models.boxes import face_size

FACE = 250.0  # face size (landmark box diagonal) in pixels
FPS = 30.0


def jitter_reduction(params: OneEuroParams, noise: float, fps: float = FPS, frames: int = 300, seed: int = 0) -> float:
    """Std of the raw noise over std of the output error for a still face.

    ``noise`` is the per-coordinate noise std in face sizes; the first second is skipped.
    """
    rng = np.random.default_rng(seed)
    smoother = LandmarkSmoother(params)
    truth = np.full((68, 2), 200.0)
    raw, out = [], []
    for i in range(frames):
        observed = truth + rng.normal(0.0, noise * FACE, truth.shape)
        smoothed = smoother.smooth(observed, i / fps, FACE)
        if i >= fps:
            raw.append(observed - truth)
            out.append(smoothed - truth)
    return float(np.std(raw) / np.std(out))


def ramp_lag_frames(
    params: OneEuroParams, speed: float, noise: float = 0.0, fps: float = FPS, seconds: float = 10.0, seed: int = 0
) -> float:
    """Steady-state lag, in frames, behind a ramp of ``speed`` face sizes per second."""
    rng = np.random.default_rng(seed)
    smoother = LandmarkSmoother(params)
    step = speed * FACE / fps  # pixels per frame
    lags = []
    frames = int(seconds * fps)
    for i in range(frames):
        truth = np.full((68, 2), 200.0)
        truth[:, 0] += step * i
        out = smoother.smooth(truth + rng.normal(0.0, noise * FACE, truth.shape), i / fps, FACE)
        if i >= frames // 2:
            lags.append(np.mean(truth[:, 0] - out[:, 0]) / step)
    return float(np.mean(lags))


def onset_peak_lag_frames(params: OneEuroParams, speed: float, noise: float = 0.004, seed: int = 1) -> float:
    """Largest lag, in frames, in the first two seconds after a still face starts moving."""
    rng = np.random.default_rng(seed)
    smoother = LandmarkSmoother(params)
    step = speed * FACE / FPS
    lags = []
    for i in range(int(3 * FPS)):
        moving = max(0, i - int(FPS))
        truth = np.full((68, 2), 200.0)
        truth[:, 0] += step * moving
        out = smoother.smooth(truth + rng.normal(0.0, noise * FACE, truth.shape), i / FPS, FACE)
        if moving > 0:
            lags.append(np.mean(truth[:, 0] - out[:, 0]) / step)
    return float(max(lags))


SMOOTHER = OneEuroParams(min_cutoff=0.5, beta=20.0)  # the heavier setting the first defaults used


def test_still_face_jitter_is_reduced_a_lot() -> None:
    # 1 px noise on a 250 px face (0.4 %); the std of the error drops ~3x (variance ~9x).
    assert jitter_reduction(SMOOTHER, noise=0.004) > 2.7
    assert jitter_reduction(SMOOTHER, noise=0.002) > 3.0


def test_defaults_cut_still_face_jitter_well_beyond_the_required_30_percent() -> None:
    # beta 80 trades some smoothing of white noise (std /2.0 at 0.4 %) for less lag in motion.
    assert jitter_reduction(OneEuroParams(), noise=0.004) > 1.9
    assert jitter_reduction(OneEuroParams(), noise=0.002) > 2.3
    assert jitter_reduction(OneEuroParams(), noise=0.004) > 1 / 0.7


def test_ramp_is_followed_with_small_lag() -> None:
    params = OneEuroParams()
    assert ramp_lag_frames(params, speed=0.5, noise=0.004) < 0.5
    assert ramp_lag_frames(params, speed=0.2, noise=0.004) < 0.8
    assert ramp_lag_frames(params, speed=1.0) < 0.25
    assert onset_peak_lag_frames(params, speed=0.5) < 1.5  # the speed estimate catches up quickly
    # Faster motion, less lag: the cutoff rises with speed.
    assert ramp_lag_frames(params, speed=2.0) < ramp_lag_frames(params, speed=0.5) < ramp_lag_frames(params, speed=0.1)


def test_step_is_reached_within_a_few_frames() -> None:
    smoother = LandmarkSmoother()
    for i in range(30):
        smoother.smooth(np.zeros((68, 2)), i / FPS, FACE)
    target = np.full((68, 2), 0.1 * FACE)
    outputs = [smoother.smooth(target, (30 + k) / FPS, FACE) for k in range(5)]
    errors = [np.abs(o - target).max() / FACE for o in outputs]
    assert errors[0] < 0.1  # moves on the first frame
    assert errors[2] < 0.01  # within 1 % of the face size after 3 frames


def test_same_relative_output_for_a_face_twice_as_large() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, (68, 2))
    small, large = LandmarkSmoother(), LandmarkSmoother()
    for i in range(60):
        relative = base + 0.02 * np.sin(i / 5) + rng.normal(0, 0.004, base.shape)
        out_small = small.smooth(100.0 * relative, i / FPS, 100.0)
        out_large = large.smooth(200.0 * relative, i / FPS, 200.0)
        np.testing.assert_allclose(out_large, 2.0 * out_small, rtol=1e-9, atol=1e-9)
    assert not np.allclose(out_large, 200.0 * relative)  # it did smooth


def test_jitter_reduction_is_the_same_for_small_and_large_faces() -> None:
    """The same relative noise is smoothed equally on a 60 px and a 600 px face."""

    def reduction(size: float) -> float:
        rng = np.random.default_rng(0)
        smoother = LandmarkSmoother(SMOOTHER)
        raw = rng.normal(0, 0.004 * size, (200, 68, 2))
        out = np.stack([smoother.smooth(noise, i / FPS, size) for i, noise in enumerate(raw)])
        return float(np.std(raw[30:]) / np.std(out[30:]))

    assert reduction(60.0) == pytest.approx(reduction(600.0), rel=1e-9)
    assert reduction(60.0) > 2.5


def test_uses_the_given_timestamps_not_a_frame_rate() -> None:
    params = OneEuroParams()
    # The same motion sampled at 15, 30 and 60 fps lags by about the same time.
    lag_seconds = [ramp_lag_frames(params, speed=0.5, fps=fps) / fps for fps in (15.0, 30.0, 60.0)]
    assert max(lag_seconds) - min(lag_seconds) < 0.004
    # Irregular frame times: still converges on a still face and follows a ramp.
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.01, 0.08, 200))
    smoother = LandmarkSmoother(params)
    for t in times:
        out = smoother.smooth(np.full((68, 2), 50.0 + 0.5 * FACE * t), float(t), FACE)
    assert abs(out[0, 0] - (50.0 + 0.5 * FACE * times[-1])) < 0.5 * FACE * 0.04


def test_equal_timestamp_repeats_the_last_output() -> None:
    smoother = LandmarkSmoother()
    smoother.smooth(np.zeros((68, 2)), 0.0, FACE)
    first = smoother.smooth(np.ones((68, 2)), 0.1, FACE)
    again = smoother.smooth(np.full((68, 2), 50.0), 0.1, FACE)
    np.testing.assert_array_equal(first, again)
    after = smoother.smooth(np.ones((68, 2)), 0.2, FACE)  # state was not disturbed by the repeat
    reference = LandmarkSmoother()
    reference.smooth(np.zeros((68, 2)), 0.0, FACE)
    reference.smooth(np.ones((68, 2)), 0.1, FACE)
    np.testing.assert_array_equal(after, reference.smooth(np.ones((68, 2)), 0.2, FACE))


def test_earlier_timestamp_restarts_the_filter() -> None:
    smoother = LandmarkSmoother()
    for i in range(10):
        smoother.smooth(np.zeros((68, 2)), 5.0 + i / FPS, FACE)
    seek = np.full((68, 2), 100.0)
    np.testing.assert_array_equal(smoother.smooth(seek, 1.0, FACE), seek)


def test_reset_forgets_the_history() -> None:
    smoother = LandmarkSmoother()
    for i in range(10):
        smoother.smooth(np.zeros((68, 2)), i / FPS, FACE)
    far = np.full((68, 2), 80.0)
    assert not np.allclose(smoother.smooth(far, 10 / FPS, FACE), far)
    smoother.reset()
    assert not smoother.started
    np.testing.assert_array_equal(smoother.smooth(far, 11 / FPS, FACE), far)


def test_input_is_not_modified_and_output_is_a_new_array() -> None:
    smoother = LandmarkSmoother()
    points = np.zeros((68, 2))
    out = smoother.smooth(points, 0.0, FACE)
    out[:] = 7.0
    points2 = np.ones((68, 2))
    out2 = smoother.smooth(points2, 0.1, FACE)
    np.testing.assert_array_equal(points2, np.ones((68, 2)))
    assert np.all(out2 < 1.0)  # filtered from 0, not from the caller's edit


@pytest.mark.parametrize(
    "points, face, message",
    [
        (np.full((68, 2), np.nan), FACE, "NaN"),
        (np.zeros((68, 3)), FACE, "shape"),
        (np.zeros((68, 2)), 0.0, "face_size"),
        (np.zeros((68, 2)), float("nan"), "face_size"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(points, face, message) -> None:
    with pytest.raises(ValueError, match=message):
        LandmarkSmoother().smooth(points, 0.0, face)


def test_changing_point_count_needs_a_reset() -> None:
    smoother = LandmarkSmoother()
    smoother.smooth(np.zeros((68, 2)), 0.0, FACE)
    with pytest.raises(ValueError, match="reset"):
        smoother.smooth(np.zeros((5, 2)), 0.1, FACE)


def test_bad_params_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroParams(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroParams(beta=-1.0)


def test_face_size_is_the_box_diagonal() -> None:
    points = np.array([[0.0, 0.0], [30.0, 0.0], [30.0, 40.0]])
    assert face_size(points) == pytest.approx(50.0)


def report() -> None:
    params = OneEuroParams()
    print(f"defaults: {params}; face {FACE:.0f} px, {FPS:.0f} fps, synthetic 68-point still face / ramps")
    for noise in (0.002, 0.004, 0.008):
        print(f"still face, noise {noise * FACE:.1f} px ({noise:.1%} of face size): "
              f"std reduced x{jitter_reduction(params, noise):.2f}")
    for speed in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
        lag = ramp_lag_frames(params, speed, noise=0.004)
        print(f"ramp {speed:4.2f} face sizes/s ({speed * FACE / FPS:5.2f} px/frame), 1 px noise: "
              f"lag {lag:.2f} frames ({lag / FPS * 1000:.0f} ms), "
              f"peak lag after starting from rest {onset_peak_lag_frames(params, speed):.2f} frames")


if __name__ == "__main__":
    report()

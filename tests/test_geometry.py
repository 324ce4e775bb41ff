"""Face geometry: pose conventions and recovery, openness, blinks, the CSV columns, the real pipeline."""
from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest

from app.geometry.blinks import BlinkDetector, BlinkOptions
from app.eval.geometry import evaluate_blinks, match_blinks, synthetic_views
from app.geometry.face import FaceGeometryTracker, PoseSmoother, wrap_degrees
from app.geometry.openness import eye_aspect_ratios, mouth_opening
from app.geometry.pose import PoseSolver, angles_from_rotation, camera_matrix, rotation_from_angles
from app.recording import CSV_HEADER, GEOMETRY_COLUMNS, LandmarkCsvWriter, read_landmark_csv
from app.smoothing import OneEuroParams
from app.types import FaceResult, Frame, FrameResult
from models.datasets import PROJECT_ROOT, data_root
from models.face3d import face3d_points
from models.landmarks68 import MIRROR
from models.types import Landmarks

CAMERA = camera_matrix(640, 480)


def project(yaw, pitch, roll, translation=(0.0, 0.0, 600.0)):
    rvec = cv2.Rodrigues(rotation_from_angles(yaw, pitch, roll))[0]
    return cv2.projectPoints(face3d_points(), rvec, np.array(translation), CAMERA, None)[0].reshape(68, 2)


def test_face3d_asset_is_symmetric_and_in_the_documented_frame():
    p = face3d_points()
    np.testing.assert_allclose(p[MIRROR] * [-1, 1, 1], p, atol=1e-3)
    assert np.allclose(p[30], 0)  # origin at the nose tip
    assert np.linalg.norm(p[36] - p[45]) == pytest.approx(90.0, abs=0.01)
    assert p[45, 0] > p[36, 0] and p[8, 1] > p[27, 1]  # x to the image right, y down
    assert p[0, 2] > p[36, 2] > p[30, 2]  # z into the head: jaw corner behind the eyes behind the nose tip


def test_angle_conventions():
    nose = np.array([0.0, 0.0, -1.0])  # the nose points at the camera
    assert (rotation_from_angles(20, 0, 0) @ nose)[0] > 0  # yaw > 0: nose to the image right
    assert (rotation_from_angles(0, 20, 0) @ nose)[1] < 0  # pitch > 0: nose up (image y grows down)
    right = rotation_from_angles(0, 0, 20) @ np.array([1.0, 0.0, 0.0])
    assert right[1] > 0  # roll > 0: clockwise on screen (x axis turns towards +y, down)
    for angles in [(30, -20, 10), (-45, 45, -170), (0, 0, 179)]:
        np.testing.assert_allclose(angles_from_rotation(rotation_from_angles(*angles)), angles, atol=1e-9)


@pytest.mark.parametrize("angles", [(0, 0, 0), (40, 0, 0), (0, -35, 0), (0, 0, 25), (-30, 20, -15), (45, 45, 10)])
def test_known_rotations_are_recovered(angles):
    pose = PoseSolver(CAMERA).solve(project(*angles, translation=(30.0, -20.0, 700.0)))
    np.testing.assert_allclose((pose.yaw, pose.pitch, pose.roll), angles, atol=1e-4)
    np.testing.assert_allclose(pose.translation, (30.0, -20.0, 700.0), atol=1e-3)


def test_in_plane_image_rotation_adds_to_roll():
    points = project(10, 5, 0)
    centre = CAMERA[:2, 2]
    for angle in (-20.0, 15.0):
        m = cv2.getRotationMatrix2D(tuple(centre), -angle, 1.0)  # OpenCV's angle is counter-clockwise
        rotated = points @ m[:, :2].T + m[:, 2]
        pose = PoseSolver(CAMERA).solve(rotated)
        assert pose.roll == pytest.approx(angle, abs=1e-3)


def test_noisy_synthetic_views_meet_the_target():
    result = synthetic_views(count=300)
    assert result["no_pose"] == 0
    assert all(v <= 3.0 for v in result["mae"].values()), result


def test_a_lost_or_unsure_face_gets_no_pose():
    solver = PoseSolver(CAMERA)
    points = project(0, 0, 0)
    assert solver.solve(np.full((68, 2), np.nan)) is None
    assert solver.solve(points, np.zeros(68)) is None  # no confidence at all
    low = np.ones(68)
    low[17:60] = 0.01  # most of the face unsure
    assert solver.solve(points, low) is None
    some = np.ones(68)
    some[17:68] = np.r_[np.ones(20), np.full(31, 0.01)]  # 37 confident points: enough
    assert solver.solve(points, some) is not None
    some[17:37] = 0.01  # 17 confident points: too few
    assert solver.solve(points, some) is None
    scrambled = points[np.random.default_rng(0).permutation(68)]
    assert solver.solve(scrambled) is None  # no 3D face fits: reprojection error too large


def test_confident_points_outvote_wrong_ones():
    points = project(20, 10, 5)
    wrong = points.copy()
    wrong[48:68] += 40.0  # the mouth far off
    confidence = np.ones(68)
    confidence[48:68] = 0.05
    pose = PoseSolver(CAMERA).solve(wrong, confidence)
    np.testing.assert_allclose((pose.yaw, pose.pitch, pose.roll), (20, 10, 5), atol=1e-3)


def test_openness_measures_do_not_depend_on_face_size_or_rotation():
    points = project(0, 0, 0)
    left, right = eye_aspect_ratios(points)
    mouth = mouth_opening(points)
    centre = points.mean(axis=0)
    m = cv2.getRotationMatrix2D(tuple(centre), 30, 2.5)
    bigger = points @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(eye_aspect_ratios(bigger), (left, right), rtol=1e-9)
    assert mouth_opening(bigger) == pytest.approx(mouth, rel=1e-9)
    assert left == pytest.approx(right)  # the mean face is symmetric
    usable = np.ones(68, bool)
    usable[37] = False
    assert math.isnan(eye_aspect_ratios(points, usable)[0]) and not math.isnan(eye_aspect_ratios(points, usable)[1])


def test_blink_detector_finds_a_dip_and_ignores_noise_and_slow_lowering():
    fps = 30.0
    ratio = np.full(300, 0.30)
    ratio[100:105] = [0.2, 0.12, 0.1, 0.12, 0.22]  # a blink: closed 4 frames, reopening on the 5th
    ratio[150] = 0.1  # one frame: too short
    ratio[200:230] = 0.2  # a long lowered gaze: too long and not deep
    detector = BlinkDetector()
    events = [e for i, r in enumerate(ratio) if (e := detector.update(i, i / fps, float(r)))]
    assert [(e.start_frame, e.end_frame) for e in events] == [(100, 103)]
    assert events[0].duration == pytest.approx(4 / fps) and detector.count == 1
    assert detector.update(301, 301 / fps, float("nan")) is None  # no information, no change
    with pytest.raises(ValueError):
        BlinkOptions(close_ratio=0.5, depth_ratio=0.7)


def test_match_blinks():
    assert match_blinks([(10, 12), (50, 52)], [(11, 13), (80, 82)]) == (1, 1, 1)
    assert match_blinks([(10, 12), (11, 12)], [(11, 13)]) == (1, 1, 0)  # a label matches once


def test_pose_smoother_wraps_around():
    assert wrap_degrees(190.0) == pytest.approx(-170.0) and wrap_degrees(-180.0) == pytest.approx(180.0)
    smoother = PoseSmoother(OneEuroParams())
    solver = PoseSolver(CAMERA)
    out = None
    for i, roll in enumerate([178.0, 179.0, -179.0, -178.0]):
        pose = solver.solve(project(0, 0, roll))
        out = smoother.smooth(pose, i / 30)
        assert abs(out.roll) > 170.0  # never swings through 0
    assert out.roll == pytest.approx(-178.0, abs=3.0) or out.roll > 175.0


def _result_with_geometry():
    landmarks = Landmarks(project(10, -5, 3), np.ones(68))
    tracker = FaceGeometryTracker()
    geometry = tracker.update(landmarks, PoseSolver(CAMERA), 0, 0.0)
    lost = Landmarks(np.full((68, 2), np.nan), np.zeros(68))
    unsure = tracker.update(lost, PoseSolver(CAMERA), 1, 1 / 30)
    frame = Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0)
    return FrameResult(frame, (FaceResult(1, landmarks, landmarks, geometry=geometry),
                               FaceResult(2, lost, lost, geometry=unsure),
                               FaceResult(3, landmarks, landmarks)))


def test_csv_geometry_columns_and_empty_cells(tmp_path):
    path = tmp_path / "g.csv"
    with LandmarkCsvWriter(path) as writer:
        writer.write(_result_with_geometry())
    rows = [line.split(",") for line in path.read_text().splitlines()]
    geometry = slice(-68 - len(GEOMETRY_COLUMNS), -68)  # the visibility columns v0..v67 come last
    assert rows[0][geometry] == GEOMETRY_COLUMNS == CSV_HEADER[geometry]
    first = dict(zip(rows[0], rows[1]))
    assert float(first["yaw"]) == pytest.approx(10, abs=0.01) and float(first["tz"]) == pytest.approx(600, abs=0.1)
    assert float(first["ear_left"]) > 0.1 and first["eyes_closed"] == "0" and first["blinks"] == "0"
    lost = dict(zip(rows[0], rows[2]))
    assert all(lost[c] == "" for c in ("yaw", "pitch", "roll", "tx", "ty", "tz", "ear_left", "ear_right", "mouth_open"))
    assert all(v == "" for v in rows[3][geometry])  # geometry not computed
    table = read_landmark_csv(path)
    assert table.geometry.shape == (3, len(GEOMETRY_COLUMNS)) and np.isnan(table.geometry[1, 0])


def test_readme_documents_every_csv_column():
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("### Landmark CSV"):]
    for column in GEOMETRY_COLUMNS:
        assert re.search(rf"`{column}`", section), column


@pytest.mark.slow
def test_blinks_on_hand_labelled_talking_clips():
    """The real pipeline with the default model on the labelled clips (tests/data/blinks.json)."""
    assert (data_root() / "videos").is_dir(), "the shared talking clips are required (tests/conftest.py)"
    result = evaluate_blinks("r18_ffld@fp32")
    # Measured (docs/RESULTS.md): 15 of 16 found, none false; the clips the thresholds were not
    # chosen on: 10 of 10. The target is precision and recall >= 0.9.
    assert result["precision"] >= 0.9 and result["recall"] >= 0.9, result
    held_out = result["held_out_clips"]
    assert held_out["tp"] + held_out["fn"] >= 10 and held_out["precision"] >= 0.9 and held_out["recall"] >= 0.9, result


def test_blinks_with_the_default_int8_network():
    """The CPU default (INT8) moves the lids a little: measured 14 of 16 found, none false (recall 0.875,
    under the issue's 0.9; docs/RESULTS.md). This guards that level."""
    result = evaluate_blinks("r18_ffld@int8")
    assert result["precision"] >= 0.9 and result["recall"] >= 0.85, result


def test_overlay_draws_pose_axes_and_readout_only_when_asked():
    from app.overlay import OverlayOptions, draw_frame_result, geometry_text

    result = _result_with_geometry()
    image = result.frame.image
    bare = OverlayOptions(points=False, contours=False, face_ids=False, stats_panel=False, pose_axes=False)
    assert not draw_frame_result(image, result, bare).any()
    axes = draw_frame_result(image, result, OverlayOptions(points=False, contours=False, face_ids=False,
                                                           stats_panel=False))
    nose = project(10, -5, 3)[30].round().astype(int)
    assert axes[nose[1] - 3 : nose[1] + 4, nose[0] - 3 : nose[0] + 4].any()  # the axes start at the nose tip
    readout = draw_frame_result(image, result, OverlayOptions(points=False, contours=False, face_ids=False,
                                                              stats_panel=False, pose_axes=False,
                                                              geometry_readout=True))
    assert readout.any()
    assert geometry_text(result.faces[0].geometry).startswith("yaw +10 pitch -5 roll +3")
    assert geometry_text(result.faces[1].geometry).startswith("no pose eyes --/--")


def test_one_euro_filter_matches_the_landmark_smoother():
    """The pose's vector One Euro filter is the landmarks' filter on values in face-size units."""
    from app.smoothing import LandmarkSmoother, OneEuroFilter

    rng = np.random.default_rng(1)
    units = np.array([160.0, 150.0])
    vector, points = OneEuroFilter(units, OneEuroParams()), LandmarkSmoother(OneEuroParams())
    for i in range(40):
        values = np.array([10.0 * math.sin(i / 5.0), 100.0 + i]) + rng.normal(0.0, 0.5, 2)
        columns = np.zeros((2, 2))
        columns[:, 0] = values / units
        expected = points.smooth(columns, i / 30.0, 1.0)[:, 0] * units
        np.testing.assert_allclose(vector.smooth(values, i / 30.0), expected, rtol=1e-12, atol=1e-9)


def test_tracked_pose_follows_a_turning_head():
    """Solving from the previous frame's pose (the per-frame path) recovers exact poses: within
    0.02 degrees, what the refine's unscored last step (under 0.02 rad) may leave."""
    solver = PoseSolver(CAMERA)
    previous = None
    for k in range(30):
        angles = (30.0 * math.sin(k / 6.0), 10.0 * math.cos(k / 5.0), 3.0 * k / 30.0)
        points = project(*angles)
        previous = solver.solve(points, previous=previous)
        np.testing.assert_allclose((previous.yaw, previous.pitch, previous.roll), angles, atol=0.02)


def test_a_face_found_again_at_the_same_place_keeps_its_geometry():
    from app.tracking import FaceTracker, TrackerOptions
    from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks
    from models.types import Detection

    shape = (720, 1280, 3)

    def seen(shift=0.0):
        points = project(0, 0, 0) + shift
        return points, Landmarks(points, np.ones(68))

    def detection(points):
        box = np.r_[points.min(axis=0), points.max(axis=0)]
        return Detection(box=box, score=0.9, keypoints=keypoints_from_landmarks(points), keypoint_mask=FIVE_POINT_MASK)

    tracker = FaceTracker(TrackerOptions(reuse_frames=3))
    here, here_lm = seen()
    there, there_lm = seen(shift=400.0)
    tracker.update(tracker.plan([detection(here)]), [here_lm], shape)
    geometry = tracker.tracks[0].geometry = FaceGeometryTracker()
    tracker.update(tracker.plan(None), [Landmarks(here, np.zeros(68))], shape)  # lost (a blink)
    tracker.update(tracker.plan([detection(there), detection(here)]), [there_lm, seen(shift=3.0)[1]], shape)
    again = {t.track_id: t for t in tracker.tracks}
    assert again[1].geometry is geometry and again[2].geometry is None  # same place: same face
    tracker.forget_owned_state()
    assert all(t.geometry is None for t in tracker.tracks)
    lost = tracker.tracks[0]
    lost.geometry = FaceGeometryTracker()
    tracker.update(tracker.plan(None), [Landmarks(here, np.zeros(68)), there_lm], shape)
    for _ in range(4):  # longer than reuse_frames: a fresh start
        tracker.update(tracker.plan(None), [there_lm], shape)
    tracker.update(tracker.plan([detection(there), detection(here)]), [there_lm, here_lm], shape)
    late = [t for t in tracker.tracks if t.track_id != 2][0]
    assert late.track_id == 3 and late.geometry is None

def test_the_default_network_closes_the_lids_on_a_hand_labelled_blink():
    """talking_d13 frames 102-104 are a labelled blink (tests/data/blinks.json); 98-99 are open."""
    from app.eval.geometry import lid_gaps
    from models.datasets import data_root

    gaps = lid_gaps(data_root() / "videos" / "talking_d13.mp4", range(98, 105), ["r18_ffld@fp32"])["gap_px"]
    gap = gaps["r18_ffld@fp32"]
    blink, open_gap = (gap[102], gap[103], gap[104]), min(gap[98], gap[99])
    assert min(blink) < 0.5 * open_gap  # the deepest frame: lids at least half closed
    assert max(blink) < BlinkOptions().depth_ratio * open_gap  # every labelled frame deep enough to count

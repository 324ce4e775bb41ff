"""Large-pose views (models.tools.face_profiling): landmarks stay right when a real face is turned."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from tests.peers import require_peers  # noqa: E402

require_peers("scipy")  # the train extra: the core stack (no scipy) skips this file
pytestmark = pytest.mark.peers("scipy")

from scipy.spatial import ConvexHull  # noqa: E402

from models.align import align_from_landmarks
from models.datasets import list_annotated, resolve_dataset
from models.landmarks68 import INNER_51, inter_ocular
from models.mediapipe68 import MediaPipe68
from models.tools.face_profiling import FaceMesh3D, FitError, _rotation, mesh_topology, render_view

INNER = list(INNER_51)


@pytest.fixture(scope="module")
def faces(data_dir):
    """Three real training faces (HELEN train) with their Face Mesh fits."""
    out = []
    with FaceMesh3D() as mesh:
        for item in list_annotated(resolve_dataset("300w/helen_train"))[:3]:
            image = cv2.imread(str(item.image_path))
            truth = item.load_points()
            out.append((image, truth, mesh.fit(image, truth)))
    return out


def nme_box(points: np.ndarray, truth: np.ndarray) -> float:
    w, h = np.ptp(truth, axis=0)
    return float(np.linalg.norm(points - truth, axis=1).mean() / np.sqrt(w * h))


def test_mesh_topology_is_a_surface_with_three_holes():
    triangles, holes = mesh_topology()
    assert len(triangles) >= 850 and triangles.max() == 467
    assert sorted(len(h) for h in holes) == [16, 16, 20]  # two eyes, the inner lips


def test_zero_turn_reproduces_the_image_and_points(faces):
    for image, truth, fit in faces:
        view = render_view(image, fit, 0.0, 0.0)
        assert np.abs(view.image.astype(int) - image).max() <= 1
        assert np.abs(view.points - truth).max() < 1e-6


def test_turned_points_agree_with_face_mesh_on_the_view(faces):
    """Face Mesh run afresh on a view 30 degrees further turned finds the inner 51 points where the
    view says they are: box-normalised NME under 0.045 on average (0.033 measured; Face Mesh's own
    error on the untouched photos is 0.027 here), none over 0.06."""
    errors, base = [], []
    with MediaPipe68() as model:
        for image, truth, fit in faces:
            (found,) = model.predict([align_from_landmarks(image, truth, 256)])
            base.append(nme_box(found.points[INNER], truth[INNER]))
            side = 1.0 if fit.yaw >= 0 else -1.0
            view = render_view(image, fit, side * 30.0)
            (found,) = model.predict([align_from_landmarks(view.image, view.points, 256)])
            assert found.mean_confidence > 0, "Face Mesh finds the turned face"
            errors.append(nme_box(found.points[INNER], view.points[INNER]))
    assert max(errors) < 0.06 and np.mean(errors) < 0.045, (errors, base)


def test_far_side_jaw_points_lie_on_the_outline(faces):
    """Turned 45 degrees away, the far-side jaw points (below the nose) sit on the outline of the
    turned mesh (its convex hull: within 0.03 eye distances on average), where the rotated 3D
    points before the jaw rule lie well inside the cheek."""
    for image, truth, fit in faces:
        side = 1.0 if fit.yaw >= 0 else -1.0
        view = render_view(image, fit, side * 45.0)
        r = fit.roll.T @ _rotation(side * 45.0, 0.0) @ fit.roll
        turned = (fit.vertices - fit.centre) @ r.T + fit.centre
        hull = ConvexHull(turned[:, :2]).equations
        far = list(range(9, 14)) if side > 0 else list(range(3, 8))

        def inside(p):
            return -(p @ hull[:, :2].T + hull[:, 2]).max(axis=1) / inter_ocular(truth)

        moved, before = inside(view.points[far]).mean(), inside(view.projected[far]).mean()
        assert moved < 0.03 and before - moved > 0.03, (moved, before)
        assert np.allclose(view.points[17:], view.projected[17:])  # the rule moves jaw points only


def test_a_fit_to_another_face_is_refused(faces):
    image, truth, _ = faces[0]
    with FaceMesh3D() as mesh, pytest.raises(FitError):
        mesh.fit(image, truth + [0.6 * np.ptp(truth[:, 0]), 0.0])  # ground truth beside the face


def test_view_cache_is_a_crop_set_of_training_views(tmp_path, monkeypatch):
    from models.training.pose_views import build_views, load_views, sample_targets

    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))
    report = build_views(sets=("300w/afw",), views=2, limit=2, progress=False)
    views = load_views()
    assert report.views == len(views) == 4 - 2 * report.failed["300w/afw"]
    assert views.images.shape[1:] == (320, 320, 3) and views.points.shape == (len(views), 68, 2)
    assert all(s.startswith("300w/afw/") for s in views.sources)
    meta = json.loads((report.folder / "meta.json").read_text())
    assert all(abs(d) <= 65.0 for d, _ in meta["deltas"])
    counted = build_views(sets=("300w/afw",), views=0, limit=2, progress=False)  # a failure count only
    assert counted.views == 0 and counted.failed == report.failed and len(load_views()) == report.views
    with pytest.raises(ValueError, match="never make training views"):
        build_views(sets=("300w/helen_test",), limit=1, progress=False)
    rng = np.random.default_rng(0)
    for yaw in (-40.0, -5.0, 0.0, 20.0, 70.0):
        for delta, pitch in sample_targets(rng, yaw, 20):
            target = yaw + delta
            assert abs(target) <= 75.0 + 1e-9 and abs(pitch) <= 10.0
            if abs(yaw) >= 10:
                assert np.sign(target) == np.sign(yaw) and abs(target) >= abs(yaw)  # turned further away
    from app.eval.pose_survey import survey

    turned = survey(str(report.folder))
    assert np.isfinite(turned.yaw).all()
    # the run-time pose solver sees the views turned about as intended (it reads real faces'
    # yaw about 0.8x of Face Mesh's own estimate too: docs/RESULTS.md)
    assert np.all(np.abs(turned.yaw - turned.intended) < 0.35 * np.abs(turned.intended) + 5)
    original = survey("300w/afw", limit=2)
    assert np.isfinite(original.yaw).all() and len(original.yaw) == 2


def test_training_data_mixes_in_views_of_training_images_only(tmp_path, monkeypatch):
    from models.training.augment import AugmentConfig
    from models.training.dataset import TrainingData
    from models.training.pose_views import build_views

    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))
    build_views(sets=("300w/afw",), views=1, limit=6, progress=False)
    data = TrainingData(val_fraction=0.5, sets=("300w/afw",), large_pose_fraction=0.25)
    plain = TrainingData(val_fraction=0.5, sets=("300w/afw",))
    views = data.sets[-1]
    val = {f"300w/afw/{data.sets[0].sources[i]}" for _, i in data.refs[data.val_ids]}
    from_val = [s in val for s in views.sources]
    assert any(from_val), "some of the six faces are validation faces (half are held out)"
    kept = {views.sources[i] for _, i in data.refs[data.train_views]}
    assert len(data.train_views) == from_val.count(False) and not kept & val
    np.testing.assert_array_equal(data.val_ids, plain.val_ids)  # the split does not change
    ids = data.epoch_ids(np.random.default_rng(0))
    base = len(plain.epoch_ids(np.random.default_rng(0)))
    assert len(ids) == base + round(0.25 * base) and np.isin(data.train_views, ids).any()
    batch = data.train_batch(data.train_views[:2], AugmentConfig.none(), np.random.default_rng(0))
    assert batch.crops.shape == (2, 192, 192, 3) and np.isfinite(batch.points).all()

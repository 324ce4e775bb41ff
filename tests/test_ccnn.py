"""CCNN (models/nets/ccnn.py, models/training/ccnn_task.py): shapes of every unit, deep supervision,
the loss falling over real steps on real training crops, the ONNX export against torch, and a
smoke run of the real ``models.tools.train`` entry exported to a file the registry loads."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tests.peers import require_peers  # noqa: E402

require_peers("torch")  # the train extra: the core stack (no torch) skips this file
pytestmark = pytest.mark.peers("torch")

import torch  # noqa: E402

from models.training.ccnn_task import CCNNTask
from models.training.tasks import task_from_config


@pytest.mark.parametrize("steps,heatmap_only", [(2, False), (1, True)])
def test_every_unit_has_heatmaps_and_points_and_eval_gives_points_with_confidence(steps, heatmap_only):
    torch.manual_seed(0)
    task = CCNNTask(steps=steps, heatmap_only=heatmap_only)
    model = task.blank_model().train()
    x = torch.randn(2, 3, task.input_size, task.input_size)
    out = model(x)
    m = task.heatmap_size
    assert (task.input_size, m) == (128, 32)
    assert out["heatmaps"].shape == (steps + 1, 2, 68, m, m)
    assert out["points"].shape == ((0 if heatmap_only else steps), 2, 68, 2)
    target = task.make_targets(torch.rand(2, 68, 2) * 90 + 20)
    terms = task.loss_terms(out, target)
    assert terms["heatmaps"].shape == (steps + 1,)
    task.loss(out, target).backward()
    # deep supervision: every heatmap unit and every regression unit gets a gradient
    assert all(u.out.weight.grad.abs().sum() > 0 for u in model.heatmap_units)
    assert all(u.out.weight.grad.abs().sum() > 0 for u in model.regression_units)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 68, 3) and (y[..., 2] >= 0).all() and (y[..., 2] <= 1).all()


def test_regression_starts_at_the_heatmap_positions_and_the_config_round_trips():
    torch.manual_seed(0)
    task = CCNNTask(steps=2)
    model = task.blank_model().eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        full = model(x)
        heat = model.forward_all(x)["heatmaps"][-1]
        coords, _ = model.decode(heat)
    np.testing.assert_allclose(full[..., :2].numpy(), ((coords + 0.5) / 32).numpy(), atol=1e-6)
    for t in (CCNNTask(steps=1, heatmap_only=True, input_size=160), CCNNTask(loss_name="mse", point_weight=2.0)):
        again = task_from_config(json.loads(json.dumps(t.config())))
        assert isinstance(again, CCNNTask) and again.config() == t.config()


def test_the_loss_falls_over_real_steps_on_real_training_crops():
    from models.training.augment import AugmentConfig
    from models.training.dataset import TrainingData

    torch.manual_seed(0)
    task = CCNNTask(steps=2)
    data = TrainingData(crop_size=task.input_size)
    rng = np.random.default_rng(0)
    ids = data.epoch_ids(rng)[:8]
    batch = data.train_batch(ids, AugmentConfig(), rng)  # the same 8 faces every step
    x, target = task.to_input(batch.crops), task.make_targets(torch.from_numpy(batch.points))
    model = task.blank_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), 2e-3)
    losses = []
    for _ in range(8):
        loss = task.loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_the_export_matches_torch(tmp_path):
    from models.tools.export import export_onnx, ort_session, sample_crops

    torch.manual_seed(0)
    task = CCNNTask(steps=2)
    model = task.blank_model().eval()
    path = tmp_path / "ccnn.onnx"
    assert export_onnx(model, task, path, in_graph_decode=False) == ["coords", "confidence"]
    x = task.to_input(sample_crops(task, 4))
    coords, confidence = ort_session(path, 1).run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(coords - ref[..., :2]).max() * task.input_size < 0.01  # crop pixels
    assert np.abs(confidence - ref[..., 2]).max() < 1e-4


def test_a_smoke_run_of_models_train_exports_to_a_file_the_registry_loads(tmp_path, monkeypatch):
    from models.datasets import TEST_SET, list_annotated, resolve_dataset
    from models.tools.export import main as export_main
    from models.manifest import load_manifest
    from models.registry import available_models, load_landmark_model
    from models.tools.train import main as train_main

    # runs under a scratch folder; the crop cache stays the shared one (rebuilding it takes minutes)
    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path / "runs"))
    train_main(["--model", "ccnn", "--run", "smoke", "--epochs", "1", "--max-steps", "20", "--batch", "4",
                "--steps", "2", "--threads", "1", "--no-bf16", "--val-fraction", "0.01", "--warmup-epochs", "0.1"])
    checkpoint = tmp_path / "runs" / "smoke" / "last.pt"
    assert checkpoint.is_file()
    assets = tmp_path / "assets"
    result = export_main(["--model", "ccnn", "--checkpoint", str(checkpoint), "--out", str(assets), "--threads", "1",
                          "--no-int8"])
    assert result["max_abs_diff"] * 128 < 0.01  # crop pixels
    manifest = load_manifest(assets / "ccnn.json")
    assert manifest.kind == "coords" and manifest.coords_unit == "normalized" and manifest.input_size == 128
    assert "2 regression units" in manifest.card.recipe
    assert "ccnn" in available_models(assets)
    item = list_annotated(resolve_dataset(TEST_SET))[0]
    import cv2

    from models.align import align_from_landmarks

    crop = align_from_landmarks(cv2.imread(str(item.image_path)), item.load_points(), 128)
    with load_landmark_model("ccnn", backend="ort-cpu", assets_dir=assets) as model:
        marks = model.predict([crop])[0]
    assert marks.points.shape == (68, 2) and np.isfinite(marks.points).all()
    assert marks.confidence.shape == (68,)

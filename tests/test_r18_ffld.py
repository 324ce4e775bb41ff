"""ResNet18-FFLD: shapes, bilinear crops and their gradients, zero-initialised stages, losses,
non-face crops, the 224 px training geometry, two-phase resumable training, export and the app path."""
import json

import cv2
import numpy as np
import pytest
from tests.peers import require_peers  # noqa: E402

require_peers("torch")  # the train extra: the core stack (no torch) skips this file
pytestmark = pytest.mark.peers("torch")

import torch  # noqa: E402

from models.align import align_from_landmarks, transform_points
from models.datasets import data_root, list_annotated
from models.nets.r18_ffld import FFLDOutput, R18FFLD, crop_patches, patch_offsets
from models.training.augment import AugmentConfig, sample_geometry, warp_sample
from models.training.crop_cache import canonical_matrix, canonical_offset
from models.training.dataset import cache_geometry
from models.training.ffld_task import FFLDTask, gaussian_blur, make_negatives


@pytest.fixture(scope="module")
def real_face():
    item = list_annotated(data_root() / "300w" / "helen_train")[0]
    return cv2.imread(str(item.image_path)), item.load_points()


def test_output_shapes_and_confidence_range():
    torch.manual_seed(0)
    model = R18FFLD().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 68, 3)
    assert torch.all((out[..., 2] >= 0) & (out[..., 2] <= 1))
    model.train()
    full = model(torch.randn(2, 3, 224, 224))
    assert isinstance(full, FFLDOutput) and len(full.shapes) == 4 and full.confidence_logits.shape == (2, 68)
    assert {k: tuple(v.shape[2:]) for k, v in full.features.items()} == {
        "f112": (112, 112), "f56": (56, 56), "f28": (28, 28), "f7": (7, 7)}
    baseline = R18FFLD(refine=False).train()(torch.randn(2, 3, 224, 224))
    assert len(baseline.shapes) == 1 and baseline.confidence_logits is None


def test_crop_samples_the_map_at_u_times_size_minus_half():
    h = w = 28
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    features = torch.stack([xs, ys])[None]  # channel 0 = x index, channel 1 = y index
    points = torch.tensor([[[0.5, 0.5], [0.3, 0.6]]])
    patches = crop_patches(features, points, patch_offsets()).view(1, 2, 2, 8, 8)
    d = torch.arange(8, dtype=torch.float32) - 3.5
    for k in range(2):
        fx, fy = points[0, k] * w - 0.5
        torch.testing.assert_close(patches[0, k, 0], (fx + d).expand(8, 8))
        torch.testing.assert_close(patches[0, k, 1], (fy + d)[:, None].expand(8, 8))


def test_gradient_reaches_the_crop_locations():
    torch.manual_seed(0)
    features = torch.randn(1, 4, 28, 28)
    points = torch.tensor([[[0.4, 0.55]]], requires_grad=True)
    crop_patches(features, points, patch_offsets()).pow(2).sum().backward()
    assert points.grad is not None and points.grad.abs().min() > 0
    # In the network: the S0 head moves only the crop locations of stage 1, yet the stage-1
    # correction's gradient reaches it (once the CropNet's FC is no longer zero).
    model = R18FFLD().train()
    torch.nn.init.normal_(model.stages[0].cropnet.fc.weight, std=0.1)
    out = model(torch.randn(2, 3, 224, 224))
    (out.shapes[1] - out.shapes[0]).pow(2).sum().backward()
    assert model.s0.weight.grad.abs().sum() > 0
    assert model.backbone.layer2[1].conv2[0].weight.grad.abs().sum() > 0  # and through the features


def test_zero_initialised_stages_leave_s0_unchanged():
    torch.manual_seed(0)
    model = R18FFLD().eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 224, 224), all_stages=True)
    for later in out.shapes[1:]:
        torch.testing.assert_close(later, out.shapes[0], rtol=0, atol=0)


def test_mean_shape_start_and_crop_geometry(real_face):
    assert cache_geometry(192) == (320, 192)  # the mnv2_sdd cache, unchanged
    canon, crop = cache_geometry(224)
    assert (canon - crop) % 2 == 0
    image, points = real_face
    m = canonical_matrix(points, canon, crop)
    canonical = cv2.warpAffine(image, m, (canon, canon), flags=cv2.INTER_LINEAR, borderValue=0)
    canon_points = transform_points(points, m)
    geo, flip = sample_geometry(canon_points, crop, AugmentConfig.none(), np.random.default_rng(0))
    o = canonical_offset(canon, crop)
    np.testing.assert_allclose(geo, [[1, 0, -o], [0, 1, -o]], atol=1e-9)
    warped, pts = warp_sample(canonical, canon_points, geo, flip, crop)
    runtime = align_from_landmarks(image, points, 224)
    np.testing.assert_allclose(pts, transform_points(points, runtime.matrix), atol=1e-6)
    diff = np.abs(warped.astype(int) - runtime.image.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2


def _targets(task, points_px):
    task._negatives = None
    return task.make_targets(torch.as_tensor(points_px, dtype=torch.float32))


@pytest.mark.parametrize("stage3", ["align", "l1"])
def test_losses_vanish_at_the_truth_and_grow_with_error(stage3):
    torch.manual_seed(0)
    task = FFLDTask(stage3_loss=stage3)
    rng = np.random.default_rng(0)
    points = rng.uniform(40, 180, (2, 68, 2))
    points[:, 36], points[:, 45] = [70, 90], [150, 90]
    target = _targets(task, points)
    features = {"f112": torch.randn(2, 16, 112, 112)}

    def output(shift):
        shape = target["points"] + shift
        return FFLDOutput([shape] * 4, torch.full((2, 68), 20.0), features)

    terms = task.loss_terms(output(0.0), target)
    for name in ("s0", "s1", "s2", "s3"):
        assert terms[name].item() == pytest.approx(0.0, abs=1e-6), name
    assert terms["confidence"].item() < 1e-6  # confident and right
    small, large = task.loss_terms(output(0.01), target), task.loss_terms(output(0.03), target)
    for name in ("s0", "s1", "s2", "s3", "confidence"):
        assert 0 < small[name].item() < large[name].item(), name


def test_l2_terms_grow_linearly_beyond_the_cap():
    task = FFLDTask(l2_weight=1.0, l2_cap=0.1)
    points = np.zeros((1, 68, 2))
    points[0, :, 0] = np.linspace(50, 170, 68)
    points[0, 36], points[0, 45] = [70, 90], [150, 90]  # inter-ocular 80 px
    target = _targets(task, points)
    io = 80 / 224

    def s0(err_io):
        shape = target["points"] + torch.tensor([err_io * io, 0.0])
        return task.loss_terms(FFLDOutput([shape], None, {}), target)["s0"].item()

    assert s0(0.05) == pytest.approx(0.05**2, rel=1e-4)  # quadratic below the cap
    assert s0(0.3) == pytest.approx(2 * 0.1 * 0.3 - 0.1**2, rel=1e-4)  # linear beyond
    assert s0(0.5) - s0(0.4) == pytest.approx(s0(0.4) - s0(0.3), rel=1e-3)


def test_non_faces_are_left_out_of_the_point_losses_and_trained_towards_zero_confidence():
    task = FFLDTask(negative_fraction=1.0)
    crops = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    torch.manual_seed(0)
    x = task.to_input(crops)
    target = task.make_targets(torch.full((3, 68, 2), 100.0) + torch.arange(68.0)[None, :, None])
    assert x.shape == (3, 3, 224, 224) and not target["face"].any()
    shape = torch.zeros(3, 68, 2)
    out = FFLDOutput([shape] * 4, torch.full((3, 68), -30.0), {"f112": torch.randn(3, 16, 112, 112)})
    terms = task.loss_terms(out, target)
    assert all(terms[k].item() == 0 for k in ("s0", "s1", "s2", "s3")) and terms["confidence"].item() < 1e-6
    with torch.no_grad():  # evaluation batches are never altered
        task.to_input(crops)
    assert task.make_targets(torch.zeros(3, 68, 2))["face"].all()
    neg = make_negatives(crops[:2])
    assert neg.shape == crops[:2].shape and not np.array_equal(neg, crops[:2])


def test_gaussian_blur_keeps_the_mass():
    x = torch.zeros(1, 2, 21, 21)
    x[0, :, 10, 10] = 1.0
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape and y.sum().item() == pytest.approx(2.0, rel=1e-5) and y[0, 0, 10, 10] < 0.2


def _train_args(run, *extra):
    return ["--model", "r18_ffld", "--run", run, "--s0-epochs", "1", "--epochs", "2", "--batch", "4",
            "--max-steps", "1", "--no-bf16", "--threads", "1", "--val-fraction", "0.01", *extra]


def test_two_phase_training_resumes_exactly(tmp_path, monkeypatch):
    from models.tools.train import main as train_main

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path))
    train_main(_train_args("straight"))
    train_main(_train_args("cut", "--stop-after", "1"))  # the baseline run only
    assert (tmp_path / "cut_s0" / "last.pt").is_file() and not (tmp_path / "cut" / "last.pt").exists()
    train_main(_train_args("cut", "--stop-after", "1"))  # first epoch of the full model
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    train_main(_train_args("cut"))  # the same command finishes it
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["config"]["task"]["init_run"] == "straight_s0"
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    base = torch.load(tmp_path / "straight_s0" / "last.pt", weights_only=True)
    assert base["config"]["task"]["refine"] is False
    # the baseline phase never touched the stages: still zero
    assert not base["model"]["stages.0.cropnet.fc.weight"].any()
    assert [json.loads(x)["epoch"] for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_export_matches_torch_and_runs_in_the_app(tmp_path, monkeypatch, real_face):
    import onnx

    from models.tools.export import load_trained, main as export_main
    from models.manifest import load_manifest
    from models.onnx_landmarks import OnnxLandmarkModel
    from models.tools.train import main as train_main

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path / "runs"))
    train_main(_train_args("tiny", "--s0-epochs", "0", "--epochs", "1"))
    checkpoint = tmp_path / "runs" / "tiny" / "last.pt"
    # give the CropNets non-zero weights so the check covers the crops
    state = torch.load(checkpoint, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for k in [k for k in state["model"] if k.endswith("cropnet.fc.weight")]:
        state["model"][k] = 0.05 * torch.randn(state["model"][k].shape, generator=gen)
    torch.save(state, checkpoint)
    result = export_main(["--model", "r18_ffld", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "assets"),
                          "--threads", "1", "--no-int8"])  # the INT8 step is tested on mnv2_sdd (test_training)
    assert result["max_abs_diff"] < 1e-4
    graph = onnx.load(str(tmp_path / "assets" / "r18_ffld.onnx"))
    assert "GridSample" in {n.op_type for n in graph.graph.node}
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 16
    manifest = load_manifest(tmp_path / "assets" / "r18_ffld.json")
    assert manifest.kind == "coords" and manifest.outputs == ("coords", "confidence") and manifest.input_size == 224
    # the app path: aligned crop -> ORT -> frame points equals torch mapped back by hand
    image, points = real_face
    crop = align_from_landmarks(image, points, 224)
    app = OnnxLandmarkModel(tmp_path / "assets" / "r18_ffld.json", backend="ort-cpu")
    try:
        landmarks = app.predict([crop])[0]
    finally:
        app.close()
    task, model, _ = load_trained("r18_ffld", checkpoint)
    with torch.no_grad():
        out = model(task.to_input(crop.image[None])).numpy()[0]
    expected = transform_points(task.points_from_output(out[None])[0], crop.inverse)
    np.testing.assert_allclose(landmarks.points, expected, atol=1e-3)
    np.testing.assert_allclose(landmarks.confidence, out[:, 2], atol=1e-5)


def test_crop_then_select_equals_select_then_crop():
    """Cropping first is only a cheaper order of the same linear operations (the benchmark's baseline)."""
    from models.training.ffld_benchmark import _select_then_crop

    torch.manual_seed(0)
    model = R18FFLD().eval()
    for stage in model.stages:
        torch.nn.init.normal_(stage.cropnet.fc.weight, std=0.05)
    stage = model.stages[0]
    features = torch.randn(2, 32, 28, 28)
    shape = 0.2 + 0.6 * torch.rand(2, 68, 2)
    with torch.no_grad():
        a, pa = stage(features, shape, model.offsets)
        b, pb = _select_then_crop(stage, features, shape, model.offsets)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-4)


def test_non_face_crops_come_from_the_street_clip():
    from models.training.ffld_eval import non_face_crops

    crops = non_face_crops(count=4, size=224)
    assert crops.shape == (4, 224, 224, 3) and crops.dtype == np.uint8 and crops.std() > 5


def test_fine_tuning_starts_from_the_shipped_file_exactly(tmp_path, monkeypatch):
    """--init-onnx: the folded batch norms come back as frozen affine maps, so the network
    computes what the shipped file computes, trains without moving them, resumes and exports."""
    from models.tools.export import ort_session, sample_crops
    from models.datasets import PROJECT_ROOT
    from models.tools.train import main as train_main
    from models.training.onnx_init import FrozenBatchNorm2d, load_onnx_weights

    shipped = PROJECT_ROOT / "assets" / "r18_ffld.onnx"
    task = FFLDTask(refine=True, init_onnx=str(shipped))
    model = task.build_model()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    model.train()
    assert not any(m.training for m in norms) and not any(p.requires_grad for m in norms for p in m.parameters())
    crops = sample_crops(task, 4)
    x = task.to_input(crops)
    with torch.no_grad():
        ours = model.eval()(x).numpy()
    coords, confidence = ort_session(shipped, threads=1).run(None, {"input": x.numpy()})
    assert np.abs(ours[..., :2] - coords).max() * 224 < 1e-3  # crop pixels
    assert np.abs(ours[..., 2] - confidence).max() < 1e-5
    with pytest.raises(ValueError, match="convolutions"):
        load_onnx_weights(R18FFLD(), PROJECT_ROOT / "assets" / "mnv2_sdd.onnx", 224)

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path))
    train_main(_train_args("ft", "--init-onnx", str(shipped), "--epochs", "1", "--lr", "1e-4"))
    state = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    assert state["config"]["task"]["init_onnx"] == str(shipped) and not (tmp_path / "ft_s0").exists()
    start = model.state_dict()
    trained = state["model"]
    norm_keys = [f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
                 for p in ("weight", "bias", "running_mean", "running_var")]
    assert len(norm_keys) == 4 * len(norms) and all(torch.equal(trained[k], start[k]) for k in norm_keys)
    assert not torch.equal(trained["s0.weight"], start["s0.weight"])
    kept = json.loads((tmp_path / "ft" / "start_card.json").read_text())
    shipped_card = json.loads(shipped.with_suffix(".json").read_text())["card"]
    assert kept["file"] == str(shipped) and kept["card"] == shipped_card and len(kept["sha256"]) == 64
    from models.tools.model_card import ffld_start_text, training_text

    assert shipped_card["recipe"] in ffld_start_text(state["config"]["task"], "ft")
    assert training_text(state, tmp_path / "ft" / "last.pt").endswith(shipped_card["training"])
    blank = FFLDTask.from_config(state["config"]["task"]).blank_model()
    blank.load_state_dict(trained)
    assert all(isinstance(m, FrozenBatchNorm2d) for m in blank.modules() if isinstance(m, torch.nn.BatchNorm2d))

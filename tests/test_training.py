"""Training machinery: crop cache geometry, augmentation consistency, flips, targets,
losses, detector-error loading, the network's shape, and exact checkpoint resume."""
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
from models.landmarks68 import MIRROR
from models.training.augment import (
    AugmentConfig,
    KeypointError,
    augment,
    load_keypoint_error,
    photometric,
    sample_geometry,
    warp_sample,
)
from models.training.crop_cache import CANON_SIZE, CROP_SIZE, canonical_matrix, canonical_offset
from models.training.heatmap_task import HeatmapTask, gaussian_heatmaps, heatmap_to_crop

SPREAD = (0, 8, 16, 19, 24, 30, 36, 45, 48, 54, 57)  # well separated landmarks


@pytest.fixture(scope="module")
def real_face():
    item = list_annotated(data_root() / "300w" / "helen_train")[0]
    image = cv2.imread(str(item.image_path))
    points = item.load_points()
    m = canonical_matrix(points)
    canon = cv2.warpAffine(image, m, (CANON_SIZE, CANON_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)
    return image, points, canon, transform_points(points, m)


def geometry_only(**kw) -> AugmentConfig:
    cfg = AugmentConfig.none()
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_unaugmented_warp_equals_runtime_alignment(real_face):
    image, points, canon, canon_points = real_face
    runtime = align_from_landmarks(image, points, CROP_SIZE)
    m, flip = sample_geometry(canon_points, CROP_SIZE, geometry_only(), np.random.default_rng(0))
    o = canonical_offset()
    np.testing.assert_allclose(m, [[1, 0, -o], [0, 1, -o]], atol=1e-9)  # a pure integer shift
    assert not flip
    crop, pts = warp_sample(canon, canon_points, m, flip, CROP_SIZE)
    np.testing.assert_allclose(pts, transform_points(points, runtime.matrix), atol=1e-6)
    diff = np.abs(crop.astype(int) - runtime.image.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2  # fixed-point rounding of the two warps only


@pytest.mark.parametrize("seed", range(6))
def test_augmented_points_follow_the_image(real_face, seed):
    """Dots drawn at landmarks of the canonical crop land on the transformed points."""
    _, _, _, canon_points = real_face
    cfg = geometry_only(jitter_scale=1.0, rotation_deg=30.0, scale=0.15, translation=0.05, flip_prob=0.5,
                        keypoint_error=KeypointError.default())
    rng = np.random.default_rng(seed)
    m, flip = sample_geometry(canon_points, CROP_SIZE, cfg, rng)
    _, out = warp_sample(np.zeros((CANON_SIZE, CANON_SIZE, 3), np.uint8), canon_points, m, flip, CROP_SIZE)
    for j in SPREAD:
        dot = np.zeros((CANON_SIZE, CANON_SIZE), np.float32)
        yy, xx = np.mgrid[:CANON_SIZE, :CANON_SIZE]
        dot[:] = 255 * np.exp(-((xx - canon_points[j, 0]) ** 2 + (yy - canon_points[j, 1]) ** 2) / (2 * 2.0**2))
        warped = cv2.warpAffine(dot, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)
        ys, xs = np.mgrid[:CROP_SIZE, :CROP_SIZE]
        centroid = np.array([(warped * xs).sum(), (warped * ys).sum()]) / warped.sum()
        expected = out[MIRROR[j]] if flip else out[j]
        assert np.linalg.norm(centroid - expected) < 0.15, (j, flip, centroid, expected)


def test_flip_keeps_semantic_order(real_face):
    _, _, canon, canon_points = real_face
    rng = np.random.default_rng(0)
    _, plain = augment(canon, canon_points, CROP_SIZE, geometry_only(), rng)
    _, flipped = augment(canon, canon_points, CROP_SIZE, geometry_only(flip_prob=1.0), rng)
    # index 36 stays the image-left outer eye corner, 45 the image-right one
    assert flipped[36, 0] < flipped[45, 0] and plain[36, 0] < plain[45, 0]
    # flipping mirrors x about the crop centre, with the mirror permutation
    np.testing.assert_allclose(flipped[:, 0], (CROP_SIZE - 1 - plain[:, 0])[MIRROR], atol=1e-6)
    np.testing.assert_allclose(flipped[:, 1], plain[MIRROR, 1], atol=1e-6)
    assert np.array_equal(MIRROR[MIRROR], np.arange(68))


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_flipped_samples_keep_the_labels_offset(real_face, flip_prob):
    """Labels 1 image px right of the feature stay right of it in flipped samples (label_offset.py)."""
    _, points, _, canon_points = real_face
    v = 1.0 * canonical_matrix(points)[:, 0]  # +1 image px along the source's x axis, in canonical pixels
    cfg = geometry_only(rotation_deg=30.0, scale=0.15, translation=0.05, flip_prob=flip_prob)
    blank = np.zeros((CANON_SIZE, CANON_SIZE, 3), np.uint8)
    for seed in range(4):
        m, flip = sample_geometry(canon_points, CROP_SIZE, cfg, np.random.default_rng(seed))
        assert flip == bool(flip_prob)
        _, content = warp_sample(blank, canon_points, m, flip, CROP_SIZE)
        _, kept = warp_sample(blank, canon_points + v, m, flip, CROP_SIZE, label_offset=v)
        _, plain = warp_sample(blank, canon_points + v, m, flip, CROP_SIZE)
        length = np.linalg.norm(m[:, :2] @ v)
        offset = kept - content  # the same vector on every point
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(offset[0]), length, rtol=1e-6)
        assert offset[0, 0] > 0.85 * length  # right of the feature (rotation at most 30 degrees)
        if flip:  # without the correction a flip turns the offset round
            assert (plain - content)[0, 0] < -0.85 * length
        else:
            np.testing.assert_allclose(plain, kept)


def test_label_offset_vectors_follow_each_images_canonical_scale():
    from models.training.crop_cache import CropSet
    from models.training.label_offset import offset_vectors

    items = list_annotated(data_root() / "300w" / "afw")[:3]
    crop_set = CropSet("300w/afw", np.zeros((3, 1, 1, 3), np.uint8), np.zeros((3, 68, 2), np.float32),
                       [it.image_path.name for it in items])
    vectors = offset_vectors(crop_set, 1.0, CANON_SIZE, CROP_SIZE)
    for item, vector in zip(items, vectors):
        m = canonical_matrix(item.load_points())
        np.testing.assert_allclose(vector, m[:, 0], rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="no longer annotated"):
        offset_vectors(CropSet("300w/afw", crop_set.images, crop_set.points, ["nope.jpg"]), 1.0, CANON_SIZE, CROP_SIZE)


def test_teacher_points_follow_the_faces_and_are_cached(tmp_path, monkeypatch):
    """The teacher (a real shipped network here) marks each cached face where its labels are, in
    canonical coordinates, and a second call reads the cache."""
    from models.metrics import nme
    from models.training.crop_cache import CropSet
    from models.training.teacher import teacher_file, teacher_points

    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))
    items = list_annotated(data_root() / "300w" / "afw")[:4]
    images, points = [], []
    for item in items:
        pts = item.load_points()
        m = canonical_matrix(pts)
        images.append(cv2.warpAffine(cv2.imread(str(item.image_path)), m, (CANON_SIZE, CANON_SIZE)))
        points.append(transform_points(pts, m))
    crop_set = CropSet("300w/afw", np.stack(images), np.stack(points).astype(np.float32),
                       [it.image_path.name for it in items])
    models = ("r18_ffld@fp32",)
    taught = teacher_points(crop_set, models, batch=3, progress=False)
    assert taught.shape == (4, 68, 2) and teacher_file("300w/afw", CANON_SIZE, models).is_file()
    errors = [nme(t, p, "io") for t, p in zip(taught, crop_set.points)]  # r18_ffld was trained on afw
    assert np.mean(errors) < 0.04 and max(errors) < 0.08, errors
    np.save(teacher_file("300w/afw", CANON_SIZE, models), taught + 1.0)
    np.testing.assert_allclose(teacher_points(crop_set, models), taught + 1.0)  # read back, not recomputed


def test_distillation_blends_teacher_and_labels_for_training_only(monkeypatch):
    """--distill W trains on W x teacher + (1 - W) x labels; validation keeps the labels; with the
    labels' offset kept, the teacher is first moved onto the labels' convention. (The teacher is a
    stand-in here: the real one is tested above.)"""
    import models.training.teacher as teacher
    from models.training.augment import AugmentConfig
    from models.training.dataset import TrainingData

    monkeypatch.setattr(teacher, "teacher_points", lambda crop_set: crop_set.points + np.float32([2.0, 0.0]))
    plain = TrainingData(crop_size=192, sets=("300w/afw",))
    half = TrainingData(crop_size=192, sets=("300w/afw",), distill=0.5)
    labels = half.sets[0].points
    np.testing.assert_allclose(half.train_points[0], labels + np.float32([1.0, 0.0]), atol=1e-4)
    np.testing.assert_array_equal(half.plain_batch(half.val_ids).points, plain.plain_batch(plain.val_ids).points)
    ids = half.train_w300[:4]  # the crop is aligned from the training points, so a shift moves the content
    none = AugmentConfig.none()
    a, b = (d.train_batch(ids, none, np.random.default_rng(0)) for d in (half, plain))
    np.testing.assert_allclose(a.points, b.points, atol=1e-3)
    assert np.abs(a.crops.astype(int) - b.crops.astype(int)).mean() > 1.0
    kept = TrainingData(crop_size=192, sets=("300w/afw",), distill=1.0, label_offset_x=1.0)
    offsets = kept.label_offsets[0]
    along = np.sum((kept.train_points[0] - labels) * offsets[:, None, :])
    assert abs(along) < 1e-3 * np.sum(offsets**2)  # no mean offset from the labels along their offset


def test_photometric_keeps_shape_and_type(real_face):
    _, _, canon, _ = real_face
    crop = canon[64:256, 64:256].copy()
    cfg = AugmentConfig(colour_prob=1, grey_prob=1, blur_prob=1, noise_prob=1, jpeg_prob=1, erase_prob=1)
    out = photometric(crop, cfg, np.random.default_rng(0))
    assert out.shape == crop.shape and out.dtype == np.uint8 and not np.array_equal(out, crop)


def test_keypoint_error_file_layouts(tmp_path):
    assert "default" in load_keypoint_error(tmp_path / "missing.json").source
    slots = {"left_eye": {"mean": [0.01, 0.0], "std": [0.02, 0.03]}, "nose": {"mean": [0, 0], "std": [0.05, 0.05]}}
    path = tmp_path / "err.json"
    other = {"left_eye": {"mean": [0, 0], "std": [0.04, 0.01]}}
    path.write_text(json.dumps({"detectors": {"a": {"slots": slots}, "b": {"slots": other}}}))
    a = load_keypoint_error(path, "a")
    np.testing.assert_allclose(a.mean[0], [0.01, 0.0])
    np.testing.assert_allclose(a.std[2], [0.05, 0.05])
    both = load_keypoint_error(path, "max")
    np.testing.assert_allclose(both.std[0], [0.04, 0.03])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        load_keypoint_error(bad)


def test_target_heatmaps_peak_at_the_points():
    points = torch.tensor([[[93.5, 97.5], [10.0, 30.0], [150.25, 170.75]]])
    maps = gaussian_heatmaps(points, 48, 4, 1.5)
    assert maps.shape == (1, 3, 48, 48)
    h = (points + 0.5) / 4 - 0.5
    for k in range(3):
        idx = int(maps[0, k].argmax())
        assert (idx % 48, idx // 48) == tuple(np.round(h[0, k].numpy()).astype(int))
    assert maps[0, 0].max() == pytest.approx(1.0)  # on-grid point: peak exactly 1
    assert maps[0, 1].max() == pytest.approx(np.exp(-(0.125**2 + 0.125**2) / (2 * 1.5**2)), rel=1e-5)
    task = HeatmapTask(sigma=1.5)
    back = task.points_from_output(maps.numpy())
    np.testing.assert_allclose(back, points.numpy(), atol=0.05 * 4)
    np.testing.assert_allclose(heatmap_to_crop(h.numpy(), 4), points.numpy(), atol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "wmse", "awing"])
def test_losses_are_zero_at_the_target_and_grow_with_error(loss):
    task = HeatmapTask(loss_name=loss)
    target = gaussian_heatmaps(torch.tensor([[[50.0, 60.0]]]), 48, 4, 1.5)
    assert task.loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    shifted = gaussian_heatmaps(torch.tensor([[[54.0, 60.0]]]), 48, 4, 1.5)
    far = gaussian_heatmaps(torch.tensor([[[70.0, 60.0]]]), 48, 4, 1.5)
    assert 0 < task.loss(shifted, target).item() < task.loss(far, target).item()


def test_network_output_shape():
    torch.manual_seed(0)
    model = HeatmapTask().build_model().eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 192, 192))
    assert out.shape == (2, 68, 48, 48)


def test_resume_reproduces_an_uninterrupted_run(tmp_path, monkeypatch):
    from models.training.loop import TrainConfig, train

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path))
    task = HeatmapTask()
    aug = AugmentConfig()

    def cfg(run):
        return TrainConfig(run=run, epochs=2, batch=4, max_steps=1, bf16=False, threads=1, val_fraction=0.01)

    train(cfg("straight"), task, aug)
    train(cfg("cut"), task, aug, stop_after=1)
    first = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert first["epoch"] == 1
    train(cfg("cut"), task, aug)  # same command resumes
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["scheduler"] == b["scheduler"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    lines = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    with pytest.raises(SystemExit, match="different configuration"):
        train(TrainConfig(run="cut", epochs=3, batch=4, max_steps=1, bf16=False, threads=1, val_fraction=0.01),
              task, aug)


def test_validation_can_hold_out_whole_ytf68_people():
    from models.training.dataset import TrainingData, identity_of

    assert identity_of("test_Abdullah_Gul_11.jpg") == identity_of("training_Abdullah_Gul_3.jpg") == "Abdullah_Gul"
    plain = TrainingData(crop_size=192)
    wide = TrainingData(crop_size=192, val_identity_fraction=0.1)
    assert len(plain.val_ids) == 55 and set(plain.val_ids) < set(wide.val_ids)
    added = sorted(set(wide.val_ids) - set(plain.val_ids))
    assert 300 < len(added) < 650  # about a tenth of the 4232 ytf68 frames
    val_people = {identity_of(wide._source(g)) for g in added}
    train_people = {identity_of(wide._source(g)) for g in wide.train_other}
    assert val_people and not val_people & train_people  # nobody on both sides
    everything = set(wide.val_ids) | set(wide.train_w300) | set(wide.train_other)
    assert everything == set(range(len(wide.refs)))


def test_a_continuation_starts_from_the_other_runs_weights(tmp_path, monkeypatch):
    from models.training.loop import TrainConfig, train
    from models.training.tasks import task_from_config

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path))
    train(TrainConfig(run="first", epochs=1, batch=4, max_steps=1, bf16=False, threads=1, val_fraction=0.01),
          HeatmapTask(), AugmentConfig())
    trained = torch.load(tmp_path / "first" / "last.pt", weights_only=True)["model"]
    task = HeatmapTask(init_run="first")
    started = task.build_model().state_dict()
    assert all(torch.equal(started[k], trained[k]) for k in trained)
    assert task.config()["init_run"] == "first" and "init_run" not in HeatmapTask().config()
    assert task_from_config(task.config()).init_run == "first"
    with pytest.raises(FileNotFoundError, match="no checkpoint of run 'missing'"):
        HeatmapTask(init_run="missing").build_model()


def test_weight_ema_is_validated_resumed_and_exported(tmp_path, monkeypatch, capsys):
    from models.training.checkpoint import inference_weights
    from models.training.loop import TrainConfig, train

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path))
    task, aug = HeatmapTask(), AugmentConfig()

    def cfg(run):
        return TrainConfig(run=run, epochs=2, batch=4, max_steps=2, bf16=False, threads=1, val_fraction=0.01,
                           ema_decay=0.5)

    train(cfg("straight"), task, aug)
    train(cfg("cut"), task, aug, stop_after=1)
    train(cfg("cut"), task, aug)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert int(a["ema"]["n_averaged"]) == 4 and a["config"]["train"]["ema_decay"] == 0.5
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    averaged = inference_weights(a)
    assert set(averaged) == set(a["model"])
    name = next(k for k in a["model"] if k.endswith("weight") and a["model"][k].is_floating_point())
    assert not torch.equal(averaged[name], a["model"][name])  # the average lags the trained weights
    assert inference_weights({"model": a["model"]}) is a["model"]
    assert "ema_decay" not in TrainConfig(run="old").resume_keys()  # older runs still resume

    import shutil

    from models.tools.train import main as train_main

    folder = tmp_path / "faces"
    folder.mkdir()
    for item in list_annotated(data_root() / "300w" / "helen_test")[:2]:
        shutil.copy(item.image_path, folder)
        shutil.copy(item.pts_path, folder)
    capsys.readouterr()  # the training runs' output
    reports = {}
    for flag in ([], ["--no-ema"]):
        train_main(["--model", "mnv2_sdd", "--evaluate", str(tmp_path / "straight" / "last.pt"),
                    "--eval-set", str(folder), "--threads", "1", *flag])
        report = json.loads(capsys.readouterr().out)
        reports[report["weights"]] = report["dark"]["nme"]
    assert set(reports) == {"ema", "trained"} and reports["ema"] != reports["trained"]


def test_model_card_counts_every_run_of_a_continuation_chain(tmp_path, monkeypatch):
    from models.tools.model_card import training_text

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path))
    chain = {"a": ("", [3600.0, 3600.0]), "b": ("a", [1800.0]), "c": ("b", [900.0, 900.0, 900.0])}
    for run, (init_run, seconds) in chain.items():
        (tmp_path / run).mkdir()
        task = {"model": "mnv2_sdd", **({"init_run": init_run} if init_run else {})}
        (tmp_path / run / "config.json").write_text(json.dumps({"task": task}))
        (tmp_path / run / "log.jsonl").write_text(
            "".join(json.dumps({"epoch": i + 1, "train_s": t}) + "\n" for i, t in enumerate(seconds)))
    state = {"config": {"train": {"run": "c"}}, "epoch": 2}  # shipped from epoch 2 of 3
    text = training_text(state, tmp_path / "c" / "best.pt", "b")
    assert "run c: 2 epochs, 0.50 h" in text
    assert "starting run b: 1 epochs, 0.50 h" in text and "starting run a: 2 epochs, 2.00 h" in text
    assert "3.00 h of training steps in total" in text


def test_in_graph_dark_decoder_matches_host_decode():
    from models.tools.export import _in_graph_decoder
    from models.heatmap_decode import decode_heatmaps

    task = HeatmapTask(sigma=1.5)
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(-4, 195, (2, 68, 2)).astype(np.float32))
    maps = gaussian_heatmaps(points, 48, 4, 1.5) * 0.9 + 0.02 * torch.rand(2, 68, 48, 48)
    coords, conf = _in_graph_decoder(task)(maps)
    host, host_conf = decode_heatmaps(maps.numpy(), "dark", task.decode_kernel())
    np.testing.assert_allclose(coords.numpy(), host, atol=1e-3)
    np.testing.assert_allclose(conf.numpy(), host_conf, atol=1e-6)


def test_export_writes_onnx_and_manifest_that_match_torch(tmp_path, monkeypatch):
    import onnxruntime as ort

    from models.tools.export import main as export_main
    from models.manifest import load_manifest, template_version
    from models.training.loop import TrainConfig, train

    monkeypatch.setenv("FACETRACK_TRAIN_DIR", str(tmp_path / "runs"))
    train(TrainConfig(run="tiny", epochs=1, batch=4, max_steps=1, bf16=False, threads=1, val_fraction=0.01),
          HeatmapTask(), AugmentConfig())
    result = export_main(["--model", "mnv2_sdd", "--checkpoint", str(tmp_path / "runs" / "tiny" / "last.pt"),
                          "--out", str(tmp_path / "assets"), "--threads", "1", "--no-int8"])
    assert result["max_abs_diff"] < 1e-4
    manifest = load_manifest(tmp_path / "assets" / "mnv2_sdd.json")
    assert manifest.int8 is None
    assert manifest.kind == "heatmap" and manifest.heatmap_size == 48 and manifest.input_size == 192
    assert manifest.outputs == ("heatmaps",) and manifest.coords_unit == "heatmap"
    assert manifest.template_version == template_version() and manifest.decode.method == "dark"
    assert "run tiny: 1 epochs" in manifest.card.training and "h of training steps in total" in manifest.card.training
    session = ort.InferenceSession(str(manifest.onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((3, 3, 192, 192), np.float32)})[0]  # dynamic batch
    assert out.shape == (3, 68, 48, 48)
    # the INT8 step export runs by default, kept small here: one method, 16 calibration crops
    from models.tools.quantize import quantize_network

    quantize_network(tmp_path / "assets" / "mnv2_sdd.json", methods=("minmax",), count=16)
    int8 = load_manifest(tmp_path / "assets" / "mnv2_sdd.json").int8
    assert int8 is not None and (tmp_path / "assets" / "mnv2_sdd.int8.onnx").is_file()
    quantized = ort.InferenceSession(str(tmp_path / "assets" / "mnv2_sdd.int8.onnx"), providers=["CPUExecutionProvider"])
    assert quantized.run(None, {"input": np.zeros((2, 3, 192, 192), np.float32)})[0].shape == (2, 68, 48, 48)
    # a candidate export loads by its manifest's path, at either precision, before it is shipped
    from models.registry import ModelFileError, load_landmark_model

    for name in (str(tmp_path / "assets" / "mnv2_sdd.json"), str(tmp_path / "assets" / "mnv2_sdd.json") + "@int8"):
        model = load_landmark_model(name, backend="ort-cpu")
        assert model.input_size == 192
        model.close()
    with pytest.raises(ModelFileError, match="no model manifest"):
        load_landmark_model(str(tmp_path / "nowhere.json"))


def test_nme_per_face_normalises_by_outer_eye_corners():
    from models.metrics import nme_per_face

    gt = np.zeros((1, 68, 2))
    gt[0, 36], gt[0, 45] = [10, 20], [50, 20]  # inter-ocular distance 40
    assert nme_per_face(gt, gt)[0] == 0
    assert nme_per_face(gt + [0.0, 4.0], gt)[0] == pytest.approx(0.1)


def test_evaluate_folder_runs_the_runtime_path(tmp_path):
    import shutil

    from models.training.evaluate import evaluate_folder

    for item in list_annotated(data_root() / "300w" / "helen_train")[:3]:
        shutil.copy(item.image_path, tmp_path)
        shutil.copy(item.pts_path, tmp_path)
    torch.manual_seed(0)
    task = HeatmapTask()
    model = task.build_model()
    result = evaluate_folder(model, task, tmp_path, methods=("dark", "argmax"))
    assert set(result) == {"dark", "argmax"}
    assert result["dark"]["faces"] == 3 and np.isfinite(result["dark"]["nme"]) and result["dark"]["nme"] > 0
    box51 = evaluate_folder(model, task, tmp_path, methods=("dark",), norm="box", points=51)["dark"]
    # the same predictions, scored on 51 points over the landmark box's side (larger than the eye distance)
    assert box51["faces"] == 3 and 0 < box51["nme"] < result["dark"]["nme"]


def test_bf16_autocast_is_on_by_default_only_where_the_cpu_runs_it_natively():
    from models.tools.train import parse_args
    from models.training.loop import native_bf16

    assert isinstance(native_bf16(), bool)
    assert parse_args(["--model", "mnv2_sdd", "--run", "x"]).bf16 is None  # resolved to native_bf16() at start
    assert parse_args(["--model", "mnv2_sdd", "--run", "x", "--bf16"]).bf16 is True


def test_the_model_card_states_the_training_data_options():
    from models.tools.model_card import training_data_text, validation_text

    plain = {"val_fraction": 0.05, "split_seed": 0}
    assert "views" not in training_data_text(plain) and "teacher" not in training_data_text(plain)
    assert validation_text(plain) == "5% hold-out of 300-W afw+helen_train, GT-aligned crops"
    full = {**plain, "val_identity_fraction": 0.1, "large_pose_fraction": 0.3, "label_offset_x": 1.0,
            "ytf68_teacher": True, "distill": 0.5}
    text = training_data_text(full)
    for part in ("10% of its people held out", "teacher's points", "large-pose views", "0.3x", "+1 px",
                 "0.5 teacher", "HELEN test and the AFLW2000-3D validation faces never used"):
        assert part in text, part
    assert "10% of the ytf68 people" in validation_text(full)


def test_mnv2_sdd_fine_tunes_from_its_shipped_file_exactly():
    """--init-onnx for the heatmap network: folded convolutions by position, the unfolded head
    (transposed convolutions with their batch norms, the final convolution) by name."""
    from models.datasets import PROJECT_ROOT
    from models.tools.export import ort_session, sample_crops
    from models.training.onnx_init import FrozenBatchNorm2d
    from models.training.tasks import task_from_config

    shipped = PROJECT_ROOT / "assets" / "mnv2_sdd.onnx"
    task = HeatmapTask(init_onnx=str(shipped))
    model = task.build_model()
    assert all(isinstance(m, FrozenBatchNorm2d) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = task.to_input(sample_crops(task, 2))
    with torch.no_grad():
        ours = model.eval()(x).numpy()
    theirs = ort_session(shipped, threads=1).run(None, {"input": x.numpy()})[0]
    assert np.abs(ours - theirs).max() < 1e-4
    assert task_from_config(task.config()).init_onnx == str(shipped)
    with pytest.raises(ValueError, match="different starts"):
        HeatmapTask(init_onnx=str(shipped), imagenet_init=True).build_model()

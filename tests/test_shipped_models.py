"""The trained networks committed to assets/: they load, agree with their model cards, and track real faces."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from app.eval import evaluate as ev
from app.pipeline import PipelineSpec, build_pipeline
from app.sources import open_source
from models.align import align_from_landmarks
from models.datasets import list_annotated
from models.manifest import load_manifest, template_version
from models.registry import ASSETS_DIR, available_models, load_landmark_model
from models.types import AlignedCrop
from tests.conftest import read_image

SHIPPED = ("r18_ffld", "mnv2_sdd")  # in the registry's order: the default model first


@pytest.fixture(scope="module", params=SHIPPED)
def model(request):
    with load_landmark_model(request.param, backend="ort-cpu") as loaded:
        yield loaded


def test_both_networks_ship_and_come_first():
    assert available_models()[:2] == list(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_manifest_and_graph_agree(name):
    manifest = load_manifest(ASSETS_DIR / f"{name}.json")
    assert manifest.template_version == template_version()
    graph = onnx.load(str(manifest.onnx_path))
    assert max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) >= 17
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # dynamic batch
    assert 0.0 <= manifest.min_confidence < 0.8  # below the 1st percentile of mnv2_sdd's mean confidence on faces
    card = manifest.card
    assert "HELEN test" in card.metrics and "h of training steps in total" in card.training


def test_first_forty_helen_test_faces(model, helen_test_dir):
    # Full-set figures are in docs/RESULTS.md; these 40 faces must stay close to them.
    [summary] = ev.evaluate([model], helen_test_dir, mode="gt5", limit=40)
    assert summary.n == 40 and summary.misses == 0
    assert summary.nme_io < 0.042
    assert summary.fr == 0.0


def test_confidence_is_high_on_faces_and_low_on_noise(model, helen_test_dir):
    item = list_annotated(helen_test_dir)[0]
    from models.pts import read_pts

    face = align_from_landmarks(read_image(item.image_path), read_pts(item.pts_path), model.input_size)
    noise = np.random.default_rng(0).integers(0, 256, face.image.shape, dtype=np.uint8)
    not_face = AlignedCrop(noise, face.matrix, face.inverse)
    on_face, on_noise = model.predict([face, not_face])
    assert on_face.confidence.shape == (68,)
    assert np.all((on_face.confidence >= 0) & (on_face.confidence <= 1))
    assert on_face.confidence.mean() > on_noise.confidence.mean() + 0.2


def test_flip_test_stays_close_to_the_plain_prediction(model, helen_test_dir):
    with load_landmark_model(f"{model.name}+flip", backend="ort-cpu") as flipped:
        plain, both = ev.evaluate([model, flipped], helen_test_dir, mode="gt5", limit=20)
    assert both.model == f"{model.name}+flip"
    assert abs(both.nme_io - plain.nme_io) < 0.003


@pytest.mark.parametrize("name", SHIPPED)
def test_flip_test_adds_back_a_learnt_label_offset(name, tmp_path, helen_test_dir):
    """A manifest saying the network learnt the labels' +1 px moves the flip-averaged points by
    exactly that (the mirrored pass had it on the other side), along the image's x axis."""
    import json
    import os

    shipped = json.loads((ASSETS_DIR / f"{name}.json").read_text())
    shipped.pop("int8", None)
    os.symlink(ASSETS_DIR / shipped["onnx"], tmp_path / shipped["onnx"])
    for key, offset in (("plain", 0.0), ("offset", 1.0)):
        (tmp_path / f"{key}.json").write_text(json.dumps(shipped | {"label_offset_x": offset}))
    item = list_annotated(helen_test_dir)[0]
    image = read_image(item.image_path)
    points = {}
    for key, path in (("plain", tmp_path / "plain.json"), ("offset", tmp_path / "offset.json")):
        with load_landmark_model(f"{path}@fp32", backend="ort-cpu", flip_test=True) as flipped:
            crop = align_from_landmarks(image, item.load_points(), flipped.input_size)
            points[key] = flipped.predict([crop])[0].points
    np.testing.assert_allclose(points["offset"] - points["plain"], np.broadcast_to([1.0, 0.0], (68, 2)), atol=1e-3)


def test_tracks_the_talking_clip(talking_clip, model):
    with build_pipeline(PipelineSpec(model.name, backend="ort-cpu")) as pipeline, open_source(str(talking_clip)) as source:
        found = sum(bool(pipeline.process(frame).faces) for frame, _ in zip(source, range(60)))
    assert found == 60

"""The occluded test set (synth-occlusions) and its scoring (eval-occlusions)."""
import json

import cv2
import numpy as np
import pytest

from app.cli import main
from app.eval.occlusion_eval import evaluate_occlusions, roc_auc
from app.synth.occlusions import KINDS, TEXTURE_SETS, VISIBILITY_FILE, load_visibility, make_set
from models.datasets import TEST_SET
from models.pts import read_pts


def test_best_f1_threshold():
    from app.eval.occlusion_eval import best_f1_threshold

    threshold, f1 = best_f1_threshold(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), np.array([1, 1, 0, 0, 0], bool))
    assert f1 == 1.0 and 0.2 < threshold < 0.3
    threshold, f1 = best_f1_threshold(np.array([0.1, 0.1, 0.5]), np.array([1, 0, 0], bool))
    assert f1 == pytest.approx(2 / 3) and 0.1 < threshold < 0.5


def test_roc_auc_known_values():
    labels = np.array([0, 0, 1, 1], bool)
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.full(4, 0.5), labels) == 0.5
    assert roc_auc(np.array([0.1, 0.6, 0.4, 0.9]), labels) == 0.75
    assert np.isnan(roc_auc(np.ones(3), np.zeros(3, bool)))


@pytest.fixture(scope="module")
def occluded(tmp_path_factory):
    out = tmp_path_factory.mktemp("occluded")
    assert main(["synth-occlusions", "--out", str(out), "--limit", str(len(KINDS)), "--seed", "3"]) == 0
    return out


def test_every_kind_hides_points_and_the_ground_truth_is_kept(occluded):
    record = json.loads((occluded / VISIBILITY_FILE).read_text())
    assert record["source"] == TEST_SET and TEST_SET not in TEXTURE_SETS
    faces = record["faces"]
    assert sorted(f["occluder"] for f in faces.values()) == sorted(KINDS)
    hidden = load_visibility(occluded)
    from models.datasets import list_annotated, resolve_dataset

    for item in list_annotated(resolve_dataset(TEST_SET))[:len(KINDS)]:
        name = item.image_path.stem
        np.testing.assert_allclose(read_pts(occluded / f"{name}.pts"), item.load_points(), atol=1e-3)
        mask = hidden[f"{name}.jpg"]
        assert 0 < mask.sum() < 68, faces[f"{name}.jpg"]["occluder"]
        # hidden points changed in the image, visible ones far from the occluder did not
        original = cv2.imread(str(item.image_path)).astype(int)
        image = cv2.imread(str(occluded / f"{name}.jpg")).astype(int)
        diff = np.abs(image - original).sum(axis=2)
        p = np.round(item.load_points()).astype(int)
        assert np.median(diff[p[mask, 1], p[mask, 0]]) > 30


def test_the_same_seed_gives_the_same_set(occluded, tmp_path):
    again = make_set(tmp_path, seed=3, limit=len(KINDS))
    assert again == json.loads((occluded / VISIBILITY_FILE).read_text())
    name = next(iter(again["faces"]))
    assert np.array_equal(cv2.imread(str(tmp_path / name)), cv2.imread(str(occluded / name)))


def test_scoring_hidden_points_with_a_real_model(occluded):
    from models.registry import load_landmark_model

    with load_landmark_model("mnv2_sdd") as model:
        [summary] = evaluate_occlusions([model], occluded)
    assert summary.n == len(KINDS)
    assert 0 < summary.nme_visible < summary.nme_hidden < 0.5
    assert 0.0 <= summary.hidden_auc <= 1.0 and summary.threshold == 0.5


def test_bad_threshold_and_missing_visibility_file_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval-occlusions", "--model", "mnv2_sdd", "--visibility-threshold", "1.5"])
    assert info.value.code == 2 and "from 0 to 1" in capsys.readouterr().err
    assert main(["eval-occlusions", "--model", "mnv2_sdd", "--dataset", str(tmp_path)]) == 2
    assert "visibility.json" in capsys.readouterr().err

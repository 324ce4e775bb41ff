"""The shipped ccnn network (assets/ccnn.onnx, FP32) through the registry on real HELEN test faces."""
from __future__ import annotations


import pytest


@pytest.mark.parametrize("backend,precision", [("ort-cpu", "fp32"), ("ort-cpu", "int8"), ("openvino", "int8")])
def test_the_shipped_ccnn_loads_through_the_registry_and_finds_helen_test_landmarks(helen_test_dir, backend,
                                                                                     precision):
    """The full HELEN test set gives 3.45% network alone (the model card); the first 40 faces
    through `evaluate` (gt5, run-time path) must stay under 4.2% at every precision shipped (ONNX
    Runtime INT8, OpenVINO's NNCF INT8), with no miss and no failure."""
    from app.eval import evaluate as ev
    from models.registry import available_models, load_landmark_model

    assert "ccnn" in available_models()
    with load_landmark_model("ccnn", backend=backend, precision=precision) as model:
        assert (model.backend, model.precision) == (backend, precision)
        [summary] = ev.evaluate([model], helen_test_dir, mode="gt5", limit=40)
    assert summary.n == 40 and summary.misses == 0
    assert summary.nme_io < 0.042, (backend, precision, summary.nme_io)
    assert summary.fr == 0.0

"""The OpenVINO runner against ONNX Runtime on real HELEN test crops, and its selection."""

from __future__ import annotations

import numpy as np
import pytest

from engines import Backend, select
from engines.openvino import OpenVinoRunner
from engines.ort import OrtRunner


@pytest.mark.parametrize("name", ["r18_ffld", "mnv2_sdd"])
def test_openvino_matches_onnx_runtime_on_real_crops(name: str) -> None:
    """Same FP32 file, both runtimes: landmarks within 0.05 crop pixels on average, 0.3 at most."""
    import cv2

    from models.align import align_from_landmarks
    from models.datasets import TEST_SET, list_annotated, resolve_dataset
    from models.onnx_landmarks import OnnxLandmarkModel
    from models.registry import ASSETS_DIR

    with OnnxLandmarkModel(ASSETS_DIR / f"{name}.json", backend="ort-cpu", flip_test=False) as model:
        items = list_annotated(resolve_dataset(TEST_SET))[::40]
        crops = [align_from_landmarks(cv2.imread(str(i.image_path)), i.load_points(), model.input_size)
                 for i in items]
        feed = {model.manifest.input_name: model.preprocess(crops)}
        points = []
        for runner_type in (OrtRunner, OpenVinoRunner):
            with runner_type(model.manifest.onnx_path, threads=2) as runner:
                assert runner.backend is (Backend.ORT_CPU if runner_type is OrtRunner else Backend.OPENVINO)
                points.append(model.normalised_points(runner.infer(feed))[0])
    error = np.linalg.norm(points[1] - points[0], axis=-1) * model.input_size  # crop pixels
    assert error.mean() < 0.05 and error.max() < 0.3, (error.mean(), error.max())


def test_open_runner_opens_openvino_by_name() -> None:
    from models.registry import ASSETS_DIR

    assert select.backend_availability()[Backend.OPENVINO] is None
    with select.open_runner(ASSETS_DIR / "mnv2_sdd.onnx", "openvino") as runner:
        assert runner.backend is Backend.OPENVINO and runner.precision == "fp32"
        spec = runner.inputs[0]
        out = runner.infer({spec.name: np.zeros((1, *spec.shape[1:]), np.float32)})
        assert set(out) == {s.name for s in runner.outputs}


def test_openvino_refuses_a_missing_file(tmp_path) -> None:
    from engines import ModelFileError

    with pytest.raises(ModelFileError, match="not found"):
        OpenVinoRunner(tmp_path / "none.onnx")

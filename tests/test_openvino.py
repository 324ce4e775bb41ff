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


@pytest.mark.parametrize("name", ["r18_ffld", "mnv2_sdd", "drr", "sgfa"])
def test_the_shipped_openvino_int8_ir_tracks_real_faces_like_fp32(name: str) -> None:
    """OpenVINO's NNCF INT8 IR, opened through the registry: on 40 real HELEN test faces its mean
    NME_io is within 0.3 points of OpenVINO FP32's and under 5% (GT-aligned crops)."""
    import cv2

    from models.align import align_from_landmarks
    from models.datasets import TEST_SET, list_annotated, resolve_dataset
    from models.landmarks68 import OUTER_EYE_CORNERS
    from models.registry import load_landmark_model

    items = list_annotated(resolve_dataset(TEST_SET))[::8][:40]
    errors = {}
    for precision in ("fp32", "int8"):
        with load_landmark_model(f"{name}+norepair" if name == "sgfa" else name, backend="openvino",
                                 precision=precision, flip_test=False) as model:
            assert (model.backend, model.precision) == ("openvino", precision)
            nme = []
            for item in items:
                image, truth = cv2.imread(str(item.image_path)), item.load_points()
                crop = align_from_landmarks(image, truth, model.input_size)
                (found,) = model.decode(model.infer([crop]), [crop])
                io = np.linalg.norm(truth[OUTER_EYE_CORNERS[0]] - truth[OUTER_EYE_CORNERS[1]])
                nme.append(np.linalg.norm(found.points - truth, axis=1).mean() / io)
            errors[precision] = float(np.mean(nme))
    assert errors["int8"] < 0.05 and abs(errors["int8"] - errors["fp32"]) < 0.003, errors


def test_open_runner_runs_the_openvino_int8_ir_and_says_so() -> None:
    from models.manifest import load_manifest
    from models.registry import ASSETS_DIR

    m = load_manifest(ASSETS_DIR / "r18_ffld.json")
    assert m.openvino_int8 is not None and m.openvino_int8_path.suffix == ".xml"
    with select.open_runner(m.onnx_path, "openvino", precision="int8",
                            openvino_int8_path=m.openvino_int8_path) as runner:
        assert runner.backend is Backend.OPENVINO and runner.precision == "int8"
        assert runner.model_path == m.openvino_int8_path
    # auto precision on OpenVINO: the INT8 IR when it met its bar, else FP32
    for default, expected in ((True, "int8"), (False, "fp32")):
        with select.open_runner(m.onnx_path, "openvino", openvino_int8_path=m.openvino_int8_path,
                                openvino_int8_default=default) as runner:
            assert runner.precision == expected


def test_an_openvino_ir_without_its_weights_is_refused(tmp_path) -> None:
    from engines import ModelFileError
    from models.registry import ASSETS_DIR

    xml = tmp_path / "r18_ffld.ov-int8.xml"
    xml.write_bytes((ASSETS_DIR / "r18_ffld.ov-int8.xml").read_bytes())
    with pytest.raises(ModelFileError, match=r"\.bin"):
        select.open_runner(ASSETS_DIR / "r18_ffld.onnx", "openvino", precision="int8", openvino_int8_path=xml)


def test_a_thread_budget_turns_cpu_pinning_off() -> None:
    """Processes that share the cores (batch workers, one thread each) must not all pin their
    threads to the first core: OpenVINO pins by default."""
    from models.registry import ASSETS_DIR

    runner = OpenVinoRunner(ASSETS_DIR / "r18_ffld.ov-int8.xml", threads=1)
    try:
        assert runner._compiled.get_property("ENABLE_CPU_PINNING") is False
        assert runner._compiled.get_property("INFERENCE_NUM_THREADS") == 1
    finally:
        runner.close()

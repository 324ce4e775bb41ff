"""MTCNN (shipped in assets/mtcnn) and the default ``auto`` detector on real frames: the shared
street clip (many small faces) and HELEN-test images; the shipped files; the box helpers."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from models.datasets import TEST_SET, data_root, list_annotated
from models.detectors import DEFAULT_DETECTOR, create_detector
from models.detectors.auto import AutoDetector
from models.boxes import landmark_box
from models.tools.measure_detectors import match_detection
from models.detectors.mtcnn import MODEL_DIR, MtcnnDetector, nms, regress, square
from models.landmarks68 import inter_ocular, keypoints_from_landmarks

STREET = data_root() / "videos" / "street_multiface.mp4"


@pytest.fixture(scope="module")
def mtcnn():
    with create_detector("mtcnn") as det:
        yield det


@pytest.fixture(scope="module")
def street_frames():
    capture = cv2.VideoCapture(str(STREET))
    frames = []
    for index in (0, 50, 100):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok, f"cannot read frame {index} of {STREET}"
        frames.append(frame)
    capture.release()
    return frames


def test_shipped_files_have_the_documented_inputs_and_licence():
    dims = {}
    for net in ("pnet", "rnet", "onet"):
        graph = onnx.load(str(MODEL_DIR / f"{net}.onnx")).graph
        shape = graph.input[0].type.tensor_type.shape.dim
        dims[net] = [d.dim_param or d.dim_value for d in shape]
    assert dims == {
        "pnet": ["batch", 3, "height", "width"],
        "rnet": ["batch", 3, 24, 24],
        "onet": ["batch", 3, 48, 48],
    }
    licence = (MODEL_DIR / "LICENSE-facenet-pytorch.md").read_text()
    assert "MIT License" in licence and "Timothy Esler" in licence
    assert "MIT" in (MODEL_DIR / "MODEL_CARD.md").read_text()


def test_finds_the_small_faces_of_the_street_clip(mtcnn, street_frames):
    for frame in street_frames:
        detections = mtcnn.detect(frame)
        assert len(detections) >= 5
        h, w = frame.shape[:2]
        for det in detections:
            x1, y1, x2, y2 = det.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and 20 <= x2 - x1 < 200
            assert det.keypoint_mask.tolist() == [True] * 5 + [False]
            eyes, mouth = det.keypoints[:2], det.keypoints[3:5]
            assert np.all((det.keypoints[:5] >= det.box[:2] - 2) & (det.keypoints[:5] <= det.box[2:] + 2))
            assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]
            assert eyes[:, 1].max() < det.keypoints[2, 1] < mouth[:, 1].min()


def test_mirrored_frame_gives_mirrored_faces(mtcnn, street_frames):
    """Mirroring the frame mirrors x as w - 1 - x (within MTCNN's own asymmetry, a few % of the box)."""
    frame = street_frames[0]
    w = frame.shape[1]
    plain = mtcnn.detect(frame)
    mirrored = mtcnn.detect(frame[:, ::-1])
    centres = np.array([d.centre for d in mirrored])
    for det in plain:
        flipped = np.array([w - 1 - det.centre[0], det.centre[1]])
        nearest = np.linalg.norm(centres - flipped, axis=1).min()
        assert nearest < 0.2 * (det.box[2] - det.box[0])


def test_five_points_on_helen_faces(mtcnn):
    errors = []
    for item in list_annotated(data_root() / TEST_SET)[:12]:
        points = item.load_points()
        match = match_detection(mtcnn.detect(cv2.imread(str(item.image_path))), points)
        assert match is not None
        errors.append(np.linalg.norm(match.keypoints[:5] - keypoints_from_landmarks(points)[:5], axis=1).mean()
                      / inter_ocular(points))
    assert np.mean(errors) < 0.06  # all 330: 0.037 (docs/RESULTS.md)


def test_min_face_size_sets_the_pyramid(mtcnn):
    assert mtcnn.scales(640, 480)[0] == pytest.approx(12 / 20)
    assert mtcnn.scales(1920, 1080)[0] == pytest.approx(12 / 27)
    assert min(mtcnn.scales(1920, 1080)) * 1080 >= 12
    assert mtcnn.scales(11, 11) == []
    with pytest.raises(ValueError, match="min_face_size"):
        MtcnnDetector(min_face_size=8)
    with pytest.raises(ValueError, match="min_face_fraction"):
        MtcnnDetector(min_face_fraction=1.5)


def test_missing_network_file_is_named(tmp_path):
    from engines.base import ModelFileError

    with pytest.raises(ModelFileError, match="pnet.onnx"):
        MtcnnDetector(model_dir=tmp_path)


def test_auto_is_the_default_and_switches_on_large_frames(street_frames):
    assert DEFAULT_DETECTOR == "auto"
    with create_detector("auto") as det:
        assert isinstance(det, AutoDetector)
        assert det.chooses(1280, 720) is det.small and det.chooses(1920, 1080) is det.large
        assert len(det.detect(street_frames[0])) >= 5
    small = cv2.resize(street_frames[0], (1280, 720))
    with create_detector("auto", fallback_every=0) as det:
        assert len(det.detect(small)) < 5  # BlazeFace: near faces only
    with create_detector("auto") as det:  # ... and when it finds none, MTCNN searches the frame
        assert len(det.detect(small)) >= 5 and det.fallback_searches == 1


@pytest.fixture(scope="module")
def grey_photo_frame():
    """Frame 0 of the static synthetic clip ``static_008`` (seed 0; without its sensor noise): a plain
    frontal face about 125 px wide, printed in grey, that BlazeFace misses on every frame."""
    from app.synth.clips import SynthSettings, face_points, load_scene, plan_clip, render_frame

    folder = data_root() / TEST_SET
    rng = np.random.default_rng([0, 8, 1])
    scene = load_scene(folder / "2984236559_1.jpg", folder / "2984236559_1.pts", rng)
    plan = plan_clip(rng, scene, SynthSettings(static=True))
    frame, _ = render_frame(scene, plan, 0)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8), face_points(scene, plan, 0)


def test_auto_falls_back_to_mtcnn_where_blazeface_finds_no_face(grey_photo_frame):
    from models.boxes import box_iou

    frame, points = grey_photo_frame
    truth = landmark_box(points)
    with create_detector("blazeface") as blazeface, create_detector("auto") as auto, \
            create_detector("auto", fallback_every=0) as no_fallback:
        assert blazeface.detect(frame) == [] and no_fallback.detect(frame) == []
        found = auto.detect(frame)
        assert len(found) == 1 and found[0].score > 0.9
        assert box_iou(found[0].box, truth) > 0.5
        assert auto.fallback_searches == 1 and auto.fallback_finds == 1
        x1, y1, x2, y2 = found[0].box.astype(int)
        region = auto.detect_region(frame, (max(x1 - 60, 0), max(y1 - 60, 0), x2 + 60, y2 + 60))
        assert len(region) == 1 and box_iou(region[0].box, truth) > 0.5  # in frame coordinates


def test_the_fallback_searches_one_empty_frame_in_ten(grey_photo_frame):
    frame = grey_photo_frame[0]
    empty = np.full_like(frame, 96)
    with create_detector("auto") as auto:
        for _ in range(25):
            assert auto.detect(empty) == []
        assert auto.fallback_searches == 3  # empty frames 1, 11 and 21
        found = [len(auto.detect(frame)) for _ in range(7)]  # a face only MTCNN sees, from frame 26 of the run
        assert found == [0, 0, 0, 0, 0, 1, 1]  # frame 31 is due; a find ends the run, so the next is due too
        assert auto.fallback_searches == 5 and auto.fallback_finds == 2
    with pytest.raises(ValueError, match="fallback_every"):
        AutoDetector(fallback_every=-1)


def test_box_helpers():
    boxes = np.array([[0.0, 0, 10, 20], [1, 1, 11, 21], [30, 30, 40, 40], [2, 2, 8, 8]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # union: the small box overlaps little
    assert nms(boxes, scores, 0.5, method="min").tolist() == [3, 2]  # min: it lies inside the others
    np.testing.assert_allclose(square(boxes[:1]), [[-5, 0, 15, 20]])
    np.testing.assert_allclose(regress(boxes[:1], np.array([[0.1, -0.1, 0.0, 0.5]])), [[1, -2, 10, 30]])


def test_a_region_search_finds_the_face_in_frame_coordinates(mtcnn, street_frames):
    frame = street_frames[0]
    with create_detector("auto") as auto:
        for det in mtcnn.detect(frame)[:3]:
            centre, side = det.centre, 3 * (det.box[2] - det.box[0])
            x1, y1 = np.maximum(0, (centre - side / 2).astype(int))
            x2, y2 = (centre + side / 2).astype(int)
            for detector in (mtcnn, auto):  # auto: a region of a 1080p frame goes to MTCNN too
                found = detector.detect_region(frame, (x1, y1, x2, y2))
                nearest = min(np.linalg.norm(d.centre - centre) for d in found)
                assert nearest < 0.15 * (det.box[2] - det.box[0])


def test_street_contact_sheets_show_every_detection(mtcnn, street_frames, tmp_path):
    import argparse

    from models.tools.street_detections import CROP, crop_sheet, frame_sheet, parse_size, write_png

    results = [mtcnn.detect(f) for f in street_frames[:2]]
    crops = crop_sheet(street_frames[:2], results, columns=4)
    assert crops.shape == (-(-sum(map(len, results)) // 4) * CROP, 4 * CROP, 3)
    frames = frame_sheet(street_frames[:2], results, every=1, width=320)
    assert frames.shape == (180, 3 * 320, 3)
    write_png(tmp_path / "sheet.png", frames)
    assert cv2.imread(str(tmp_path / "sheet.png")).shape == frames.shape
    assert parse_size("640x480") == (640, 480)
    for bad in ("640", "axb", "1x480"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)

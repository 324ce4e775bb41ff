"""Face detectors: the real BlazeFace, MTCNN, RetinaFace, YuNet and the default ``auto`` on real HELEN-test images, plus
unit tests of the prior boxes, decoding, NMS and letterbox geometry."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from engines.base import ModelFileError
from models.datasets import TEST_SET, data_root, detector_model_dir, list_annotated
from models.detectors import DETECTOR_NAMES, MODEL_FILES, Letterbox, create_detector
from models.tools.measure_detectors import JSON_PATH, crop_unit_error, match_detection
from models.detectors.retinaface import decode_boxes, decode_landmarks, nms, prior_boxes
from models.landmarks68 import KEYPOINT_NAMES, NUM_KEYPOINTS, inter_ocular, keypoints_from_landmarks
from models.types import Detection

TEST_IMAGES = list_annotated(data_root() / TEST_SET)[:4]
# Slots each detector really gives (BlazeFace: eyes, nose, mouth centre).
EXPECTED_SLOTS = {
    "auto": [True, True, True, False, False, True],  # BlazeFace on these small images
    "blazeface": [True, True, True, False, False, True],
    "mtcnn": [True, True, True, True, True, False],
    "retinaface": [True, True, True, True, True, False],
    "yunet": [True, True, True, True, True, False],
}
SWAPPED = {0: 1, 1: 0, 3: 4, 4: 3}  # image-left <-> image-right slots


def model_path(name: str):
    return detector_model_dir() / MODEL_FILES[name] if name in MODEL_FILES else None


@pytest.fixture(scope="module", params=DETECTOR_NAMES)
def detector(request):
    with create_detector(request.param, model_path(request.param)) as det:
        yield det


@pytest.fixture(scope="module")
def helen_faces():
    return [(cv2.imread(str(item.image_path)), item.load_points()) for item in TEST_IMAGES]


def assert_matches_ground_truth(det: Detection, points68: np.ndarray, name: str) -> None:
    gt = keypoints_from_landmarks(points68)
    iod = inter_ocular(points68)
    assert det.keypoint_mask.tolist() == EXPECTED_SLOTS[name]
    assert np.isnan(det.keypoints[~det.keypoint_mask]).all()
    for slot in np.flatnonzero(det.keypoint_mask):
        error = np.linalg.norm(det.keypoints[slot] - gt[slot]) / iod
        assert error < 0.2, f"{name} {KEYPOINT_NAMES[slot]} is {error:.2f} inter-ocular distances off"
        if slot in SWAPPED:  # image-left slot nearer its own ground truth than the mirrored one
            assert error * iod < np.linalg.norm(det.keypoints[slot] - gt[SWAPPED[slot]])
    assert det.keypoints[0, 0] < det.keypoints[1, 0], "left_eye must be the image-left eye"
    if det.keypoint_mask[3]:
        assert det.keypoints[3, 0] < det.keypoints[4, 0], "mouth_left must be the image-left corner"


def test_finds_helen_faces_with_keypoints_in_image_left_order(detector, helen_faces):
    for image, points in helen_faces:
        detections = detector.detect(image)
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True)
        assert all(s >= detector.score_threshold for s in scores)
        match = match_detection(detections, points)
        assert match is not None, f"{detector.name} missed the face"
        assert_matches_ground_truth(match, points, detector.name)


def test_blank_image_has_no_faces(detector):
    for value in (0, 128, 255):
        assert detector.detect(np.full((480, 640, 3), value, np.uint8)) == []


def test_rejects_images_that_are_not_bgr(detector):
    with pytest.raises(ValueError, match="uint8 BGR"):
        detector.detect(np.zeros((100, 100, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8 BGR"):
        detector.detect(np.zeros((100, 100, 3), np.float32))
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), np.zeros((1, 1, 3), np.uint8)):
        with pytest.raises(ValueError, match="too small"):
            detector.detect(empty)
    assert detector.detect(np.full((8, 8, 3), 128, np.uint8)) == []


def test_grayscale_and_bgra_frames_are_converted(detector, helen_faces):
    image, points = helen_faces[0]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    for frame in (gray, gray[:, :, None], cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)):
        assert match_detection(detector.detect(frame), points) is not None


@pytest.mark.parametrize("name", ["retinaface", "yunet"])
def test_large_and_wide_frames_map_back_to_frame_coordinates(name, helen_faces):
    """A face in a 3x enlarged frame padded to 16:9 is found where it is (the detector shrinks
    or letterboxes the frame and must rescale its outputs)."""
    image, points = helen_faces[0]
    big = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    wide = np.zeros((big.shape[0], big.shape[0] * 16 // 9, 3), np.uint8)
    offset = wide.shape[1] - big.shape[1]
    wide[:, offset:] = big
    moved = (points + 0.5) * 3 - 0.5 + [offset, 0]
    with create_detector(name, model_path(name)) as det:
        match = match_detection(det.detect(wide), moved)
    assert match is not None
    assert_matches_ground_truth(match, moved, name)


def test_retinaface_file_with_a_fixed_input_size_gets_letterboxed(tmp_path, helen_faces):
    import onnx

    model = onnx.load(str(model_path("retinaface")))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, 480, 640)):
        dim.dim_value = value
    fixed = tmp_path / "retinaface_640x480.onnx"
    onnx.save(model, str(fixed))
    image, points = helen_faces[1]
    with create_detector("retinaface", fixed) as det:
        assert det.fixed_size == (640, 480)
        match = match_detection(det.detect(image), points)
    assert match is not None
    assert_matches_ground_truth(match, points, "retinaface")


@pytest.mark.peers("mediapipe")  # the full-range model is the mediapipe peer's (peers extra)
def test_blazeface_full_range_model_and_bad_range(helen_faces):
    image, points = helen_faces[0]
    with pytest.raises(ValueError, match="blazeface-mediapipe"):
        create_detector("blazeface", model_range="full")
    with create_detector("blazeface-mediapipe", model_range="full") as det:
        assert det.model_range == "full"
        assert match_detection(det.detect(image), points) is not None
    with pytest.raises(ValueError, match="model_range"):
        create_detector("blazeface", model_range="medium")


def test_closed_detector_refuses_to_run(helen_faces):
    det = create_detector("retinaface", model_path("retinaface"))
    det.close()
    det.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        det.detect(helen_faces[0][0])


# ---- bad model files -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["retinaface", "yunet"])
def test_missing_model_file_is_named(name, tmp_path):
    missing = tmp_path / "no_such_detector.onnx"
    with pytest.raises(ModelFileError, match="no_such_detector.onnx"):
        create_detector(name, missing)
    with pytest.raises(ModelFileError, match="needs a model file"):
        create_detector(name)


@pytest.mark.parametrize("name", ["retinaface", "yunet"])
def test_corrupt_model_file_is_named(name, tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"this is not an onnx model\n" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx"):
        create_detector(name, bad)


def test_wrong_network_is_refused_with_its_name():
    with pytest.raises(ModelFileError, match="yunet_n_640_640.onnx"):
        create_detector("retinaface", model_path("yunet"))
    with pytest.raises(ModelFileError, match="retinaface_mbnet0.25.onnx"):
        create_detector("yunet", model_path("retinaface"))


def test_unknown_detector_and_stray_model_path():
    with pytest.raises(ValueError, match="unknown detector"):
        create_detector("haar")
    for name in ("auto", "blazeface", "mtcnn"):
        with pytest.raises(ValueError, match="takes no model_path"):
            create_detector(name, "/some/model.onnx")


# ---- RetinaFace priors, decoding, NMS --------------------------------------------------


def test_prior_boxes_layout():
    priors = prior_boxes(640, 640)
    assert priors.shape == ((80 * 80 + 40 * 40 + 20 * 20) * 2, 4)
    np.testing.assert_array_equal(priors[0], [4, 4, 16, 16])
    np.testing.assert_array_equal(priors[1], [4, 4, 32, 32])
    np.testing.assert_array_equal(priors[2], [12, 4, 16, 16])  # next cell along x
    np.testing.assert_array_equal(priors[2 * 80], [4, 12, 16, 16])  # next row
    np.testing.assert_array_equal(priors[80 * 80 * 2], [8, 8, 64, 64])  # first stride-16 prior
    np.testing.assert_array_equal(priors[80 * 80 * 2 + 40 * 40 * 2 + 1], [16, 16, 512, 512])
    np.testing.assert_array_equal(priors[-1], [624, 624, 512, 512])
    # Non-multiples of the stride round the feature maps up (565 x 564: 71, 36 and 18 cells a side).
    assert len(prior_boxes(564, 565)) == 2 * (71 * 71 + 36 * 36 + 18 * 18) == 13322


def test_prior_count_matches_the_real_network():
    det = create_detector("retinaface", model_path("retinaface"))
    try:
        raw = det._runner.infer({det._input: np.zeros((1, 3, 565, 564), np.float32)})
        assert all(len(prior_boxes(564, 565)) == v.shape[1] for v in raw.values())
    finally:
        det.close()


def test_decode_known_numbers():
    priors = np.array([[100.0, 50.0, 20.0, 40.0]])
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4)), priors), [[90, 30, 110, 70]])
    loc = np.array([[1.0, -0.5, np.log(2) / 0.2, 0.0]])  # centre + (0.1 w, -0.05 h), width x2
    np.testing.assert_allclose(decode_boxes(loc, priors), [[82, 28, 122, 68]])  # centre (102, 48), size 40 x 40
    pre = np.zeros((1, 10))
    pre[0, :2] = [1.0, 2.0]  # first point: centre + (0.1 * 20, 0.2 * 40)
    points = decode_landmarks(pre, priors)
    assert points.shape == (1, 5, 2)
    np.testing.assert_allclose(points[0, 0], [102, 58])
    np.testing.assert_allclose(points[0, 1:], [[100, 50]] * 4)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], float)
    scores = np.array([0.6, 0.9, 0.7, 0.5])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).tolist() == []


# ---- letterbox -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame_size, box",
    [
        ((1920, 1080), Letterbox.fit((1920, 1080), (640, 640))),
        ((300, 200), Letterbox.fit((300, 200), (640, 640))),
        ((300, 200), Letterbox.fit((300, 200), (640, 640), upscale=False)),
        ((1920, 1080), Letterbox.within((1920, 1080), 640, multiple=32)),
        ((500, 333), Letterbox.within((500, 333), 640, multiple=32)),
    ],
)
def test_letterbox_maps_a_point_there_and_back(frame_size, box):
    w, h = frame_size
    assert box.resized[0] <= box.size[0] and box.resized[1] <= box.size[1]
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [w - 1, h - 1], size=(20, 2))
    np.testing.assert_allclose(box.to_frame(box.to_canvas(points)), points, atol=1e-9)

    # A bright blob at a sub-pixel spot lands on the canvas where to_canvas says it does.
    spot = np.array([w * 0.37 + 0.3, h * 0.61 - 0.2])
    ys, xs = np.mgrid[0:h, 0:w]
    sigma = 0.02 * max(w, h)
    blob = np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * sigma**2))
    image = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)
    canvas = box.apply(image).astype(np.float64)[..., 0]
    assert canvas.shape == (box.size[1], box.size[0])
    cy, cx = np.mgrid[0 : canvas.shape[0], 0 : canvas.shape[1]]
    centroid_pixel = np.array([(canvas * cx).sum(), (canvas * cy).sum()]) / canvas.sum()
    found = box.to_frame(centroid_pixel + 0.5)  # canvas pixel centre -> continuous -> frame
    np.testing.assert_allclose(found, spot, atol=0.1 / min(box.scale_x, 1) + 0.05)


def test_letterbox_within_shrinks_only_and_pads_to_the_stride():
    box = Letterbox.within((1920, 1080), 640, multiple=32)
    assert box.resized == (640, 360) and box.size == (640, 384)
    small = Letterbox.within((500, 333), 640, multiple=32)
    assert small.resized == (500, 333) and small.size == (512, 352) and small.scale_x == 1.0


def test_letterbox_pads_with_the_fill_colour():
    box = Letterbox.fit((100, 50), (64, 64))
    canvas = box.apply(np.full((50, 100, 3), 200, np.uint8), fill=(1, 2, 3))
    assert box.resized == (64, 32)
    assert (canvas[:32] == 200).all() and (canvas[32:] == [1, 2, 3]).all()


# ---- measurement helpers and the keypoint-error file --------------------------------


def _detection_at(points: np.ndarray) -> Detection:
    return Detection(
        box=np.concatenate([points.min(0), points.max(0)]),
        score=1.0,
        keypoints=np.asarray(points, float),
        keypoint_mask=np.ones(NUM_KEYPOINTS, bool),
    )


def test_crop_unit_error_ignores_face_size_and_rotation():
    points = TEST_IMAGES[0].load_points()
    gt = keypoints_from_landmarks(points)
    shift = np.array([3.0, -1.0])
    assert np.allclose(crop_unit_error(_detection_at(gt), points), 0)
    error = crop_unit_error(_detection_at(gt + shift), points)
    np.testing.assert_allclose(error, np.tile(error[0], (NUM_KEYPOINTS, 1)))
    # Twice the face, twice the pixel shift: the same error in crop units.
    np.testing.assert_allclose(crop_unit_error(_detection_at(2 * gt + 2 * shift), 2 * points), error, atol=1e-12)
    # Rotating the face and its detection together leaves it unchanged too.
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(
        crop_unit_error(_detection_at((gt + shift) @ rot.T), points @ rot.T), error, atol=1e-12
    )


def test_match_detection_needs_the_centre_inside_the_face():
    points = TEST_IMAGES[0].load_points()
    gt = keypoints_from_landmarks(points)
    face, elsewhere = _detection_at(gt), _detection_at(gt + [1000, 0])
    assert match_detection([elsewhere, face], points) is face
    assert match_detection([elsewhere], points) is None
    assert match_detection([], points) is None


def test_keypoint_error_file_is_complete():
    payload = json.loads(JSON_PATH.read_text())
    assert "training images only" in payload["description"]
    blazeface_slots = ("left_eye", "right_eye", "nose", "mouth_centre")
    for name, slots in (("retinaface", KEYPOINT_NAMES[:5]), ("blazeface", blazeface_slots)):
        entry = payload["detectors"][name]
        assert list(entry["slots"]) == list(slots)
        assert entry["used"] > 1000
        for stats in entry["slots"].values():
            assert np.linalg.norm(stats["mean"]) < 0.05  # offsets are a few % of the crop at most
            assert 0.005 < min(stats["std"]) and max(stats["std"]) < 0.05
            cov = np.array(stats["cov"])
            np.testing.assert_allclose(np.sqrt(np.diag(cov)), stats["std"], rtol=0.01)
        joint = np.array(entry["joint_cov"])
        assert joint.shape == (2 * len(slots),) * 2
        assert np.linalg.eigvalsh(joint).min() > 0


@pytest.mark.peers("mediapipe")  # the reference is mediapipe's solution (peers extra)
def test_onnx_blazeface_agrees_with_mediapipe_solution(helen_faces):
    """The shipped ONNX BlazeFace finds mediapipe's faces with the same boxes and keypoints
    (bound: IoU >= 0.99, keypoints within 1 px; measured over all of HELEN test in docs/RESULTS.md)."""
    from models.tools.blazeface_agreement import Agreement

    agreement = Agreement()
    with create_detector("blazeface") as ours, create_detector("blazeface-mediapipe") as theirs:
        for image, _points in helen_faces:
            agreement.add(ours.detect(image), theirs.detect(image))
    assert agreement.ours == agreement.theirs > 0 and agreement.unpaired == 0
    assert min(agreement.ious) >= 0.99 and max(agreement.keypoint_px) <= 1.0

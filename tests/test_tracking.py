"""Tracker and pipeline logic. Unit tests use small scripted stand-ins for the detector and
model; tests/test_pipeline.py runs the same pipeline with the real detector and model."""
import numpy as np

from app.pipeline import Pipeline, PipelineOptions
from app.tracking import FaceTracker, TrackerOptions
from models.boxes import box_iou
from app.types import Frame
from models import align
from models.landmark_model import LandmarkModel
from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks
from models.types import Detection, Landmarks



def _face_points(cx, cy, size=100.0):
    """A plausible 68-point face: the template's keypoints give eyes/nose/mouth, the rest on a circle."""
    rng = np.random.default_rng(1)
    pts = np.stack([np.array([cx, cy]) + size * 0.45 * np.array([np.cos(a), np.sin(a)])
                    for a in np.linspace(0, 2 * np.pi, 68, endpoint=False)])
    kp = (align.TEMPLATE - 0.5) * size * 1.4 + np.array([cx, cy])
    pts[36:42] = kp[0] + rng.normal(0, 1, (6, 2))
    pts[36:42] += kp[0] - pts[36:42].mean(0)
    pts[42:48] = kp[1] + rng.normal(0, 1, (6, 2))
    pts[42:48] += kp[1] - pts[42:48].mean(0)
    pts[30], pts[48], pts[54] = kp[2], kp[3], kp[4]
    pts[62] = pts[66] = kp[5]
    return pts


def _detection(points):
    kp = keypoints_from_landmarks(points)
    box = np.concatenate([points.min(0), points.max(0)])
    return Detection(box=box, score=0.9, keypoints=kp, keypoint_mask=FIVE_POINT_MASK.copy())


class ScriptedDetector:
    """Returns the faces it is told are on the frame; counts its calls and the regions searched."""

    def __init__(self, faces):
        self.faces, self.calls, self.regions = faces, 0, []

    def detect(self, image):
        self.calls += 1
        return [_detection(p) for p in self.faces]

    def detect_region(self, image, region):
        self.calls += 1
        self.regions.append(tuple(region))
        x1, y1, x2, y2 = region
        found = [_detection(p) for p in self.faces]
        return [d for d in found if x1 <= d.centre[0] < x2 and y1 <= d.centre[1] < y2]

    def close(self):
        pass


class TemplateModel(LandmarkModel):
    """Predicts the face that lies under the crop: finds which scripted face the crop centre maps to."""

    name, input_size, backend = "scripted", 64, "test"

    def __init__(self, faces, confidence=0.9):
        self.faces, self.confidence = faces, confidence

    def infer(self, crops):
        return [c.inverse for c in crops]

    def decode(self, raw, crops):
        out = []
        for inv in raw:
            centre = align.transform_points(np.array([[31.5, 31.5]]), inv)[0]
            face = min(self.faces, key=lambda p: np.linalg.norm(p.mean(0) - centre))
            out.append(Landmarks(face.copy(), np.full(68, self.confidence)))
        return out


def _frame(i, w=640, h=480):
    return Frame(image=np.zeros((h, w, 3), np.uint8), index=i, timestamp=i / 30)


def test_detector_runs_on_the_first_frame_then_every_interval():
    faces = [_face_points(200, 200)]
    det = ScriptedDetector(faces)
    pipe = Pipeline(det, TemplateModel(faces), PipelineOptions(tracker=TrackerOptions(redetect_interval=10)))
    ran = [pipe.process(_frame(i)).detector_ran for i in range(25)]
    assert [i for i, r in enumerate(ran) if r] == [0, 10, 20]
    assert det.calls == 3


def test_track_ids_stay_stable_and_new_faces_get_new_ids():
    a, b = _face_points(150, 200), _face_points(450, 220)
    det = ScriptedDetector([a])
    model = TemplateModel([a, b])
    pipe = Pipeline(det, model, PipelineOptions(tracker=TrackerOptions(redetect_interval=5)))
    ids = [tuple(f.track_id for f in pipe.process(_frame(i)).faces) for i in range(5)]
    assert ids == [(1,)] * 5
    det.faces = [a, b]  # a second face walks in; found at the next scheduled detection
    later = [tuple(f.track_id for f in pipe.process(_frame(i)).faces) for i in range(5, 12)]
    assert later[0] == (1, 2) and all(ids == (1, 2) for ids in later)


def test_a_lost_track_triggers_detection_on_the_same_frame():
    face = _face_points(300, 240)
    det = ScriptedDetector([face])
    model = TemplateModel([face])
    pipe = Pipeline(det, model, PipelineOptions(tracker=TrackerOptions(redetect_interval=0)))
    pipe.process(_frame(0))
    model.confidence = 0.1  # the model loses the face...
    result = pipe.process(_frame(1))
    assert result.detector_ran and det.calls == 2
    assert result.faces == ()  # ...and the re-detected crop is judged lost too, so no face is reported
    model.confidence = 0.9
    result = pipe.process(_frame(2))
    assert [f.track_id for f in result.faces] == [1]  # found again where it was lost: the same face


def test_a_lost_face_is_searched_for_around_where_it_was_and_keeps_its_id():
    a, b = _face_points(150, 200), _face_points(450, 220)
    det = ScriptedDetector([a, b])
    model = TemplateModel([a, b])
    pipe = Pipeline(det, model, PipelineOptions(tracker=TrackerOptions(redetect_interval=10)))
    assert [f.track_id for f in pipe.process(_frame(0)).faces] == [1, 2]

    class LosesB(TemplateModel):  # the fit from b's own landmarks fails once; from a detection it works
        failed = False

        def decode(self, raw, crops):
            out = super().decode(raw, crops)
            if not self.failed:
                self.failed = True
                out = [lm if lm.points[:, 0].mean() < 300 else Landmarks(lm.points, np.zeros(68)) for lm in out]
            return out

    pipe.set_model(LosesB([a, b]))
    result = pipe.process(_frame(1))
    assert [f.track_id for f in result.faces] == [1, 2] and result.detector_ran
    (region,) = det.regions  # only around b, not the whole frame
    x1, y1, x2, y2 = region
    assert x1 <= 450 <= x2 and y1 <= 220 <= y2 and x1 > 150
    ran = [pipe.process(_frame(i)).detector_ran for i in range(2, 12)]
    assert ran.index(True) == 8  # the periodic full detection keeps its schedule (frame 10)


def test_lost_ids_are_reused_only_nearby_and_soon():
    tracker = FaceTracker(TrackerOptions(reuse_frames=3))
    here, there = _face_points(150, 200), _face_points(450, 220)
    shape = (480, 640, 3)
    tracker.update(tracker.plan([_detection(here)]), [Landmarks(here, np.ones(68))], shape)
    tracker.update(tracker.plan(None), [Landmarks(here, np.zeros(68))], shape)  # lost
    assert tracker.tracks == [] and len(tracker.just_lost()) == 1
    tracker.update(tracker.plan([_detection(there)]), [Landmarks(there, np.ones(68))], shape)
    assert [t.track_id for t in tracker.tracks] == [2]  # elsewhere: a newcomer
    for _ in range(3):
        tracker.update(tracker.plan(None), [Landmarks(there, np.ones(68))], shape)
    tracker.update(tracker.plan([_detection(there), _detection(here)]), [Landmarks(there, np.ones(68)),
                   Landmarks(here, np.ones(68))], shape)
    assert [t.track_id for t in tracker.tracks] == [2, 3]  # too late for id 1


def test_landmarks_leaving_the_frame_lose_the_track():
    tracker = FaceTracker(TrackerOptions(max_outside_fraction=0.4))
    inside = Landmarks(_face_points(100, 100, 80), np.ones(68))
    outside = Landmarks(_face_points(-30, 100, 80), np.ones(68))
    assert not tracker.is_lost(inside, (480, 640, 3))
    assert tracker.is_lost(outside, (480, 640, 3))
    assert tracker.is_lost(Landmarks(np.full((68, 2), np.nan), np.ones(68)), (480, 640, 3))


def test_collapsed_landmarks_lose_the_track():
    tracker = FaceTracker(TrackerOptions(min_face_size=8.0))
    collapsed = Landmarks(np.full((68, 2), 200.0) + np.random.default_rng(0).normal(0, 0.5, (68, 2)), np.ones(68))
    assert tracker.is_lost(collapsed, (480, 640, 3))


def test_the_model_floor_raises_the_confidence_threshold():
    faces = [_face_points(320, 240, 120)]
    model = TemplateModel(faces, confidence=0.5)
    pipe = Pipeline(ScriptedDetector(faces), model, PipelineOptions(tracker=TrackerOptions(min_confidence=0.25)))
    assert len(pipe.process(_frame(0)).faces) == 1
    stricter = TemplateModel(faces, confidence=0.5)
    stricter.min_confidence = 0.6  # this model's fits below 0.6 are not faces
    pipe.set_model(stricter)
    assert pipe.process(_frame(1)).faces == ()
    pipe.set_model(model)
    assert len(pipe.process(_frame(2)).faces) == 1


class CollapsingModel(TemplateModel):
    """Like TemplateModel, but once ``collapse`` is set every point lands on the same pixel."""

    collapse = False

    def decode(self, raw, crops):
        out = super().decode(raw, crops)
        if self.collapse:
            out = [Landmarks(np.full((68, 2), 320.0), lm.confidence) for lm in out]
        return out


def test_a_collapsed_fit_is_dropped_and_the_face_found_again():
    faces = [_face_points(320, 240, 120)]
    model = CollapsingModel(faces)
    pipe = Pipeline(ScriptedDetector(faces), model)
    assert len(pipe.process(_frame(0)).faces) == 1
    model.collapse = True
    assert pipe.process(_frame(1)).faces == ()  # lost, looked for again, lost again: no crash
    model.collapse = False
    result = pipe.process(_frame(2))
    assert result.detector_ran and len(result.faces) == 1
    assert np.allclose(result.faces[0].raw_landmarks.points, faces[0])


def test_a_degenerate_detection_gives_no_face_instead_of_failing():
    # Coinciding keypoints cannot be aligned (no similarity exists): that face is skipped.
    faces = [_face_points(320, 240, 120)]
    degenerate = Detection(box=np.array([300.0, 220, 340, 260]), score=0.9, keypoints=np.full((6, 2), 320.0),
                           keypoint_mask=FIVE_POINT_MASK.copy())

    class Detector(ScriptedDetector):
        def detect(self, image):
            return [degenerate] + super().detect(image)

    pipe = Pipeline(Detector(faces), TemplateModel(faces))
    result = pipe.process(_frame(0))
    assert len(result.faces) == 1 and np.allclose(result.faces[0].raw_landmarks.points, faces[0])


def test_max_faces_limits_new_tracks():
    faces = [_face_points(100 + 150 * i, 200, 90) for i in range(4)]
    pipe = Pipeline(ScriptedDetector(faces), TemplateModel(faces),
                    PipelineOptions(tracker=TrackerOptions(max_faces=2)))
    assert len(pipe.process(_frame(0)).faces) == 2


def test_smoothing_off_shows_the_raw_landmarks_and_on_filters_them():
    face = _face_points(300, 240)
    pipe = Pipeline(ScriptedDetector([face]), TemplateModel([face]), PipelineOptions(smoothing=False))
    result = pipe.process(_frame(0))
    assert np.array_equal(result.faces[0].landmarks.points, result.faces[0].raw_landmarks.points)
    jittery = Pipeline(ScriptedDetector([face]), TemplateModel([face]), PipelineOptions(smoothing=True))
    rng = np.random.default_rng(0)
    raw_dev, shown_dev = [], []
    for i in range(60):
        jittery.model.faces = [face + rng.normal(0, 1.5, face.shape)]
        f = jittery.process(_frame(i)).faces[0]
        raw_dev.append(np.abs(f.raw_landmarks.points - face).mean())
        shown_dev.append(np.abs(f.landmarks.points - face).mean())
    assert np.mean(shown_dev[10:]) < 0.7 * np.mean(raw_dev[10:])


def test_box_iou():
    assert box_iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == 1.0
    assert box_iou(np.array([0, 0, 10, 10]), np.array([20, 20, 30, 30])) == 0.0
    assert abs(box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) - 1 / 3) < 1e-9


def test_a_track_matched_by_a_later_detection_in_the_list_keeps_its_id():
    a, b = _face_points(150, 200), _face_points(450, 220)
    det = ScriptedDetector([a])
    pipe = Pipeline(det, TemplateModel([a, b]), PipelineOptions(tracker=TrackerOptions(redetect_interval=2)))
    pipe.process(_frame(0))
    det.faces = [b, a]  # the existing face is the second detection
    ids = [tuple(f.track_id for f in pipe.process(_frame(i)).faces) for i in range(1, 4)]
    assert ids[-1] == (1, 2)


def test_a_drifted_track_is_realigned_from_the_matching_detection():
    face = _face_points(300, 240)
    tracker = FaceTracker(TrackerOptions())
    tracker.update(tracker.plan([_detection(face)]), [Landmarks(face, np.ones(68))], (480, 640, 3))
    detection = _detection(face + np.array([2.0, -1.0]))  # the detector's usual small disagreement
    close = tracker.plan([detection])[0]
    assert close.detection is detection and not np.allclose(close.keypoints, detection.keypoints)
    tracker.tracks[0].landmarks = Landmarks(face + np.array([25.0, 10.0]), np.ones(68))  # slid off
    drifted = tracker.plan([detection])[0]
    assert drifted.track is tracker.tracks[0] and np.array_equal(drifted.keypoints, detection.keypoints)

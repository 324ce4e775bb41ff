"""Drawing of tracking results onto frames: pure functions over data, no state, no Qt.

The layer helpers (``draw_landmarks``, ``draw_box``, ...) draw **in place** on a BGR
uint8 image and return it. ``draw_frame_result`` draws on a **copy** unless
``in_place=True`` (the recorder and the GUI may want the clean frame too).

Sizes follow the data: point radius and line width scale with each face's size,
text with the frame's width, so a 40 px face in a 1080p street scene and a close-up
in a 320 px window both stay legible. Points and lines use anti-aliasing and
sub-pixel coordinates (``SHIFT`` fractional bits); coordinates are 0-based pixel
centres as everywhere in the project. Non-finite points are skipped, not drawn.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.stats import StatsSummary
from app.types import STAGES, FaceGeometry, FrameResult, HeadPose
from models.boxes import face_size
from models.landmarks68 import CONTOURS
from models.types import Detection

SHIFT = 4  # fractional bits of drawing coordinates
_ONE = 1 << SHIFT
_LIMIT = 1e5  # pixels; keeps shifted coordinates inside int32 for wild inputs

# BGR colours.
POINT_COLOUR = (80, 255, 80)
CONTOUR_COLOUR = (60, 200, 60)
BOX_COLOUR = (255, 170, 40)
KEYPOINT_COLOUR = (0, 220, 255)
GROUND_TRUTH_COLOUR = (255, 60, 255)
TEXT_COLOUR = (255, 255, 255)
PANEL_BACKGROUND = (0, 0, 0)
PANEL_OPACITY = 0.6

# Confidence ramp stops (confidence, BGR): red -> amber -> green.
CONFIDENCE_RAMP = (
    (0.0, (40, 40, 255)),
    (0.5, (0, 200, 255)),
    (1.0, (80, 255, 80)),
)

FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_TEXT_SCALE = 0.35  # the smallest Hershey text that stays readable (about 8 px capitals)


@dataclass(frozen=True)
class OverlayOptions:
    """Which layers ``draw_frame_result`` draws."""

    points: bool = True
    contours: bool = True
    box: bool = False  # the detector's box where it ran this frame, else the landmarks' box
    keypoints: bool = False  # the detector's keypoints, on frames where it ran
    face_ids: bool = True
    confidence_colours: bool = False  # colour each point by its confidence
    stats_panel: bool = True
    ground_truth: bool = True  # when the frame (or the caller) has it
    pose_axes: bool = True  # head-pose axes at the nose tip (x red, y green, nose direction blue)
    geometry_readout: bool = False  # yaw/pitch/roll, eye and mouth openness, blinks under each face


def _check_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"overlay needs an (H, W, 3) uint8 BGR image, got shape {shape} dtype {dtype}")


def _fixed(points: np.ndarray) -> np.ndarray:
    """Sub-pixel fixed-point coordinates for OpenCV (``shift=SHIFT``)."""
    p = np.clip(np.asarray(points, dtype=np.float64), -_LIMIT, _LIMIT)
    return np.round(p * _ONE).astype(np.int32)


def _drawable(points: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(N,) bool: finite points no further outside the frame than its own size (a face partly out
    of the frame is drawn, clipped; an absurd point, e.g. a diverged fit at 1e12, is skipped
    like a missing one, with the segments that reach it)."""
    height, width = image.shape[:2]
    margin = max(height, width)
    with np.errstate(invalid="ignore"):
        inside = (points[:, 0] >= -margin) & (points[:, 0] <= width + margin) & \
                 (points[:, 1] >= -margin) & (points[:, 1] <= height + margin)
    return np.all(np.isfinite(points), axis=1) & inside


def point_radius(face_size: float) -> float:
    """Dot radius in pixels for a face whose landmark box diagonal is ``face_size``."""
    return float(np.clip(face_size / 140.0, 1.0, 6.0)) if np.isfinite(face_size) else 1.0


def line_thickness(face_size: float) -> int:
    return int(np.clip(round(face_size / 350.0), 1, 4)) if np.isfinite(face_size) else 1


def text_scale(image_width: int) -> tuple[float, int]:
    """Font scale and stroke thickness for text on a frame ``image_width`` pixels wide."""
    scale = max(MIN_TEXT_SCALE, 0.55 * image_width / 1000.0)
    return scale, 1 if scale < 0.8 else 2


def confidence_colours(confidence: np.ndarray) -> np.ndarray:
    """BGR colours (N, 3) uint8 for per-point confidences in [0, 1] along ``CONFIDENCE_RAMP``."""
    c = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)
    stops = np.array([s for s, _ in CONFIDENCE_RAMP])
    colours = np.array([col for _, col in CONFIDENCE_RAMP], dtype=np.float64)
    return np.stack([np.interp(c, stops, colours[:, k]) for k in range(3)], axis=-1).round().astype(np.uint8)


def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    colour: tuple[int, int, int] = POINT_COLOUR,
    radius: float | None = None,
    confidence: np.ndarray | None = None,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Filled dots; ``confidence`` (N,) colours them along the ramp instead of ``colour``;
    points where ``visible`` (N,) bool is False (the model says they are hidden) are hollow rings."""
    points = np.asarray(points, dtype=np.float64)
    finite = _drawable(points, image)
    if radius is None:
        radius = point_radius(face_size(points[finite]))
    colours = confidence_colours(confidence) if confidence is not None else None
    r = max(1, int(round(radius * _ONE)))
    for i, (x, y) in enumerate(_fixed(np.where(finite[:, None], points, 0))):
        if finite[i]:
            c = colour if colours is None else tuple(int(v) for v in colours[i])
            hidden = visible is not None and not visible[i]
            cv2.circle(image, (int(x), int(y)), r + (_ONE if hidden else 0), c, 1 if hidden else -1, cv2.LINE_AA,
                       SHIFT)
    return image


def draw_contours(
    image: np.ndarray,
    points: np.ndarray,
    colour: tuple[int, int, int] = CONTOUR_COLOUR,
    thickness: int | None = None,
) -> np.ndarray:
    """The 68-point face contours (``landmarks68.CONTOURS``); segments with a point that cannot be
    drawn (non-finite, or absurdly far outside the frame) are cut."""
    points = np.asarray(points, dtype=np.float64)
    finite = _drawable(points, image)
    if thickness is None:
        thickness = line_thickness(face_size(points[finite]))
    fixed = _fixed(np.where(finite[:, None], points, 0))
    for indices, closed in CONTOURS:
        idx = list(indices)
        if finite[idx].all():
            cv2.polylines(image, [fixed[idx]], closed, colour, thickness, cv2.LINE_AA, SHIFT)
        else:
            pairs = list(zip(idx, idx[1:] + (idx[:1] if closed else [])))
            for a, b in pairs:
                if finite[a] and finite[b]:
                    a_xy, b_xy = tuple(map(int, fixed[a])), tuple(map(int, fixed[b]))
                    cv2.line(image, a_xy, b_xy, colour, thickness, cv2.LINE_AA, SHIFT)
    return image


def draw_box(
    image: np.ndarray,
    box: np.ndarray,
    colour: tuple[int, int, int] = BOX_COLOUR,
    thickness: int | None = None,
) -> np.ndarray:
    """A rectangle from (x1, y1, x2, y2); nothing when the box is not finite."""
    box = np.asarray(box, dtype=np.float64)
    if not np.all(np.isfinite(box)):
        return image
    if thickness is None:
        thickness = line_thickness(float(np.hypot(box[2] - box[0], box[3] - box[1])))
    p = _fixed(box.reshape(2, 2))
    cv2.rectangle(image, tuple(map(int, p[0])), tuple(map(int, p[1])), colour, thickness, cv2.LINE_AA, SHIFT)
    return image


def draw_keypoints(
    image: np.ndarray,
    detection: Detection,
    colour: tuple[int, int, int] = KEYPOINT_COLOUR,
    radius: float | None = None,
) -> np.ndarray:
    """The detector's keypoints as rings, only the slots it produced (``keypoint_mask``)."""
    if radius is None:
        box = detection.box
        radius = 1.5 * point_radius(float(np.hypot(box[2] - box[0], box[3] - box[1])))
    present = np.asarray(detection.keypoint_mask, dtype=bool) & np.all(np.isfinite(detection.keypoints), axis=1)
    r = max(1, int(round(radius * _ONE)))
    thickness = max(1, int(round(radius / 3)))
    for x, y in _fixed(detection.keypoints[present]):
        cv2.circle(image, (int(x), int(y)), r, colour, thickness, cv2.LINE_AA, SHIFT)
    return image


def _label(
    image: np.ndarray, text: str, anchor: tuple[float, float], colour: tuple[int, int, int], scale: float, thick: int
) -> None:
    """Text on a filled background whose bottom-left is at ``anchor``, kept inside the image."""
    h, w = image.shape[:2]
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(2, th // 4)
    x = int(np.clip(anchor[0], 0, max(0, w - tw - 2 * pad)))
    y = int(np.clip(anchor[1], th + base + 2 * pad, h))
    cv2.rectangle(image, (x, y - th - base - 2 * pad), (x + tw + 2 * pad, y), colour, -1)
    text_colour = (0, 0, 0) if sum(colour) > 380 else TEXT_COLOUR
    cv2.putText(image, text, (x + pad, y - base - pad), FONT, scale, text_colour, thick, cv2.LINE_AA)


def draw_face_id(
    image: np.ndarray,
    track_id: int,
    box: np.ndarray,
    colour: tuple[int, int, int] = BOX_COLOUR,
    confidence: float | None = None,
) -> np.ndarray:
    """A ``#id`` label (and mean confidence) just above the face's box.

    The text is sized by the frame like the stats panel but no larger than about a
    fifth of the face, so labels on small faces in a wide frame do not hide them.
    """
    box = np.asarray(box, dtype=np.float64)
    if not np.all(np.isfinite(box)):
        return image
    frame_scale, _ = text_scale(image.shape[1])
    scale = max(MIN_TEXT_SCALE, min(frame_scale, float(np.hypot(box[2] - box[0], box[3] - box[1])) / 350.0))
    text = f"#{track_id}" if confidence is None else f"#{track_id} {confidence:.2f}"
    _label(image, text, (box[0], box[1] - 2), colour, scale, 1 if scale < 0.8 else 2)
    return image


def draw_ground_truth(
    image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int] = GROUND_TRUTH_COLOUR
) -> np.ndarray:
    """Annotated points as small crosses, distinct from the predicted dots."""
    points = np.asarray(points, dtype=np.float64)
    points = points[_drawable(points, image)]
    arm = point_radius(face_size(points)) * 1.4
    thickness = line_thickness(face_size(points))
    offsets = _fixed(np.array([[-arm, -arm], [arm, arm], [-arm, arm], [arm, -arm]]))
    for p in _fixed(points):
        for a, b in ((0, 1), (2, 3)):
            a_xy, b_xy = tuple(map(int, p + offsets[a])), tuple(map(int, p + offsets[b]))
            cv2.line(image, a_xy, b_xy, colour, thickness, cv2.LINE_AA, SHIFT)
    return image


POSE_AXIS_MM = 60.0  # drawn length of each head axis
POSE_AXIS_COLOURS = ((60, 60, 255), (60, 220, 60), (255, 120, 40))  # BGR: x (image right), y (down), nose


def draw_pose_axes(image: np.ndarray, pose: HeadPose, thickness: int | None = None) -> np.ndarray:
    """The head's x, y and nose (-z) axes from the nose tip, projected with the pose's camera."""
    axes = np.array([[0, 0, 0], [POSE_AXIS_MM, 0, 0], [0, POSE_AXIS_MM, 0], [0, 0, -POSE_AXIS_MM]], np.float64)
    camera_points = axes @ np.asarray(pose.rotation).T + np.asarray(pose.translation).reshape(1, 3)
    if np.any(camera_points[:, 2] <= 1e-6):
        return image  # an axis end behind the camera
    camera = np.asarray(pose.camera_matrix)
    projected = camera_points[:, :2] / camera_points[:, 2:] * camera[[0, 1], [0, 1]] + camera[:2, 2]
    if not np.all(np.isfinite(projected)):
        return image
    if thickness is None:
        thickness = max(1, line_thickness(2.5 * float(np.linalg.norm(projected[1] - projected[0]))))
    fixed = _fixed(projected)
    origin = tuple(map(int, fixed[0]))
    for end, colour in zip(fixed[1:], POSE_AXIS_COLOURS):
        cv2.line(image, origin, tuple(map(int, end)), colour, thickness, cv2.LINE_AA, SHIFT)
    return image


def geometry_text(geometry: FaceGeometry) -> str:
    """The one-line readout of a face's geometry."""
    pose = geometry.pose
    angles = f"yaw {pose.yaw:+.0f} pitch {pose.pitch:+.0f} roll {pose.roll:+.0f}" if pose else "no pose"
    def number(v: float) -> str:
        return "--" if not np.isfinite(v) else f"{v:.2f}"
    eyes = f"eyes {number(geometry.ear_left)}/{number(geometry.ear_right)}"
    closed = " closed" if geometry.eyes_closed else ""
    return f"{angles} {eyes}{closed} mouth {number(geometry.mouth_opening)} blinks {geometry.blink_count}"


def draw_geometry_readout(image: np.ndarray, geometry: FaceGeometry, box: np.ndarray) -> np.ndarray:
    """``geometry_text`` on a label just under the face's box."""
    box = np.asarray(box, dtype=np.float64)
    if not np.all(np.isfinite(box)):
        return image
    scale = max(MIN_TEXT_SCALE, min(text_scale(image.shape[1])[0], float(box[2] - box[0]) / 600.0))
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, 1)
    _label(image, geometry_text(geometry), (box[0], box[3] + th + base + 8), BOX_COLOUR, scale, 1)
    return image


@dataclass(frozen=True)
class PanelLayout:
    """Where the stats panel goes: its rectangle, the text lines and their font."""

    rect: tuple[int, int, int, int]  # x, y, width, height
    lines: tuple[tuple[str, str], ...]  # (label, value)
    scale: float
    thickness: int
    line_height: int
    text_height: int
    pad: int


def _ms(value: float | None) -> str:
    return "--" if value is None else f"{value:.1f} ms"


def stats_panel_layout(image_shape: tuple[int, ...], summary: StatsSummary) -> PanelLayout:
    """Lay out the stats panel for a frame of ``image_shape``: top-left, sized by the frame width."""
    w = image_shape[1]
    scale, thick = text_scale(w)
    lines = [("FPS", "--" if summary.fps is None else f"{summary.fps:.1f}")]
    lines += [(name, _ms(summary.median_ms[name])) for name in STAGES]
    lines.append(("total", _ms(summary.total_median_ms)))
    sizes = [(cv2.getTextSize(a, FONT, scale, thick)[0], cv2.getTextSize(b, FONT, scale, thick)[0]) for a, b in lines]
    text_h = max(max(sa[1], sb[1]) for sa, sb in sizes)
    base = cv2.getTextSize("g", FONT, scale, thick)[1]
    gap = cv2.getTextSize("  ", FONT, scale, thick)[0][0]
    pad = max(3, text_h // 2)
    line_height = text_h + base + max(2, text_h // 3)
    width = max(sa[0] for sa, _ in sizes) + gap + max(sb[0] for _, sb in sizes) + 2 * pad
    height = line_height * len(lines) + 2 * pad
    margin = pad
    return PanelLayout((margin, margin, width, height), tuple(lines), scale, thick, line_height, text_h, pad)


def draw_stats_panel(image: np.ndarray, summary: StatsSummary) -> np.ndarray:
    """FPS and the per-stage median latencies on a translucent panel at the top-left, in place."""
    layout = stats_panel_layout(image.shape, summary)
    x, y, pw, ph = layout.rect
    roi = image[y : y + ph, x : x + pw]
    if roi.size == 0:  # a frame a few pixels wide or high has no room for the panel
        return image
    roi[:] = cv2.addWeighted(roi, 1.0 - PANEL_OPACITY, np.full_like(roi, PANEL_BACKGROUND), PANEL_OPACITY, 0)
    right = x + pw - layout.pad
    for i, (label, value) in enumerate(layout.lines):
        top = y + layout.pad + i * layout.line_height
        baseline = top + layout.text_height + (layout.line_height - layout.text_height) // 3
        vw = cv2.getTextSize(value, FONT, layout.scale, layout.thickness)[0][0]
        for text, left in ((label, x + layout.pad), (value, right - vw)):
            cv2.putText(image, text, (left, baseline), FONT, layout.scale, TEXT_COLOUR, layout.thickness, cv2.LINE_AA)
    return image


def draw_frame_result(
    image: np.ndarray,
    result: FrameResult,
    options: OverlayOptions | None = None,
    stats: StatsSummary | None = None,
    ground_truth: np.ndarray | None = None,
    *,
    in_place: bool = False,
) -> np.ndarray:
    """Draw every enabled layer for ``result`` onto ``image`` (a copy unless ``in_place``).

    ``ground_truth`` (68, 2) defaults to ``result.frame.ground_truth``. Order, bottom
    to top: ground truth, contours, points, detector keypoints, box, face ids, pose axes and
    geometry readout (faces with ``geometry``), panel.
    """
    _check_image(image)
    options = options or OverlayOptions()
    canvas = image if in_place else image.copy()
    if ground_truth is None:
        ground_truth = result.frame.ground_truth
    if options.ground_truth and ground_truth is not None:
        draw_ground_truth(canvas, ground_truth)
    for face in result.faces:
        points = face.landmarks.points
        if options.contours:
            draw_contours(canvas, points)
        if options.points:
            conf = face.landmarks.confidence if options.confidence_colours else None
            draw_landmarks(canvas, points, confidence=conf, visible=face.landmarks.visible)
        if options.keypoints and face.detection is not None:
            draw_keypoints(canvas, face.detection)
        if options.box:
            draw_box(canvas, face.detection.box if face.detection is not None else face.box)
        if options.face_ids:
            conf = face.landmarks.mean_confidence if options.confidence_colours else None
            draw_face_id(canvas, face.track_id, face.box, confidence=conf)
        if face.geometry is not None:
            if options.pose_axes and face.geometry.pose is not None:
                draw_pose_axes(canvas, face.geometry.pose)
            if options.geometry_readout:
                draw_geometry_readout(canvas, face.geometry, face.box)
    if options.stats_panel and stats is not None:
        draw_stats_panel(canvas, stats)
    return canvas

"""Synthetic 300-VW-style clips made from annotated stills, with exact ground truth on every frame.

``python -m app synth-clips`` turns 68-point annotated stills (default: the HELEN
test set) into clips in the 300-VW layout: ``ID/vid.avi`` + ``ID/annot/000001.pts`` ...
(one ``.pts`` per frame, numbered from 1 like 300-VW) + ``ID/synth.json`` (how the
clip was made, and per frame the share of occluded points, the blur and the gain).

Moving clips (``synth_NNN``): the still is pasted, with feathered edges, on a
procedural, face-free background and filmed by a smooth random camera: translation, zoom and
in-plane rotation follow sums of slow random sinusoids (0.08-0.6 Hz); the
background follows with parallax. On top: a brightness and colour ramp, motion blur
along the face's motion (a line kernel centred on the exposure midpoint, so the
ground truth stays exact), one partial occluder (a hand or a bar) passing over the
face, and sensor noise. Faces are webcam-sized: a landmark box 100-180 px wide at rest,
80-225 px with the zoom, always inside the frame. Static clips (``static_NNN``): the still at a fixed
placement, with independent sensor noise on every frame and nothing else; any
movement of the landmarks on them is an error (jitter).

Frames are 640x480 and stored as Motion-JPEG, the way most USB webcams deliver
video: every frame is JPEG-compressed on its own (OpenCV's built-in MJPEG writer at
quality 40: ~45 KB a frame, a mean absolute error of ~2.9 grey levels against the
uncompressed frame, about what libjpeg gives at quality 70). MJPEG keeps the sensor
noise of every frame; an inter-frame codec (mp4v/XVID) would smooth it away on static clips.

Ground truth: the still's points (0-based pixel centres) through the same affine
matrix that warps the still, so it is exact up to the 3 decimals of the ``.pts`` file.

Turning clips (``turn_NNN``, ``--motion turn``): the head turns in yaw from frontal to
+``yaw_deg``, back, to -``yaw_deg`` and back (one sine period per clip), with a slow pitch
nod of up to ``pitch_deg``; every frame's still is the face re-rendered at that pose by
``models.tools.face_profiling`` (Face Mesh fitted once per still, a piecewise-affine warp), filmed by
the same moving camera with lighting, blur and noise but no occluder. Only near-frontal
stills (Face Mesh yaw within ``max_source_yaw``) are used, so both directions turn away
from what the photo saw by at most ``yaw_deg`` plus that. Ground truth: the view's points
(``models.tools.face_profiling``'s rule: rotated 3D points, jaw on the visible outline) through the
frame's matrix. ``synth.json`` adds per frame the still's yaw and pitch change and the
resulting yaw.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from app.cli.argtypes import int_at_least, non_negative_int, positive_int
from engines.base import BackendUnavailable
from engines.files import atomic_write
from models.align import transform_points
from models.datasets import PROJECT_ROOT, TEST_SET, data_root, list_annotated
from models.pts import read_pts, write_pts

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
DEFAULT_FPS = 30.0
MJPEG_QUALITY = 40
DEFAULT_COUNT = 60
DEFAULT_FRAMES = 150
DEFAULT_OUT = PROJECT_ROOT / "out" / "synth"
META_NAME = "synth.json"
GENERATOR_VERSION = 1
MOVING_PREFIX, STATIC_PREFIX, TURN_PREFIX = "synth", "static", "turn"


@dataclass(frozen=True)
class SynthSettings:
    """What a set of clips is made from. Stored in every clip's ``synth.json``."""

    frames: int = DEFAULT_FRAMES
    fps: float = DEFAULT_FPS
    static: bool = False
    face_width: tuple[float, float] = (100.0, 180.0)  # landmark-box width at rest, px
    zoom: tuple[float, float] = (0.8, 1.25)  # range of the zoom factor over a clip
    roll_deg: float = 20.0  # peak in-plane rotation of moving clips
    static_roll_deg: float = 8.0  # fixed in-plane rotation range of static clips
    gain: tuple[float, float] = (0.55, 1.45)  # brightness factor range
    read_noise: tuple[float, float] = (1.5, 3.0)  # sensor read noise sigma, grey levels
    shot_noise: tuple[float, float] = (0.01, 0.04)  # variance per grey level (shot noise)
    exposure: tuple[float, float] = (0.3, 0.9)  # exposure as a share of the frame time (blur length)
    quality: int = MJPEG_QUALITY


@dataclass(frozen=True)
class TurnSettings:
    """How the head of a turning clip moves (``--motion turn``). Stored in its ``synth.json``."""

    yaw_deg: float = 60.0  # peak yaw change each way
    pitch_deg: float = 8.0  # peak pitch change (a slow nod)
    max_source_yaw: float = 15.0  # stills whose Face Mesh yaw is further from frontal are not used


@dataclass(frozen=True)
class SensorNoise:
    read_sigma: float  # grey levels
    shot_gain: float  # noise variance per grey level

    def sigma(self, image: np.ndarray) -> np.ndarray:
        return np.sqrt(self.read_sigma**2 + self.shot_gain * np.maximum(image, 0.0))


@dataclass(frozen=True)
class Occluder:
    """One object passing in front of the face; positions are in face widths from the face centre."""

    kind: str  # "hand" or "bar"
    start: int  # first frame it appears on
    frames: int  # how many frames it takes to pass
    path_from: tuple[float, float]
    path_to: tuple[float, float]
    size: float  # face widths
    angle_deg: float
    colour: tuple[float, float, float]  # BGR

    def position(self, t: int) -> tuple[float, float] | None:
        """Offset from the face centre in face widths on frame ``t``, or None when off screen."""
        if not self.start <= t < self.start + self.frames:
            return None
        s = (t - self.start) / max(self.frames - 1, 1)
        a, b = np.asarray(self.path_from), np.asarray(self.path_to)
        p = a + (b - a) * s
        return float(p[0]), float(p[1])


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about one clip, sampled up front, per frame where it varies."""

    matrices: np.ndarray  # (T, 2, 3) still -> frame
    background_matrices: np.ndarray  # (T, 2, 3) background -> frame
    gains: np.ndarray  # (T, 3) BGR brightness factors
    blur: np.ndarray  # (T, 2) motion during the exposure, px (centred on the frame time)
    occluder: Occluder | None
    noise: SensorNoise

    @property
    def frames(self) -> int:
        return len(self.matrices)


@dataclass(frozen=True)
class Scene:
    """A still, its points, its feathered alpha and a background to put it on (float32 images)."""

    still: np.ndarray  # (H, W, 3)
    alpha: np.ndarray  # (H, W) in [0, 1]
    points: np.ndarray  # (68, 2) 0-based
    background: np.ndarray  # (Hb, Wb, 3)
    name: str = ""

    @property
    def face_centre(self) -> np.ndarray:
        return (self.points.min(axis=0) + self.points.max(axis=0)) / 2

    @property
    def face_width(self) -> float:
        return float(np.ptp(self.points[:, 0]))


def smooth_signal(rng: np.random.Generator, n: int, fps: float, freqs: tuple[float, float] = (0.08, 0.6)) -> np.ndarray:
    """A smooth random curve of ``n`` samples with peak |value| in [0.6, 1]: a sum of three sinusoids."""
    t = np.arange(n) / fps
    f = rng.uniform(*freqs, size=3)
    amp = rng.uniform(0.3, 1.0, size=3)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    x = (amp[:, None] * np.sin(2 * np.pi * f[:, None] * t[None, :] + phase[:, None])).sum(axis=0)
    peak = np.abs(x).max()
    return x / peak * rng.uniform(0.6, 1.0) if peak > 0 else x


def similarity(scale: float, angle_deg: float, centre_from: np.ndarray, centre_to: np.ndarray) -> np.ndarray:
    """(2, 3) matrix: rotate and scale about ``centre_from``, then move it to ``centre_to``."""
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.hstack([rot, (np.asarray(centre_to) - rot @ np.asarray(centre_from))[:, None]])


def make_background(rng: np.random.Generator, width: int, height: int, tint: np.ndarray) -> np.ndarray:
    """A face-free room-like backdrop: a smooth colour field, a few soft-edged blocks, fine texture."""
    tint = tint.astype(np.float32)
    field = rng.uniform(0.4, 1.4, size=(3, 4, 1)) * tint + rng.normal(0, 12, size=(3, 4, 3))
    field = np.clip(field, 15, 235).astype(np.float32)
    image = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    blocks = np.zeros_like(image)
    weight = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1 = int(min(width, x0 + rng.uniform(0.1, 0.5) * width))
        y1 = int(min(height, y0 + rng.uniform(0.1, 0.6) * height))
        blocks[y0:y1, x0:x1] = np.clip(rng.uniform(0.3, 1.5) * tint + rng.normal(0, 25, size=3), 10, 240)
        weight[y0:y1, x0:x1] = rng.uniform(0.4, 0.9)
    sigma = max(width, height) / 300
    blocks = cv2.GaussianBlur(blocks, (0, 0), sigma)
    weight = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    image = image * (1 - weight) + blocks * weight
    texture = cv2.GaussianBlur(rng.normal(0, 6, size=(height, width)).astype(np.float32), (0, 0), 1.5)[..., None]
    return np.clip(image + texture, 0, 255).astype(np.float32)


def feather_alpha(height: int, width: int, points: np.ndarray) -> np.ndarray:
    """1 inside, fading to 0 at the still's border over up to 12% of its size, never into the face."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    room = min(lo[0], lo[1], width - 1 - hi[0], height - 1 - hi[1])
    ramp = max(2.0, min(0.12 * min(height, width), 0.6 * room))
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    dx = np.minimum(x + 0.5, width - 0.5 - x)
    dy = np.minimum(y + 0.5, height - 0.5 - y)
    d = np.minimum(dy[:, None], dx[None, :]) / ramp
    d = np.clip(d, 0, 1)
    return (d * d * (3 - 2 * d)).astype(np.float32)  # smoothstep


def load_scene(image_path: Path, pts_path: Path, rng: np.random.Generator) -> Scene:
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{image_path}: not a readable image")
    points = read_pts(pts_path)
    h, w = image.shape[:2]
    border = np.concatenate([image[:4].reshape(-1, 3), image[-4:].reshape(-1, 3)]).mean(axis=0)
    background = make_background(rng, int(w * 2.5), int(h * 2.5), border)
    return Scene(image.astype(np.float32), feather_alpha(h, w, points), points, background, image_path.stem)


def _face_radius(points: np.ndarray) -> float:
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    return float(np.linalg.norm(points - centre, axis=1).max())


def plan_clip(rng: np.random.Generator, scene: Scene, settings: SynthSettings) -> ClipPlan:
    """Sample the camera path, lighting, blur, occluder and noise of one clip."""
    n, fps = settings.frames, settings.fps
    frame_centre = np.array([(FRAME_WIDTH - 1) / 2, (FRAME_HEIGHT - 1) / 2])
    base_scale = rng.uniform(*settings.face_width) / scene.face_width
    radius = _face_radius(scene.points)
    noise = SensorNoise(rng.uniform(*settings.read_noise), rng.uniform(*settings.shot_noise))
    bg_scale = base_scale * scene.still.shape[1] * 2.5 / scene.background.shape[1]
    bg_centre = np.array(scene.background.shape[1::-1], dtype=np.float64) / 2

    if settings.static:
        scale = base_scale
        room = np.maximum(frame_centre - radius * scale - 10, 0)
        centre = frame_centre + rng.uniform(-0.5, 0.5, size=2) * room
        roll = rng.uniform(-settings.static_roll_deg, settings.static_roll_deg)
        m = similarity(scale, roll, scene.face_centre, centre)
        mb = similarity(bg_scale, roll, bg_centre, frame_centre)
        gain = rng.uniform(0.8, 1.1) * np.ones(3)
        return ClipPlan(
            matrices=np.repeat(m[None], n, axis=0),
            background_matrices=np.repeat(mb[None], n, axis=0),
            gains=np.repeat(gain[None], n, axis=0),
            blur=np.zeros((n, 2)),
            occluder=None,
            noise=noise,
        )

    lo, hi = np.log(settings.zoom)
    zoom = np.exp((lo + hi) / 2 + (hi - lo) / 2 * smooth_signal(rng, n, fps))
    # keep the face in the frame at the largest zoom of the clip
    max_scale = base_scale * zoom.max()
    if radius * max_scale > min(frame_centre) - 10:
        base_scale *= (min(frame_centre) - 10) / (radius * max_scale)
        max_scale = base_scale * zoom.max()
    scale = base_scale * zoom
    room = np.maximum(frame_centre - radius * max_scale - 10, 0)
    offset = np.stack([smooth_signal(rng, n, fps) * room[0], smooth_signal(rng, n, fps) * room[1]], axis=1)
    centres = frame_centre + offset
    roll = settings.roll_deg * smooth_signal(rng, n, fps)
    parallax = rng.uniform(0.2, 1.0)
    matrices = np.stack([similarity(scale[t], roll[t], scene.face_centre, centres[t]) for t in range(n)])
    background_matrices = np.stack(
        [
            similarity(bg_scale * zoom[t] / zoom[0], roll[t] * parallax, bg_centre, frame_centre + parallax * offset[t])
            for t in range(n)
        ]
    )
    glo, ghi = np.log(settings.gain)
    gain = np.exp((glo + ghi) / 2 + (ghi - glo) / 2 * smooth_signal(rng, n, fps, (0.05, 0.4)))
    tint = 1 + 0.06 * np.stack([smooth_signal(rng, n, fps, (0.05, 0.3)) for _ in range(3)], axis=1)
    velocity = np.gradient(centres, axis=0)  # px per frame
    blur = velocity * rng.uniform(*settings.exposure)
    return ClipPlan(matrices, background_matrices, gain[:, None] * tint, blur, sample_occluder(rng, scene, n), noise)


def sample_occluder(rng: np.random.Generator, scene: Scene, frames: int) -> Occluder:
    """A hand or a bar crossing the face once, covering part of it (eyes, nose or mouth height)."""
    duration = int(min(frames, rng.integers(25, 55)))
    start = int(rng.integers(int(0.15 * frames), max(int(0.15 * frames) + 1, frames - duration)))
    direction = rng.choice([-1.0, 1.0])
    height = rng.uniform(-0.25, 0.45)  # face widths below the face centre (eyes ~ -0.2, mouth ~ +0.35)
    drift = rng.uniform(-0.2, 0.2)
    kind = "hand" if rng.random() < 0.6 else "bar"
    skin = scene.still[scene.still.shape[0] // 2 - 3 : scene.still.shape[0] // 2 + 3].reshape(-1, 3).mean(0)
    if kind == "hand":
        colour = np.clip(skin * rng.uniform(0.7, 1.05, size=3), 10, 245)
        size = rng.uniform(0.45, 0.7)
    else:
        colour = rng.uniform(15, 200, size=3)
        size = rng.uniform(0.7, 1.1)
    return Occluder(
        kind=kind,
        start=start,
        frames=duration,
        path_from=(-1.4 * direction, height - drift),
        path_to=(1.4 * direction, height + drift),
        size=float(size),
        angle_deg=float(rng.uniform(-35, 35)),
        colour=tuple(float(c) for c in colour),
    )


_SUB = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SUB


def occluder_mask(occ: Occluder, centre: np.ndarray, unit: float, shape: tuple[int, int]) -> np.ndarray:
    """Soft (H, W) float32 coverage of the occluder at ``centre`` (px) with a face width of ``unit`` px."""
    mask = np.zeros(shape, np.uint8)
    a = math.radians(occ.angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    size = occ.size * unit

    def ellipse(offset: tuple[float, float], axes: tuple[float, float], extra_deg: float = 0.0) -> None:
        c = np.asarray(centre) + rot @ (np.asarray(offset) * size)
        cv2.ellipse(
            mask,
            (int(round(c[0] * _ONE)), int(round(c[1] * _ONE))),
            (max(1, int(axes[0] * size * _ONE)), max(1, int(axes[1] * size * _ONE))),
            occ.angle_deg + extra_deg,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            _SUB,
        )

    if occ.kind == "hand":
        ellipse((0.0, 0.15), (0.42, 0.48))  # palm
        for i, (dx, length) in enumerate(((-0.3, 0.38), (-0.1, 0.45), (0.1, 0.43), (0.28, 0.36))):
            ellipse((dx, -0.3 - length / 2), (0.085, length / 2 + 0.08), 4.0 * (i - 1.5))
        ellipse((-0.5, 0.0), (0.09, 0.3), -40.0)  # thumb
    else:
        ellipse((0.0, 0.0), (0.9, 0.12))
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.6, unit / 200))


def motion_kernel(blur: np.ndarray) -> np.ndarray | None:
    """A normalised line kernel along ``blur`` (px), centred on the origin; None below 0.75 px."""
    length = float(np.hypot(*blur))
    if length < 0.75:
        return None
    half = int(math.ceil(length / 2)) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for s in np.linspace(-0.5, 0.5, int(math.ceil(length * 4)) + 1):
        x, y = half + s * blur[0], half + s * blur[1]
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return kernel / kernel.sum()


def face_points(scene: Scene, plan: ClipPlan, t: int) -> np.ndarray:
    """The exact ground truth of frame ``t``: the still's points through the frame's matrix."""
    return transform_points(scene.points, plan.matrices[t])


def turn_schedule(turn: TurnSettings, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch) change of the still on each frame: 0 -> +yaw -> 0 -> -yaw -> 0, and a nod."""
    phase = np.arange(frames) / max(frames - 1, 1)
    return turn.yaw_deg * np.sin(2 * np.pi * phase), turn.pitch_deg * np.sin(4 * np.pi * phase)


class TurningScene:
    """A still fitted once by Face Mesh, re-rendered at each frame's head turn (``models.tools.face_profiling``)."""

    def __init__(self, scene: Scene, fit, yaw: np.ndarray, pitch: np.ndarray) -> None:
        self.scene, self.fit, self.yaw, self.pitch = scene, fit, yaw, pitch

    def at(self, t: int) -> Scene:
        from models.tools.face_profiling import render_view

        still = np.clip(np.rint(self.scene.still), 0, 255).astype(np.uint8)
        view = render_view(still, self.fit, float(self.yaw[t]), float(self.pitch[t]))
        return replace(self.scene, still=view.image.astype(np.float32), points=view.points)


def render_frame(
    scene: Scene, plan: ClipPlan, t: int, noise_rng: np.random.Generator | None = None
) -> tuple[np.ndarray, float]:
    """Frame ``t`` as float32 BGR (before quantisation) and the share of points under the occluder.

    Sensor noise is added only when ``noise_rng`` is given (tests render without it).
    """
    size = (FRAME_WIDTH, FRAME_HEIGHT)
    frame = cv2.warpAffine(
        scene.background, plan.background_matrices[t], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    m = plan.matrices[t]
    rgba = np.dstack([scene.still, scene.alpha])
    face = cv2.warpAffine(rgba, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = face[..., 3:]
    frame = face[..., :3] * alpha + frame * (1 - alpha)
    occluded = 0.0
    if plan.occluder is not None and (offset := plan.occluder.position(t)) is not None:
        unit = float(np.hypot(*m[:, 0])) * scene.face_width
        pts = face_points(scene, plan, t)
        centre = (pts.min(axis=0) + pts.max(axis=0)) / 2 + np.asarray(offset) * unit
        cover = occluder_mask(plan.occluder, centre, unit, (FRAME_HEIGHT, FRAME_WIDTH))
        shade = np.linspace(1.08, 0.85, FRAME_HEIGHT, dtype=np.float32)[:, None, None]
        colour = np.asarray(plan.occluder.colour, np.float32) * shade
        frame = frame * (1 - cover[..., None]) + colour * cover[..., None]
        ix = np.clip(np.round(pts).astype(int), 0, [FRAME_WIDTH - 1, FRAME_HEIGHT - 1])
        occluded = float((cover[ix[:, 1], ix[:, 0]] > 0.5).mean())
    frame = frame * plan.gains[t].astype(np.float32)
    kernel = motion_kernel(plan.blur[t])
    if kernel is not None:
        frame = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if noise_rng is not None:
        sigma = plan.noise.sigma(frame)
        frame = frame + noise_rng.standard_normal(frame.shape, dtype=np.float32) * sigma
    return frame, occluded


def open_writer(path: Path, fps: float, quality: int) -> cv2.VideoWriter:
    """OpenCV's own Motion-JPEG AVI writer (no FFmpeg needed), at ``quality``."""
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (FRAME_WIDTH, FRAME_HEIGHT)
    )
    if not writer.isOpened():
        raise RuntimeError(f"{path}: could not open an MJPEG video writer")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
    return writer


def clip_name(index: int, static: bool, turn: bool = False) -> str:
    prefix = TURN_PREFIX if turn else STATIC_PREFIX if static else MOVING_PREFIX
    return f"{prefix}_{index:03d}"


def write_clip(
    folder: Path,
    scene: Scene,
    plan: ClipPlan,
    settings: SynthSettings,
    noise_rng: np.random.Generator,
    meta: dict,
    turning: TurningScene | None = None,
) -> Path:
    """Render and write one clip (vid.avi, annot/NNNNNN.pts, synth.json). synth.json is written last.

    With ``turning``, frame t shows ``turning.at(t)`` instead of ``scene``."""
    if folder.exists():
        shutil.rmtree(folder)
    annot = folder / "annot"
    annot.mkdir(parents=True)
    writer = open_writer(folder / "vid.avi", settings.fps, settings.quality)
    occluded = []
    try:
        for t in range(plan.frames):
            shown = turning.at(t) if turning else scene
            frame, share = render_frame(shown, plan, t, noise_rng)
            writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
            write_pts(annot / f"{t + 1:06d}.pts", face_points(shown, plan, t))
            occluded.append(round(share, 3))
    finally:
        writer.release()
    info = dict(meta)
    info.update(
        generator=f"facetrack68 synth-clips v{GENERATOR_VERSION}",
        still=scene.name,
        frames=plan.frames,
        settings=asdict(settings),
        noise=asdict(plan.noise),
        occluder=asdict(plan.occluder) if plan.occluder else None,
        per_frame={
            "occluded_share": occluded,
            "blur_px": [round(float(np.hypot(*b)), 3) for b in plan.blur],
            "gain": [round(float(g.mean()), 3) for g in plan.gains],
        },
    )
    if turning:
        info["source_yaw"] = round(turning.fit.yaw, 2)
        info["source_pitch"] = round(turning.fit.pitch, 2)
        info["per_frame"]["yaw_delta"] = [round(float(v), 3) for v in turning.yaw]
        info["per_frame"]["pitch_delta"] = [round(float(v), 3) for v in turning.pitch]
        info["per_frame"]["yaw"] = [round(float(v) + turning.fit.yaw, 3) for v in turning.yaw]
    atomic_write(folder / META_NAME, json.dumps(info, indent=1))
    return folder


def is_complete(folder: Path, meta: dict) -> bool:
    """A clip folder that was fully written with the same still, seed and settings."""
    try:
        info = json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        return False
    return all(info.get(k) == v for k, v in meta.items())


def choose_stills(source_dir: Path, count: int, seed: int) -> list:
    """``count`` annotated stills, drawn without replacement by ``seed`` (all of them if fewer)."""
    items = list_annotated(source_dir)
    if not items:
        raise FileNotFoundError(f"no annotated images (image + .pts) in {source_dir}")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(items), size=min(count, len(items)), replace=False))
    return [items[i] for i in pick]


def make_clips(
    source_dir: Path,
    out_dir: Path,
    count: int = DEFAULT_COUNT,
    settings: SynthSettings | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    turn: TurnSettings | None = None,
) -> list[Path]:
    """Make (or finish) a set of clips; complete clips with the same recipe are kept unless ``overwrite``.

    The stills are the same for a moving and a static set with the same seed and
    count, so ``synth_007`` and ``static_007`` show the same face. With ``turn``, turning
    clips (``turn_NNN``) from the first ``count`` near-frontal stills in the seed's order.
    """
    from tqdm import tqdm

    settings = settings or SynthSettings()
    if turn is not None:
        return make_turning_clips(source_dir, out_dir, count, settings, turn, seed, overwrite, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = []
    stills = choose_stills(source_dir, count, seed)
    for i, item in enumerate(tqdm(stills, desc=f"clips -> {out_dir}", unit="clip", disable=not progress)):
        folder = out_dir / clip_name(i, settings.static)
        meta = {"seed": seed, "index": i, "source": str(item.image_path.name), "recipe": asdict(settings)}
        meta = json.loads(json.dumps(meta))  # tuples -> lists, as they come back from the file
        folders.append(folder)
        if not overwrite and is_complete(folder, meta):
            continue
        rng = np.random.default_rng([seed, i, int(settings.static)])
        try:
            scene = load_scene(item.image_path, item.pts_path, rng)
        except ValueError as exc:  # unreadable image or malformed .pts: named in the message
            print(f"synth-clips: skipping {folder.name}: {exc}")
            folders.pop()
            continue
        plan = plan_clip(rng, scene, settings)
        write_clip(folder, scene, plan, settings, rng, meta)
    return folders


def make_turning_clips(
    source_dir: Path,
    out_dir: Path,
    count: int,
    settings: SynthSettings,
    turn: TurnSettings,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Turning clips (see the module docstring); stills Face Mesh cannot fit, or not near-frontal, are passed over."""
    from tqdm import tqdm

    from models.tools.face_profiling import FaceMesh3D, FitError

    out_dir.mkdir(parents=True, exist_ok=True)
    folders = []
    items = list_annotated(source_dir)
    if not items:
        raise FileNotFoundError(f"no annotated images (image + .pts) in {source_dir}")
    order = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    yaw, pitch = turn_schedule(turn, settings.frames)
    bar = tqdm(total=count, desc=f"turning clips -> {out_dir}", unit="clip", disable=not progress)
    with FaceMesh3D() as mesh:
        for item in order:
            if len(folders) == count:
                break
            i = len(folders)
            folder = out_dir / clip_name(i, False, turn=True)
            meta = {"seed": seed, "index": i, "source": str(item.image_path.name), "recipe": asdict(settings),
                    "turn": asdict(turn)}
            meta = json.loads(json.dumps(meta))
            if not overwrite and is_complete(folder, meta):
                folders.append(folder)
                bar.update()
                continue
            rng = np.random.default_rng([seed, i, 2])
            try:
                scene = load_scene(item.image_path, item.pts_path, rng)
                fit = mesh.fit(np.clip(np.rint(scene.still), 0, 255).astype(np.uint8), scene.points)
            except (ValueError, FitError) as exc:  # unreadable, or Face Mesh found no matching face
                print(f"synth-clips: passing over {item.image_path.name}: {exc}")
                continue
            if abs(fit.yaw) > turn.max_source_yaw:
                continue
            plan = replace(plan_clip(rng, scene, settings), occluder=None)
            write_clip(folder, scene, plan, settings, rng, meta, TurningScene(scene, fit, yaw, pitch))
            folders.append(folder)
            bar.update()
    bar.close()
    if len(folders) < count:
        print(f"synth-clips: only {len(folders)} of {source_dir}'s stills are near-frontal and fitted")
    return folders


def read_video_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    wanted, frames = set(indices), {}
    cap = cv2.VideoCapture(str(path))
    try:
        t = 0
        while wanted - frames.keys():
            ok, image = cap.read()
            if not ok:
                break
            if t in wanted:
                frames[t] = image
            t += 1
    finally:
        cap.release()
    return frames


def contact_sheet(
    folders: list[Path], path: Path, per_clip: int = 5, scale: float = 1 / 3, points: bool = True
) -> Path:
    """A JPEG grid: one row per clip, ``per_clip`` evenly spaced frames, ground truth drawn as dots."""
    rows = []
    for folder in folders:
        annots = sorted((folder / "annot").glob("*.pts"))
        n = len(annots)
        indices = sorted({int(round(i)) for i in np.linspace(0, n - 1, per_clip)})
        frames = read_video_frames(folder / "vid.avi", indices)
        tiles = []
        for t in indices:
            image = frames.get(t, np.zeros((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)).copy()
            if points:
                for x, y in read_pts(annots[t]):
                    centre = (int(round(x * _ONE)), int(round(y * _ONE)))
                    cv2.circle(image, centre, 2 * _ONE, (0, 255, 0), -1, cv2.LINE_AA, _SUB)
            tile = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            label = f"{folder.name} #{t + 1}"
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-dir", type=Path, default=None, help=f"annotated stills (default: <data>/{TEST_SET}, test-only faces)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_OUT}/moving or /static)"
    )
    parser.add_argument("--count", type=positive_int, default=DEFAULT_COUNT, help="number of clips (default %(default)s)")
    parser.add_argument("--frames", type=int_at_least(2), default=DEFAULT_FRAMES, help="frames per clip (default %(default)s)")
    parser.add_argument("--static", action="store_true", help="static-face clips: fixed placement, sensor noise only")
    parser.add_argument(
        "--motion",
        choices=("camera", "turn"),
        default="camera",
        help="camera: a moving camera (default); turn: the head also turns to +-60 degrees yaw and back",
    )
    parser.add_argument("--turn-yaw", type=float, default=TurnSettings.yaw_deg, help="peak yaw change of --motion turn")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="remake clips that are already complete")
    parser.add_argument("--no-sheet", dest="sheet", action="store_false", help="skip the contact sheet")


def run(args: argparse.Namespace) -> int:
    source = args.source_dir or data_root() / TEST_SET
    turning = getattr(args, "motion", "camera") == "turn"
    if turning and args.static:
        print("synth-clips: --static and --motion turn exclude each other")
        return 2
    if turning and not 0 < args.turn_yaw <= 90:
        print(f"synth-clips: --turn-yaw must be in (0, 90] degrees, got {args.turn_yaw}")
        return 2
    out = args.out or DEFAULT_OUT / ("turn" if turning else "static" if args.static else "moving")
    settings = SynthSettings(frames=args.frames, static=args.static)
    turn = TurnSettings(yaw_deg=args.turn_yaw) if turning else None
    start = time.perf_counter()
    try:
        folders = make_clips(source, out, args.count, settings, seed=args.seed, overwrite=args.overwrite, turn=turn)
    except (FileNotFoundError, BackendUnavailable) as exc:
        print(f"synth-clips: {exc}")
        return 1
    elapsed = time.perf_counter() - start
    print(f"{len(folders)} clips of {args.frames} frames in {out} ({elapsed:.1f} s)")
    if args.sheet:
        sheet = contact_sheet(folders[:8], out / "contact_sheet.jpg")
        print(f"contact sheet: {sheet}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.synth.clips", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())


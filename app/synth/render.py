"""How a synthetic clip looks: its settings, the scene (a still pasted on a procedural background),
the camera path, occluders, turning heads, lighting, blur and sensor noise, and one rendered frame.
``app.synth.clips`` plans clips with these and writes them (see its docstring for the method)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from models.align import transform_points
from models.datasets import PROJECT_ROOT
from models.pts import read_pts

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

"""Augmentation of canonical crops: one composed warp, then photometric corruption.

Geometry (all composed into a single ``cv2.warpAffine`` from the canonical crop):
1. detector-like keypoint error: the five keypoints derived from the ground truth
   are perturbed by per-slot noise (mean + std * N(0, 1), in template-crop units,
   times ``jitter_scale``) and the alignment to the template is re-estimated from
   them, exactly as ``models.align`` would do with a real detector's points;
2. a similarity about the crop centre: rotation N(0, rot/3) clipped to +-rot,
   scale uniform in [1 - s, 1 + s], translation N(0, t/2) clipped to +-t (crop units);
3. a horizontal flip (then points are re-ordered with ``landmarks68.MIRROR``).
With no augmentation the composed matrix is a pure shift by the canonical margin, so the
result equals the run-time aligned crop.

Photometric: colour/brightness/contrast/saturation jitter, grey-scale, Gaussian blur or
down-and-up resampling (webcam softness), sensor noise, JPEG re-encoding, and random
erasing (rectangles of flat colour or noise standing in for occluders).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.align import estimate_similarity, template_points, transform_points
from models.training.label_offset import flipped_label_correction
from models.landmarks68 import FIVE_POINT_MASK, MIRROR, NUM_KEYPOINTS, keypoints_from_landmarks

DETECTOR_ERROR_FILE = Path(__file__).resolve().parent.parent / "detector_keypoint_error.json"
# Default when no measurement exists: zero-mean error of 2.5% of the crop side per
# coordinate, for each of the five detector slots.
DEFAULT_KEYPOINT_ERROR_STD = 0.025


@dataclass(frozen=True)
class KeypointError:
    """Per-slot detector keypoint error in template-crop units: mean and std, each (6, 2)."""

    mean: np.ndarray
    std: np.ndarray
    source: str

    @classmethod
    def default(cls) -> "KeypointError":
        return cls(np.zeros((NUM_KEYPOINTS, 2)), np.full((NUM_KEYPOINTS, 2), DEFAULT_KEYPOINT_ERROR_STD),
                   f"default (zero mean, std {DEFAULT_KEYPOINT_ERROR_STD} of the crop per coordinate)")


def _as_slots(value, what: str) -> np.ndarray:
    """Accept a (6|5, 2) list, a per-slot dict {name: [x, y] | scalar}, or one scalar."""
    from models.landmarks68 import KEYPOINT_NAMES

    out = np.zeros((NUM_KEYPOINTS, 2))
    if isinstance(value, dict):
        for i, name in enumerate(KEYPOINT_NAMES):
            if name in value:
                out[i] = value[name]
        return out
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        out[:] = arr
    elif arr.ndim == 1 and len(arr) in (5, 6):
        out[: len(arr)] = arr[:, None]
    elif arr.ndim == 2 and arr.shape[1] == 2 and len(arr) in (5, 6):
        out[: len(arr)] = arr
    else:
        raise ValueError(f"detector keypoint error: cannot read {what} of shape {arr.shape}")
    return out


def _detector_entries(data: dict) -> dict[str, dict]:
    """{detector: {"mean": (6, 2), "std": (6, 2), "present": (6,)}} from the supported layouts."""
    from models.landmarks68 import KEYPOINT_NAMES

    if "mean" in data and "std" in data:
        return {"file": {"mean": _as_slots(data["mean"], "mean"), "std": _as_slots(data["std"], "std"),
                         "present": np.ones(NUM_KEYPOINTS, bool)}}
    detectors = data.get("detectors", data)
    out = {}
    for name, entry in detectors.items():
        if not isinstance(entry, dict):
            continue
        if "slots" in entry:
            slots = entry["slots"]
            present = np.array([k in slots for k in KEYPOINT_NAMES])
            mean = _as_slots({k: v["mean"] for k, v in slots.items()}, "mean")
            std = _as_slots({k: v["std"] for k, v in slots.items()}, "std")
            out[name] = {"mean": mean, "std": std, "present": present}
        elif "mean" in entry and "std" in entry:
            out[name] = {"mean": _as_slots(entry["mean"], "mean"), "std": _as_slots(entry["std"], "std"),
                         "present": np.ones(NUM_KEYPOINTS, bool)}
    return out


def load_keypoint_error(path: Path = DETECTOR_ERROR_FILE, detector: str | None = "retinaface") -> KeypointError:
    """Read the measured detector error if the file exists, else the documented default.

    Layouts: ``{"detectors": {NAME: {"slots": {SLOT: {"mean": [x, y], "std": [x, y]}}}}}``
    (written by ``models.tools.measure_detectors``), ``{NAME: {"mean", "std"}}`` or a top-level
    ``{"mean", "std"}``. ``detector`` picks one (falling back to the first); ``"max"`` takes,
    per slot, the mean of the detectors' means and the largest std.
    """
    path = Path(path)
    if not path.is_file():
        return KeypointError.default()
    entries = _detector_entries(json.loads(path.read_text()))
    if not entries:
        raise ValueError(f"{path}: no per-detector 'mean'/'std' keypoint error found")
    if detector == "max":
        present = np.stack([e["present"] for e in entries.values()])  # (D, 6)
        means = np.stack([e["mean"] for e in entries.values()])
        stds = np.stack([e["std"] for e in entries.values()])
        count = np.maximum(present.sum(0), 1)[:, None]
        mean = (means * present[..., None]).sum(0) / count
        return KeypointError(mean, stds.max(0), f"{path} (max std over {', '.join(entries)})")
    key = detector if detector in entries else next(iter(entries))
    return KeypointError(entries[key]["mean"], entries[key]["std"], f"{path} [{key}]")


@dataclass
class AugmentConfig:
    jitter_scale: float = 1.0  # multiplies the detector keypoint error
    rotation_deg: float = 30.0
    scale: float = 0.15
    translation: float = 0.05  # crop units
    flip_prob: float = 0.5
    colour_prob: float = 0.8
    grey_prob: float = 0.05
    blur_prob: float = 0.25
    noise_prob: float = 0.2
    jpeg_prob: float = 0.25
    erase_prob: float = 0.3
    occlusion_prob: float = 0.0  # synthetic occluders with hidden-point labels (models/training/occlusion.py; sgfa)
    keypoint_error: KeypointError = field(default_factory=KeypointError.default)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def flip_matrix(size: int) -> np.ndarray:
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The (2, 3) affine 'a after b'."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def sample_geometry(
    points: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """Canonical-crop -> training-crop matrix and whether it flips.

    ``points`` are the ground truth in canonical coordinates; the canonical crop is at the
    training crop's pixel scale (see ``crop_cache``).
    """
    keypoints = keypoints_from_landmarks(points)
    err = cfg.keypoint_error
    noise = err.mean + err.std * rng.standard_normal((NUM_KEYPOINTS, 2))
    keypoints = keypoints + cfg.jitter_scale * noise * size
    m = estimate_similarity(keypoints[FIVE_POINT_MASK], template_points(size)[FIVE_POINT_MASK])
    angle = 0.0
    if cfg.rotation_deg:
        angle = np.clip(rng.normal(0.0, cfg.rotation_deg / 3.0), -cfg.rotation_deg, cfg.rotation_deg)
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale) if cfg.scale else 1.0
    shift = np.clip(rng.normal(0.0, cfg.translation / 2.0, 2), -cfg.translation, cfg.translation) * size
    centre = (size - 1) / 2.0
    similarity = cv2.getRotationMatrix2D((centre, centre), float(angle), float(scale))
    similarity[:, 2] += shift
    m = compose(similarity, m)
    flip = bool(rng.random() < cfg.flip_prob)
    if flip:
        m = compose(flip_matrix(size), m)
    return m, flip


def warp_sample(
    image: np.ndarray, points: np.ndarray, matrix: np.ndarray, flip: bool, size: int,
    label_offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a canonical crop and its points; flipped points are re-ordered with MIRROR and, with
    ``label_offset`` (the labels' offset from the feature in canonical pixels), keep its sign
    (``models.training.label_offset``)."""
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    out = transform_points(points, matrix)
    if flip:
        out = out[MIRROR]
        if label_offset is not None:
            out = out + flipped_label_correction(matrix, label_offset)
    return crop, out


def photometric(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour, blur/resampling, noise, JPEG and erasing on a uint8 BGR crop (new array)."""
    img = image.astype(np.float32)
    size = image.shape[0]
    if rng.random() < cfg.colour_prob:
        gains = rng.uniform(0.85, 1.15, 3)  # per-channel white balance
        contrast = rng.uniform(0.65, 1.35)
        brightness = rng.uniform(-40, 40)
        mean = img.mean()
        img = (img - mean) * contrast + mean + brightness
        img *= gains
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.6, 1.4)  # saturation
    if rng.random() < cfg.grey_prob:
        img[:] = img.mean(axis=2, keepdims=True)
    if rng.random() < cfg.blur_prob:
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.6))
        else:
            small = max(16, int(size * rng.uniform(0.3, 0.75)))
            img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                             interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.noise_prob:
        img += rng.normal(0.0, rng.uniform(2.0, 10.0), img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if rng.random() < cfg.erase_prob:
        area = rng.uniform(0.02, 0.15) * size * size
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        h = int(min(size, np.sqrt(area * aspect)))
        w = int(min(size, np.sqrt(area / aspect)))
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        if rng.random() < 0.5:
            out[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
        else:
            out[y : y + h, x : x + w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return out


def augment(
    image: np.ndarray, points: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator,
    label_offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One training sample (uint8 BGR ``size`` crop, (68, 2) points) from a canonical crop
    (``label_offset``: see ``warp_sample``)."""
    matrix, flip = sample_geometry(points, size, cfg, rng)
    crop, out = warp_sample(image, points, matrix, flip, size, label_offset)
    return photometric(crop, cfg, rng), out

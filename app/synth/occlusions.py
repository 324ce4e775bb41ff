"""``python -m app synth-occlusions``: an occluded test set made from HELEN test, with per-point
hidden labels (COFW's images cannot be obtained here).

Every HELEN test face (testing only: nothing is trained or tuned on it; ``--source`` names
another annotated folder, e.g. a training one to choose thresholds on) gets one occluder,
the kinds in turn, each placed and sized from the face's own points with a seeded generator:

- ``sunglasses``: two dark, slightly glossy lenses over the eyes joined by a bridge;
- ``microphone``: a dark handle rising from below to a round mesh head over the mouth;
- ``hand``: a palm and four fingers over the mouth, an eye or a cheek, with skin texture cut
  from a training face (300-W AFW / HELEN train), recoloured;
- ``object``: a random polygon textured with a patch of a training image's background;
- ``blob``: a soft, heavily blurred blob of a training image's texture (an out-of-focus object).

Textures come only from the training images, never from HELEN test faces. An occluder is
drawn through a soft coverage map (alpha); a point is hidden where the coverage at its pixel is
at least 0.5. Writes ``OUT/NAME.jpg`` + ``OUT/NAME.pts`` (the ground truth, unchanged) for each
face, ``OUT/visibility.json`` (per face: the occluder kind and the hidden point indices) and,
with ``--sheet``, a contact sheet (hidden points red, visible green). The same seed gives the
same set.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.cli.argtypes import non_negative_int, positive_int
from app.output_paths import check_output_folder, check_outputs
from engines.files import atomic_write
from models.datasets import PROJECT_ROOT, TEST_SET, list_annotated, resolve_dataset
from models.landmarks68 import OUTER_EYE_CORNERS
from models.pts import write_pts

KINDS = ("sunglasses", "microphone", "hand", "object", "blob")
TEXTURE_SETS = ("300w/afw", "300w/helen_train")
VISIBILITY_FILE = "visibility.json"
GENERATOR_VERSION = 1
DEFAULT_OUT = PROJECT_ROOT / "out" / "occluded"
HIDDEN_COVERAGE = 0.5
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Occluded:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    coverage: np.ndarray  # (H, W) float32 in [0, 1]
    hidden: np.ndarray  # (68,) bool
    kind: str


class Textures:
    """Skin and background patches cut from training images (never HELEN test)."""

    def __init__(self, rng: np.random.Generator, count: int = 40):
        items = [i for name in TEXTURE_SETS for i in list_annotated(resolve_dataset(name))]
        chosen = rng.choice(len(items), min(count, len(items)), replace=False)
        self.skin, self.background = [], []
        for index in chosen:
            item = items[int(index)]
            image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            pts = item.load_points()
            iod = _iod(pts)
            cheek = (pts[2] + pts[31]) / 2  # between the jaw and the nose: skin
            self.skin.append(_patch(image, cheek, 0.18 * iod))
            x0, y0 = pts.min(axis=0)
            x1, _ = pts.max(axis=0)
            corners = [np.array([x, y]) for x, y in ((x0 / 2, y0 / 2), ((x1 + image.shape[1]) / 2, y0 / 2))]
            for c in corners:  # outside the landmark box: background, other objects
                size = 0.45 * min(x0, y0, image.shape[1] - x1)
                if size >= 8:
                    self.background.append(_patch(image, c, size))
        if not self.skin or not self.background:
            raise FileNotFoundError(f"no texture images in {', '.join(TEXTURE_SETS)}")

    def pick(self, rng: np.random.Generator, kind: str, size: tuple[int, int]) -> np.ndarray:
        source = self.skin if kind == "skin" else self.background
        patch = source[int(rng.integers(len(source)))]
        return cv2.resize(patch, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[OUTER_EYE_CORNERS[0]] - points[OUTER_EYE_CORNERS[1]]))


def _patch(image: np.ndarray, centre: np.ndarray, half: float) -> np.ndarray:
    h, w = image.shape[:2]
    half = max(4, int(half))
    cx, cy = np.clip(centre, half, [w - half - 1, h - half - 1]).astype(int)
    return image[max(0, cy - half):cy + half, max(0, cx - half):cx + half].copy()


def _ellipse(mask: np.ndarray, centre, axes, angle: float) -> None:
    cv2.ellipse(mask, (int(centre[0] * 8), int(centre[1] * 8)), (max(1, int(axes[0] * 8)), max(1, int(axes[1] * 8))),
                angle, 0, 360, 1.0, -1, cv2.LINE_AA, shift=3)


def _capsule(mask: np.ndarray, a, b, radius: float) -> None:
    cv2.line(mask, (int(a[0] * 8), int(a[1] * 8)), (int(b[0] * 8), int(b[1] * 8)), 1.0, max(1, int(2 * radius)),
             cv2.LINE_AA, shift=3)


def _soften(mask: np.ndarray, iod: float) -> np.ndarray:
    k = max(3, int(0.03 * iod) | 1)
    return cv2.GaussianBlur(mask, (k, k), 0)


def occlude(image: np.ndarray, points: np.ndarray, kind: str, rng: np.random.Generator,
            textures: Textures) -> Occluded:
    """Draw one occluder of ``kind`` over the face; return the image, its coverage and the hidden points."""
    h, w = image.shape[:2]
    iod = _iod(points)
    eye_l, eye_r = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    axis = (eye_r - eye_l) / max(np.linalg.norm(eye_r - eye_l), 1e-6)
    roll = float(np.degrees(np.arctan2(axis[1], axis[0])))
    down = np.array([-axis[1], axis[0]])
    mouth = points[48:68].mean(axis=0)
    mask = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    if kind == "sunglasses":
        size = rng.uniform(0.22, 0.3) * iod
        for eye in (eye_l, eye_r):
            _ellipse(mask, eye + 0.03 * iod * down, (size * 1.25, size), roll)
        _capsule(mask, eye_l, eye_r, 0.04 * iod)
        shade = rng.uniform(10, 45)
        colour[:] = shade
        gloss = np.zeros((h, w), np.float32)
        _ellipse(gloss, eye_l - 0.3 * size * down, (size * 0.5, size * 0.15), roll - 20)
        colour += 60 * cv2.GaussianBlur(gloss, (0, 0), max(1.0, 0.05 * iod))[..., None]
    elif kind == "microphone":
        head = mouth + rng.uniform(-0.1, 0.15) * iod * down + rng.uniform(-0.2, 0.2) * iod * axis
        radius = rng.uniform(0.28, 0.4) * iod
        tilt = rng.uniform(-0.5, 0.5)
        bottom = head + 3 * iod * (down + tilt * axis)
        _capsule(mask, head, bottom, 0.12 * iod)
        _ellipse(mask, head, (radius, radius), 0)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        mesh = 0.5 + 0.5 * np.sign(np.sin(xx / max(1.0, 0.04 * iod)) * np.sin(yy / max(1.0, 0.04 * iod)))
        near = (np.hypot(xx - head[0], yy - head[1]) < radius).astype(np.float32)
        colour[:] = rng.uniform(25, 60)
        colour += (near * (40 + 60 * mesh))[..., None]
    elif kind == "hand":
        target = [mouth, eye_l, eye_r, (points[3] + points[31]) / 2, (points[13] + points[35]) / 2][
            int(rng.integers(5))]
        palm = target + rng.uniform(0.3, 0.5) * iod * down
        up = -down
        _ellipse(mask, palm, (0.42 * iod, 0.5 * iod), roll)
        for j, offset in enumerate(np.linspace(-0.3, 0.3, 4)):
            base = palm + 0.3 * iod * up + offset * iod * axis
            _capsule(mask, base, base + (0.55 + 0.1 * (j in (1, 2))) * iod * up, 0.08 * iod)
        x0, y0 = np.maximum(0, (palm - 1.3 * iod).astype(int))
        x1, y1 = np.minimum([w, h], (palm + 1.3 * iod).astype(int))
        if x1 > x0 and y1 > y0:
            skin = textures.pick(rng, "skin", (x1 - x0, y1 - y0))
            tone = (rng.uniform(0.7, 1.15) * rng.uniform(0.95, 1.05, 3)).astype(np.float32)
            colour[y0:y1, x0:x1] = np.clip(skin * tone, 0, 255)
    elif kind == "object":
        centre = points[int(rng.integers(17, 68))]
        count = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(0.35, 0.7, count) * iod
        polygon = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(mask, [np.round(polygon * 8).astype(np.int32)], 1.0, cv2.LINE_AA, shift=3)
        colour[:] = textures.pick(rng, "background", (w, h))
    elif kind == "blob":
        centre = points[int(rng.integers(17, 68))]
        _ellipse(mask, centre, (rng.uniform(0.35, 0.6) * iod, rng.uniform(0.3, 0.5) * iod), rng.uniform(0, 180))
        sigma = max(1.0, 0.15 * iod)
        colour[:] = cv2.GaussianBlur(textures.pick(rng, "background", (w, h)), (0, 0), sigma)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.08 * iod) * 1.4
    else:
        raise ValueError(f"unknown occluder kind {kind!r}; known: {', '.join(KINDS)}")
    coverage = np.clip(_soften(mask, iod), 0.0, 1.0)
    out = image.astype(np.float32) * (1 - coverage[..., None]) + colour * coverage[..., None]
    ix = np.clip(np.round(points).astype(int), 0, [w - 1, h - 1])
    hidden = coverage[ix[:, 1], ix[:, 0]] >= HIDDEN_COVERAGE
    return Occluded(np.clip(out, 0, 255).astype(np.uint8), coverage, hidden, kind)


def make_set(out: Path, seed: int = 0, limit: int | None = None, source: str = TEST_SET) -> dict:
    """Write the occluded set; returns the visibility record."""
    rng = np.random.default_rng(seed)
    textures = Textures(np.random.default_rng([seed, 1]))
    items = list_annotated(resolve_dataset(source))[:limit]
    out.mkdir(parents=True, exist_ok=True)
    faces = {}
    for index, item in enumerate(items):
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode image {item.image_path}")
        points = item.load_points()
        kind = KINDS[index % len(KINDS)]
        result = occlude(image, points, kind, rng, textures)
        name = item.image_path.stem
        if not cv2.imwrite(str(out / f"{name}.jpg"), result.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"cannot write {out / (name + '.jpg')}")
        write_pts(out / f"{name}.pts", points)
        faces[f"{name}.jpg"] = {"occluder": kind, "hidden": np.flatnonzero(result.hidden).tolist()}
    record = {"generator_version": GENERATOR_VERSION, "seed": seed, "source": str(source),
              "hidden_coverage": HIDDEN_COVERAGE, "faces": faces}
    atomic_write(out / VISIBILITY_FILE, json.dumps(record, indent=1))
    return record


def load_visibility(folder: str | Path) -> dict[str, np.ndarray]:
    """``{image file name: (68,) bool hidden}`` from ``folder/visibility.json``."""
    path = Path(folder) / VISIBILITY_FILE
    try:
        record = json.loads(path.read_text())
        faces = record["faces"]
    except FileNotFoundError:
        raise FileNotFoundError(f"no visibility file {path} (made by `python -m app synth-occlusions`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid visibility file {path}: {exc}") from exc
    hidden = {}
    for name, face in faces.items():
        mask = np.zeros(68, bool)
        indices = np.asarray(face.get("hidden", []), dtype=int)
        if indices.size and (indices.min() < 0 or indices.max() >= 68):
            raise ValueError(f"invalid visibility file {path}: {name} has hidden indices outside 0-67")
        mask[indices] = True
        hidden[name] = mask
    return hidden


def contact_sheet(folder: Path, path: Path, count: int = 20, columns: int = 5, cell: int = 200) -> Path:
    """A grid of the first ``count`` faces: hidden points red, visible green, the occluder kind written."""
    hidden = load_visibility(folder)
    cells = []
    for name in sorted(hidden)[:count]:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        from models.pts import read_pts

        points = read_pts(folder / Path(name).with_suffix(".pts"))
        scale = cell / max(image.shape[:2])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.zeros((cell, cell, 3), np.uint8)
        canvas[:small.shape[0], :small.shape[1]] = small
        for p, is_hidden in zip(points * scale, hidden[name]):
            cv2.circle(canvas, (int(round(p[0])), int(round(p[1]))), 2, (0, 0, 255) if is_hidden else (0, 200, 0), -1)
        kind = json.loads((folder / VISIBILITY_FILE).read_text())["faces"][name]["occluder"]
        cv2.putText(canvas, f"{kind} {int(hidden[name].sum())}", (4, cell - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
        cells.append(canvas)
    while len(cells) % columns:
        cells.append(np.zeros_like(cells[0]))
    rows = [np.hstack(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N faces (by name)")
    parser.add_argument("--source", default=TEST_SET,
                        help=f"annotated faces to occlude (default {TEST_SET}; a training folder such as 300w/afw "
                             "gives a set to choose a visibility threshold on)")
    parser.add_argument("--sheet", action="store_true", help="also write OUT/sheet.jpg (20 samples)")


def check_planned_outputs(out: Path, limit: int | None, source: str, sheet: bool) -> None:
    """Refuse (``OutputCollision``, exit 2) before anything is written when a file the set would
    have (``NAME.jpg``, ``NAME.pts``, the visibility file, the sheet) is a source or texture image or
    annotation, or ``out`` is an existing file."""
    inputs = [resolve_dataset(source)]
    for name in TEXTURE_SETS:
        try:
            inputs.append(resolve_dataset(name))
        except FileNotFoundError:
            pass  # reported by Textures when the set is made
    check_output_folder(inputs, out)
    planned = []
    for item in list_annotated(inputs[0])[:limit]:
        planned += [out / f"{item.image_path.stem}.jpg", out / f"{item.image_path.stem}.pts"]
    planned += [out / VISIBILITY_FILE] + ([out / "sheet.jpg"] if sheet else [])
    check_outputs(inputs, [("--out", path) for path in planned])


def run(args: argparse.Namespace) -> int:
    check_planned_outputs(args.out, args.limit, args.source, args.sheet)
    record = make_set(args.out, args.seed, args.limit, args.source)
    faces = record["faces"].values()
    hidden = [len(f["hidden"]) for f in faces]
    print(f"wrote {len(hidden)} occluded faces to {args.out}: {np.mean(hidden):.1f} hidden points per face "
          f"(median {np.median(hidden):.0f}); {args.out / VISIBILITY_FILE}")
    for kind in KINDS:
        counts = [len(f["hidden"]) for f in faces if f["occluder"] == kind]
        if counts:
            print(f"  {kind}: {len(counts)} faces, {np.mean(counts):.1f} hidden points per face")
    if args.sheet:
        print(f"sheet: {contact_sheet(args.out, args.out / 'sheet.jpg')}")
    return 0

"""Large-pose training views (``models.tools.face_profiling``) as a crop cache, and a sheet to look at them.

``python -m models.training.pose_views --sheet docs/large_pose_views.png``: originals of a few
training faces beside their views at yaw -60/-45/-30/+30/+45/+60 (absolute targets, jaw points
red, the others green).

``python -m models.training.pose_views --build [--views N] [--crop-size S]``: ``N`` views of every
training image (``TRAIN_SETS``: 300w/afw, 300w/helen_train, ytf68; never HELEN test or the
validation faces) as canonical crops, the layout ``models.training.crop_cache`` uses (same
geometry: the canonical crop is aligned from the *view's* five keypoints, as the run-time
aligner would align it), so ``TrainingData(large_pose_fraction=...)`` mixes them in.

Which views (``sample_targets``): the face turns further the way it already looks (a face
within ``FRONTAL_YAW`` of frontal turns either way, by chance), to an absolute yaw drawn
uniformly from [max(|yaw| + ``MIN_TURN``, ``MIN_YAW``), ``MAX_YAW``], at most ``MAX_DELTA``
from where it was, pitch changed by up to ``PITCH_DELTA``. Turning a face back across
frontal would show the side the photo barely saw, which the warp can only stretch (see the
sheet's "reveal" tiles); 300W-LP likewise only profiles further.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.files import cache_dir
from models.align import transform_points
from models.datasets import TRAIN_SETS, list_annotated, resolve_dataset
from models.landmarks68 import JAW
from models.tools.face_profiling import FaceMesh3D, FitError, render_view, target_deltas
from models.training.crop_cache import CANON_SIZE, CROP_SIZE, CropSet, cache_geometry, canonical_matrix

FRONTAL_YAW = 10.0
MIN_TURN = 15.0
MIN_YAW = 30.0
MAX_YAW = 75.0
MAX_DELTA = 65.0
PITCH_DELTA = 10.0
DEFAULT_VIEWS = 2
CACHE_VERSION = 1
SHEET_YAWS = (-60, -45, -30, 30, 45, 60)
NAME = "large_pose"


def sample_targets(rng: np.random.Generator, yaw: float, count: int) -> list[tuple[float, float]]:
    """``count`` (yaw delta, pitch delta) pairs for a face at ``yaw`` (the module docstring's rule)."""
    out = []
    for _ in range(count):
        side = np.sign(yaw) if abs(yaw) >= FRONTAL_YAW else rng.choice([-1.0, 1.0])
        low = max(abs(yaw) + MIN_TURN, MIN_YAW)
        target = side * rng.uniform(min(low, MAX_YAW), MAX_YAW)
        delta = float(np.clip(target - yaw, -MAX_DELTA, MAX_DELTA))
        out.append((delta, float(rng.uniform(-PITCH_DELTA, PITCH_DELTA))))
    return out


def cache_folder(canon_size: int = CANON_SIZE, crop_size: int = CROP_SIZE) -> Path:
    return cache_dir() / "crops" / f"{NAME}_c{canon_size}_a{crop_size}_v{CACHE_VERSION}"


@dataclass
class BuildReport:
    images: int
    views: int
    failed: dict[str, int]  # per set: images Face Mesh failed on (no face, or not the annotated one)
    folder: Path


def build_views(sets: tuple[str, ...] = TRAIN_SETS, views: int = DEFAULT_VIEWS, canon_size: int = CANON_SIZE,
                crop_size: int = CROP_SIZE, seed: int = 0, limit: int = 0, progress: bool = True) -> BuildReport:
    """Render ``views`` views of every image of ``sets`` into the cache (``limit`` > 0: the first images only).

    ``views`` 0 only fits Face Mesh and counts its failures; the cache is not touched."""
    from tqdm import tqdm

    for name in sets:
        if "helen_test" in name or "validation" in name:
            raise ValueError(f"{name} is for testing or validation only: never make training views of it")
    items = [(name, item) for name in sets for item in list_annotated(resolve_dataset(name))[: limit or None]]
    folder = cache_folder(canon_size, crop_size)
    tmp = folder.with_name(folder.name + ".partial")
    failed = {name: 0 for name in sets}
    if views > 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(items) * views, canon_size, canon_size, 3))
        points = np.zeros((len(items) * views, 68, 2), np.float32)
    sources, yaws, deltas = [], [], []
    rng = np.random.default_rng(seed)
    n = 0
    with FaceMesh3D() as mesh:
        for name, item in tqdm(items, desc="large-pose views", disable=not progress, mininterval=10):
            image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"cannot decode image {item.image_path}")
            truth = item.load_points()
            try:
                fit = mesh.fit(image, truth)
            except FitError:
                failed[name] += 1
                continue
            for yaw_delta, pitch_delta in sample_targets(rng, fit.yaw, views):
                view = render_view(image, fit, yaw_delta, pitch_delta)
                m = canonical_matrix(view.points, canon_size, crop_size)
                images[n] = cv2.warpAffine(view.image, m, (canon_size, canon_size), flags=cv2.INTER_LINEAR,
                                           borderValue=0)
                points[n] = transform_points(view.points, m)
                sources.append(f"{name}/{item.image_path.name}")
                yaws.append(round(fit.yaw, 2))
                deltas.append([round(yaw_delta, 2), round(pitch_delta, 2)])
                n += 1
    if views == 0:  # a count of Face Mesh's failures only; the cache is left as it is
        return BuildReport(len(items), 0, failed, folder)
    images.flush()
    del images
    np.save(tmp / "points.npy", points[:n])
    meta = {"dataset": NAME, "canon_size": canon_size, "crop_size": crop_size, "version": CACHE_VERSION,
            "views_per_image": views, "seed": seed, "sets": list(sets), "count": n, "sources": sources,
            "source_yaw": yaws, "deltas": deltas, "failed": failed, "images": len(items)}
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return BuildReport(len(items), n, failed, folder)


def load_views(canon_size: int = CANON_SIZE, crop_size: int = CROP_SIZE) -> CropSet:
    """The large-pose view cache (``sources`` are ``SET/FILE`` names, several views per source)."""
    folder = cache_folder(canon_size, crop_size)
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(
            f"no large-pose views at {folder}: build them with "
            f"python -m models.training.pose_views --build --crop-size {crop_size}")
    meta = json.loads((folder / "meta.json").read_text())
    count = meta["count"]
    return CropSet(name=NAME, images=np.load(folder / "images.npy", mmap_mode="r")[:count],
                   points=np.load(folder / "points.npy"), sources=meta["sources"])


def _tile(image: np.ndarray, points: np.ndarray, label: str, size: int) -> np.ndarray:
    m = canonical_matrix(points, size, int(size * 0.6))
    tile = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderValue=0)
    p = transform_points(points, m)
    for i, (x, y) in enumerate(p):
        colour = (0, 0, 255) if i in JAW else (0, 255, 0)
        cv2.circle(tile, (int(round(x * 16)), int(round(y * 16))), 2 * 16, colour, -1, cv2.LINE_AA, 4)
    cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(path: Path, count: int = 6, seed: int = 1, size: int = 200) -> Path:
    """Originals beside views at ``SHEET_YAWS``; a view that turns the face back across frontal
    by more than ``MAX_DELTA`` (one the cache never makes) is labelled "reveal"."""
    rng = np.random.default_rng(seed)
    pool = [item for name in TRAIN_SETS for item in list_annotated(resolve_dataset(name))]
    rows = []
    with FaceMesh3D() as mesh:
        for index in rng.permutation(len(pool)):
            if len(rows) == count:
                break
            item = pool[index]
            image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
            truth = item.load_points()
            try:
                fit = mesh.fit(image, truth)
            except FitError:
                continue
            tiles = [_tile(image, truth, f"{item.image_path.stem[:14]} yaw {fit.yaw:+.0f}", size)]
            for yaw in SHEET_YAWS:
                yaw_delta, _ = target_deltas(fit, yaw)
                view = render_view(image, fit, yaw_delta)
                back = yaw * fit.yaw < 0 and abs(fit.yaw) >= FRONTAL_YAW  # across frontal, against its look
                reveal = " reveal" if abs(yaw_delta) > MAX_DELTA or back else ""
                tiles.append(_tile(view.image, view.points, f"{yaw:+d} (d {yaw_delta:+.0f}){reveal}", size))
            rows.append(np.hstack(tiles))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def check_views(count: int = 20, turns: tuple[float, ...] = (30.0, 45.0), dataset: str = "300w/helen_train") -> str:
    """How right the views' points are, on the first ``count`` faces of ``dataset`` (each turned
    further the way it looks): Face Mesh run afresh on the view against the view's 51 inner
    points (box-normalised NME; on the untouched photo against the ground truth for reference),
    and the far-side jaw points' distance inside the turned mesh's convex hull (eye distances;
    before the jaw rule and after)."""
    from scipy.spatial import ConvexHull

    from models.align import align_from_landmarks
    from models.landmarks68 import INNER_51, inter_ocular
    from models.mediapipe68 import MediaPipe68
    from models.tools.face_profiling import _rotation

    inner = list(INNER_51)

    def nme_box(p, t):
        return float(np.linalg.norm(p - t, axis=1).mean() / np.sqrt(np.prod(np.ptp(t, axis=0))))

    base, rows = [], {t: ([], [], [], 0) for t in turns}
    fits = 0
    with FaceMesh3D() as mesh, MediaPipe68() as model:
        for item in list_annotated(resolve_dataset(dataset))[:count]:
            image, truth = cv2.imread(str(item.image_path)), item.load_points()
            try:
                fit = mesh.fit(image, truth)
            except FitError:
                continue
            fits += 1
            (lm,) = model.predict([align_from_landmarks(image, truth, 256)])
            base.append(nme_box(lm.points[inner], truth[inner]))
            side = 1.0 if fit.yaw >= 0 else -1.0
            for turn in turns:
                view = render_view(image, fit, side * turn)
                (lm,) = model.predict([align_from_landmarks(view.image, view.points, 256)])
                errors, after, before, misses = rows[turn]
                if lm.mean_confidence > 0:
                    errors.append(nme_box(lm.points[inner], view.points[inner]))
                else:
                    misses += 1
                r = fit.roll.T @ _rotation(side * turn, 0.0) @ fit.roll
                hull = ConvexHull(((fit.vertices - fit.centre) @ r.T + fit.centre)[:, :2]).equations
                far = list(range(9, 14)) if side > 0 else list(range(3, 8))
                depth = lambda p: -(p @ hull[:, :2].T + hull[:, 2]).max(axis=1) / inter_ocular(truth)  # noqa: E731
                after.append(depth(view.points[far]).mean())
                before.append(depth(view.projected[far]).mean())
                rows[turn] = (errors, after, before, misses)
    lines = [f"{fits} of {count} faces of {dataset} fitted; Face Mesh vs ground truth on the photos, "
             f"inner 51, NME_box {np.mean(base):.4f}"]
    for turn, (errors, after, before, misses) in rows.items():
        lines.append(f"turned {turn:.0f} deg further: Face Mesh on the view vs the view's inner 51 points, "
                     f"NME_box mean "
                     f"{np.mean(errors):.4f} (max {np.max(errors):.4f}), Face Mesh found no face on {misses}; far-side "
                     f"jaw points (9-13 or 3-7) inside the turned mesh's hull by {np.mean(after):+.3f} eye distances "
                     f"after the jaw rule, {np.mean(before):+.3f} before")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.training.pose_views", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of views to this image file")
    parser.add_argument("--rows", type=int, default=6, help="faces on the sheet")
    parser.add_argument("--build", action="store_true", help="build the view cache of the training sets")
    parser.add_argument("--views", type=int, default=DEFAULT_VIEWS,
                        help="views per training image (0: only count the images Face Mesh fails on)")
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE, help="network input size the cache is for")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images of each set (a trial)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", type=int, metavar="N",
                        help="measure the views' points on the first N HELEN-train faces")
    args = parser.parse_args(argv)
    if not (args.sheet or args.build or args.check):
        parser.error("choose --sheet, --build and/or --check")
    if args.check:
        print(check_views(args.check))
    if args.sheet:
        print(f"wrote {contact_sheet(args.sheet, args.rows)}")
    if args.build:
        report = build_views(views=args.views, canon_size=cache_geometry(args.crop_size)[0], crop_size=args.crop_size,
                             seed=args.seed, limit=args.limit)
        print(f"{report.views} views of {report.images} images in {report.folder}; "
              f"Face Mesh failed on {sum(report.failed.values())} ({report.failed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

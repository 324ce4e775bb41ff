"""``python -m app eval300vw ROOT``: frame-by-frame accuracy, jitter and speed on 300-VW style clips.

ROOT holds clip folders (``ID/vid.avi`` + ``ID/annot/NNNNNN.pts``, or ``ID/imgs/`` +
``ID/annot/``), read through ``app.sources.Clip300VWSource``. Every frame goes
through the same ``Pipeline`` as the app, in tracking mode unless
``--detect-every-frame``. With ``--boxes gt`` the ground truth's five points replace
the detector on every annotated frame (the "oracle" protocol of some papers); the
report names the protocol that ran.

Per frame: NME_io over the 68 points and the 49 inner points (``landmarks68.INNER_49``)
for the landmarks the user sees (smoothed, unless ``--no-smooth``) and for the raw
ones. The face scored on a frame is the tracked face whose box overlaps the ground
truth's box most; no overlapping face is a miss (error infinity: a failure at every
threshold, nothing added to the AUC, left out of NME means: see ``models.metrics``).
Frames without annotation and frames on the ``--unreliable`` list are still tracked
but not scored; they are counted.

Jitter of the error: for two consecutive scored frames,
``mean_i || (p_t,i - g_t,i) - (p_t-1,i - g_t-1,i) || / io_t`` (io from the ground
truth of frame t); true motion, which moves p and g alike, costs nothing. On static
clips (g constant) it is plainly the landmarks' frame-to-frame movement.

Lag of the smoothing, in frames: the shift k that best aligns the shown (smoothed)
trajectory with the raw one, ``argmin_k sum_t mean_i ||s_t,i - r_i(t - k)||^2 / io_t^2``,
with r linearly interpolated between frames, k on a 0.05-frame grid in [-2, 6], over
frames whose 7 previous and 2 next frames are all scored. Pooled over clips by adding
their cost curves. A One Euro filter's lag depends on speed; this is the lag that
best explains the smoothed track, weighted by how much the face moves. The same
estimate against the ground truth (smoothed vs truth, raw vs truth) is kept as a check.

Output folder (default ``out/eval300vw/<root>/<model>-<boxes>-<mode>-<smoothing>``):
``clips/<ID>.csv`` (per frame), ``clips/<ID>.json`` (clip summary; its presence
with the same settings marks the clip done, so an interrupted run resumes),
``clips/<ID>.npz`` (ground truth, shown and raw points), ``frames.csv``, ``clips.csv``,
``categories.csv``, ``ced_<category>.png`` and ``report.md``.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from app.plots import plot_ced
from app.tracking import box_iou
from app.vw_splits import OTHER, SPLITS, TEST_CATEGORIES, category_of
from engines.files import atomic_write, atomic_writer
from models import metrics
from models.datasets import PROJECT_ROOT
from models.landmarks68 import FIVE_POINT_MASK, INNER_49, inter_ocular, keypoints_from_landmarks
from models.types import Detection

THRESHOLD = metrics.DEFAULT_THRESHOLD
DEFAULT_OUT = PROJECT_ROOT / "out" / "eval300vw"
LAG_GRID = np.round(np.arange(-2.0, 6.0001, 0.05), 2)
# frames of context the lag grid needs: r(t - k) interpolates frames t - floor(k) and t - floor(k) - 1
LAG_BEFORE, LAG_AFTER = math.floor(LAG_GRID.max()) + 1, -math.floor(LAG_GRID.min())
CACHE_VERSION = 2
OVERALL = "overall"  # the summary over every category (synthetic clips are category "all")

OK, MISS, NO_ANNOTATION, UNRELIABLE = "ok", "miss", "no_annotation", "unreliable"
FRAME_FIELDS = (
    "clip", "category", "frame", "status", "detector_ran", "faces",
    "nme68", "nme49", "nme68_raw", "nme49_raw", "jitter", "jitter_raw",
    "detect_ms", "pipeline_ms", "wall_ms", "cpu_ms",
)  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    """Everything that changes the predictions. Part of every cached clip result."""

    model: str = "mediapipe68"
    backend: str = "auto"
    detector: str = "blazeface"
    detector_model: str | None = None
    boxes: str = "tracker"  # "tracker" or "gt"
    smoothing: bool = True
    min_cutoff: float = 0.5
    beta: float = 20.0
    detect_every_frame: bool = False
    redetect_interval: int = 30
    max_faces: int = 4

    def __post_init__(self) -> None:
        if self.boxes not in ("tracker", "gt"):
            raise ValueError(f"--boxes must be 'tracker' or 'gt', got {self.boxes!r}")

    @property
    def tag(self) -> str:
        mode = "detect" if self.detect_every_frame else "track"
        return f"{self.model}-{self.boxes}-{mode}-{'smooth' if self.smoothing else 'nosmooth'}"

    def protocol(self) -> str:
        if self.boxes == "gt":
            boxes = (
                "boxes from the ground truth (oracle): its five points are given instead of the detector's"
                " on every annotated frame, the detector never runs"
            )
            if self.detect_every_frame:
                mode = "detection mode: every annotated frame aligned from the ground truth's five points"
            else:
                mode = (
                    "tracking mode: aligned from the previous frame's landmarks; the ground truth starts a"
                    " track where none overlaps it"
                )
        else:
            boxes = f"boxes from the {self.detector} detector"
            if self.detect_every_frame:
                mode = "detection mode: every frame aligned from a fresh detection"
            else:
                every = f"every {self.redetect_interval} frames and " if self.redetect_interval > 0 else ""
                mode = (
                    f"tracking mode: aligned from the previous frame's landmarks, detector {every}"
                    "when a track is lost"
                )
        smooth = (
            f"One Euro smoothing on (min_cutoff {self.min_cutoff} Hz, beta {self.beta})"
            if self.smoothing
            else "smoothing off"
        )
        return f"{boxes}; {mode}; {smooth}"

    def pipeline_options(self):
        from app.pipeline import PipelineOptions
        from app.smoothing import OneEuroParams
        from app.tracking import TrackerOptions

        return PipelineOptions(
            tracker=TrackerOptions(
                redetect_interval=self.redetect_interval,
                detect_every_frame=self.detect_every_frame,
                max_faces=self.max_faces,
            ),
            smoothing=self.smoothing,
            one_euro=OneEuroParams(min_cutoff=self.min_cutoff, beta=self.beta),
        )


@dataclass
class ClipResult:
    """One clip's summary (what ``clips/<ID>.json`` holds)."""

    clip: str
    category: str
    folder: str
    frames: int = 0  # frames processed
    scored: int = 0  # annotated, reliable frames (misses included)
    misses: int = 0
    no_annotation: int = 0
    unreliable: int = 0
    nme68: float = math.nan  # means over the found faces
    nme49: float = math.nan
    nme68_raw: float = math.nan
    nme49_raw: float = math.nan
    jitter: float = math.nan  # mean over consecutive scored pairs
    jitter_raw: float = math.nan
    jitter_pairs: int = 0
    lag_frames: float | None = None
    detector_runs: int = 0
    detect_ms: float = 0.0  # mean per frame (amortised over frames without a detector run)
    pipeline_ms: float = 0.0  # mean per frame, the pipeline's own stage timings
    wall_ms: float = 0.0  # mean per frame, wall clock around Pipeline.process
    cpu_ms: float = 0.0  # mean per frame, CPU time of this process (all threads) around Pipeline.process
    problems: list[str] = field(default_factory=list)  # annotation problems, with file names
    error: str | None = None  # the clip could not be evaluated at all
    lag_cost: dict = field(default_factory=dict)  # name -> (cost sums per LAG_GRID value, usable frames)
    unreliable_frames: list[int] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)
    version: int = CACHE_VERSION


@dataclass
class CategorySummary:
    category: str
    clips: int
    frames: int
    scored: int
    misses: int
    no_annotation: int
    unreliable: int
    nme68: float
    nme49: float
    auc68: float
    fr68: float
    auc49: float
    fr49: float
    nme68_raw: float
    auc68_raw: float
    fr68_raw: float
    jitter: float
    jitter_raw: float
    lag_frames: float | None
    detector_runs: int
    detect_ms: float
    pipeline_ms: float
    wall_ms: float
    wall_ms_median: float
    cpu_ms: float


@dataclass
class EvalReport:
    config: EvalConfig
    root: Path
    out_dir: Path
    clips: list[ClipResult]
    categories: list[CategorySummary]
    missing_clips: list[str]
    resumed: list[str]
    report_path: Path


# --------------------------------------------------------------------------- clips


def looks_like_clip(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in ("vid.avi", "imgs", "annot"))


def find_clips(root: Path) -> list[Path]:
    """The clip folders under ``root`` (or ``root`` itself when it is one clip), sorted by name."""
    if not root.is_dir():
        raise FileNotFoundError(f"300-VW root folder not found: {root}")
    if looks_like_clip(root) and not any(looks_like_clip(p) for p in root.iterdir() if p.is_dir()):
        return [root]
    return sorted((p for p in root.iterdir() if looks_like_clip(p)), key=lambda p: p.name)


def select_clips(
    found: Sequence[Path], ids: Sequence[str] | None, category: str | None
) -> tuple[list[Path], list[str]]:
    """Filter by ``--clips`` and ``--category``; also returns the asked-for ids that are not in ROOT."""
    by_name = {p.name: p for p in found}
    wanted: list[str] | None = None
    if ids:
        wanted = list(dict.fromkeys(ids))
    if category:
        if category not in SPLITS:
            raise ValueError(f"unknown category {category!r}; use one of {', '.join(SPLITS)}")
        members = [c for c in SPLITS[category] if wanted is None or c in wanted]
        wanted = members
    if wanted is None:
        return list(found), []
    return [by_name[c] for c in wanted if c in by_name], [c for c in wanted if c not in by_name]


def clip_signature(folder: Path) -> dict:
    """Cheap identity of a clip's files, so a cached result is not reused for changed data."""
    sig: dict = {}
    video = folder / "vid.avi"
    if video.is_file():
        st = video.stat()
        sig["video"] = [st.st_size, st.st_mtime_ns]
    for sub in ("annot", "imgs"):
        d = folder / sub
        if d.is_dir():
            files = sorted(d.iterdir())
            sig[sub] = [len(files), max((f.stat().st_mtime_ns for f in files), default=0)]
    return sig


def read_unreliable(path: Path | None) -> dict[str, set[int]]:
    """The ``--unreliable`` list: lines ``CLIP FRAME [FRAME ...]``, a frame may be a range ``A-B``.

    Frame numbers are the annotation numbers (``000123.pts`` is frame 123). ``#`` starts a comment.
    """
    if path is None:
        return {}
    table: dict[str, set[int]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split("#", 1)[0].replace(",", " ").split()
        if not parts:
            continue
        clip, frames = parts[0], table.setdefault(parts[0], set())
        if len(parts) == 1:
            raise ValueError(f"{path}:{number}: clip {clip} lists no frames")
        for item in parts[1:]:
            try:
                lo, _, hi = item.partition("-")
                first, last = int(lo), int(hi or lo)
            except ValueError:
                raise ValueError(f"{path}:{number}: {item!r} is not a frame number or range A-B") from None
            frames.update(range(first, last + 1))
    return table


# --------------------------------------------------------------------------- per-frame measures


def detection_from_ground_truth(gt: np.ndarray) -> Detection:
    """A detector-like result from ground truth: its box and RetinaFace's five points."""
    keypoints = keypoints_from_landmarks(gt)
    keypoints[~FIVE_POINT_MASK] = np.nan
    box = np.concatenate([gt.min(axis=0), gt.max(axis=0)])
    return Detection(box=box, score=1.0, keypoints=keypoints, keypoint_mask=FIVE_POINT_MASK.copy())


def pick_face(faces, gt: np.ndarray):
    """The face whose landmark box overlaps the ground truth's box most; None if none overlaps."""
    gt_box = np.concatenate([gt.min(axis=0), gt.max(axis=0)])
    best, best_iou = None, 0.0
    for face in faces:
        iou = box_iou(face.raw_landmarks.box(), gt_box)
        if iou > best_iou:
            best, best_iou = face, iou
    return best


def error_jitter(pred: np.ndarray, gt: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per pair (t-1, t): mean over points of the change of the error vector, / io of frame t.

    ``pred``, ``gt``: (T, 68, 2); ``pairs``: (T,) bool, True where frames t-1 and t are both scored.
    Returns (T,) with NaN where ``pairs`` is False.
    """
    out = np.full(len(pred), np.nan)
    idx = np.flatnonzero(pairs)
    if idx.size:
        err = pred - gt
        change = np.linalg.norm(err[idx] - err[idx - 1], axis=2).mean(axis=1)
        io = np.array([inter_ocular(gt[i]) for i in idx])
        out[idx] = change / io
    return out


def lag_cost(shown: np.ndarray, reference: np.ndarray, scored: np.ndarray, io: np.ndarray) -> tuple[list, int]:
    """Sum over usable frames of mean_i ||shown_t - reference(t - k)||^2 / io_t^2 for k in LAG_GRID.

    Usable: frames whose LAG_BEFORE previous and LAG_AFTER next frames are all scored.
    Returns (sums per k, number of usable frames).
    """
    n = len(shown)
    usable = np.zeros(n, bool)
    for t in range(LAG_BEFORE, n - LAG_AFTER):
        usable[t] = scored[t - LAG_BEFORE : t + LAG_AFTER + 1].all()
    ts = np.flatnonzero(usable)
    if ts.size == 0:
        return [0.0] * len(LAG_GRID), 0
    sums = []
    for k in LAG_GRID:
        base = math.floor(k)
        f = k - base
        a, b = reference[ts - base], reference[ts - base - 1]
        shifted = (1 - f) * a + f * b
        d2 = ((shown[ts] - shifted) ** 2).sum(axis=2).mean(axis=1) / io[ts] ** 2
        sums.append(float(d2.sum()))
    return sums, int(ts.size)


def lag_from_costs(costs: Iterable[tuple[Sequence[float], int]]) -> float | None:
    """The best shift of pooled cost curves; None when no frame could be used."""
    total, count = np.zeros(len(LAG_GRID)), 0
    for sums, n in costs:
        if n:
            total += np.asarray(sums)
            count += n
    if count == 0:
        return None
    return float(LAG_GRID[int(np.argmin(total))])


# --------------------------------------------------------------------------- one clip


def _mean(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(v.mean()) if v.size else math.nan


def evaluate_clip(pipeline, folder: Path, config: EvalConfig, unreliable: set[int], progress: bool = False):
    """Run one clip through ``pipeline``; returns (ClipResult, per-frame rows, arrays for the .npz)."""
    from tqdm import tqdm

    from app.sources import Clip300VWSource, SourceError

    clip = folder.name
    result = ClipResult(clip=clip, category=category_of(clip), folder=str(folder))
    result.unreliable_frames = sorted(unreliable)
    rows: list[dict] = []
    numbers, gts, shown, raws, status = [], [], [], [], []
    pipeline.reset()
    source = None
    try:
        source = Clip300VWSource(folder)
        frames = tqdm(source, total=source.frame_count, desc=clip, unit="frame", leave=False, disable=not progress)
        for frame in frames:
            gt = frame.ground_truth
            number = source.frame_number(frame.index)  # 1-based, as in the annotation file names
            detections = None
            if config.boxes == "gt":
                detections = [] if gt is None else [detection_from_ground_truth(gt)]
            start, cpu_start = time.perf_counter(), time.process_time()
            out = pipeline.process(frame, detections=detections)
            wall = (time.perf_counter() - start) * 1000.0
            cpu = (time.process_time() - cpu_start) * 1000.0
            row = {
                "clip": clip, "category": result.category, "frame": number, "detector_ran": int(out.detector_ran),
                "faces": len(out.faces), "nme68": "", "nme49": "", "nme68_raw": "", "nme49_raw": "",
                "jitter": "", "jitter_raw": "", "detect_ms": round(out.timings.detect, 3),
                "pipeline_ms": round(out.timings.total, 3), "wall_ms": round(wall, 3), "cpu_ms": round(cpu, 3),
            }  # fmt: skip
            nan68 = np.full((68, 2), np.nan)
            face = None
            if gt is None:
                row["status"] = NO_ANNOTATION
            elif number in unreliable:
                row["status"] = UNRELIABLE
            else:
                face = pick_face(out.faces, gt)
                row["status"] = OK if face is not None else MISS
                if face is None:
                    for key in ("nme68", "nme49", "nme68_raw", "nme49_raw"):
                        row[key] = metrics.MISS
                else:
                    p, r = face.landmarks.points, face.raw_landmarks.points
                    row["nme68"] = metrics.nme(p, gt)
                    row["nme49"] = metrics.nme(p, gt, indices=INNER_49)
                    row["nme68_raw"] = metrics.nme(r, gt)
                    row["nme49_raw"] = metrics.nme(r, gt, indices=INNER_49)
            rows.append(row)
            numbers.append(number)
            status.append(row["status"])
            gts.append(gt if gt is not None else nan68)
            shown.append(face.landmarks.points if face is not None else nan68)
            raws.append(face.raw_landmarks.points if face is not None else nan68)
    except (SourceError, OSError) as exc:  # a broken clip is reported by name; the run goes on
        failure = f"{type(exc).__name__}: {exc}"
    else:
        failure = None
    finally:
        if source is not None:
            result.problems = [str(p) for p in getattr(source, "annotation_problems", [])]
            source.close()
    if failure is not None:
        if rows:  # e.g. a truncated video: the frames before the break still count
            result.problems.append(f"reading stopped after {len(rows)} frames: {failure}")
        else:
            result.error = failure
    if not rows and result.error is None:
        result.error = "the clip has no frames"
    arrays = _summarise(result, rows, np.array(numbers, int), gts, shown, raws, status)
    return result, rows, arrays


def build_eval_pipeline(config: EvalConfig, say=print):
    """The app's pipeline for ``config``; ``dlib68`` (the peer model) is built directly while the
    model registry does not list it."""
    from app.pipeline import Pipeline, build_pipeline
    from models.registry import UnknownModelError

    try:
        return build_pipeline(
            model=config.model,
            backend=config.backend,
            detector=config.detector,
            detector_model=config.detector_model,
            options=config.pipeline_options(),
            on_message=say,
        )
    except UnknownModelError:
        if config.model != "dlib68":
            raise
    from models.detectors import create_detector
    from models.dlib68 import Dlib68Model

    detector = create_detector(config.detector, model_path=config.detector_model)
    try:
        return Pipeline(detector, Dlib68Model(), config.pipeline_options())
    except BaseException:
        detector.close()
        raise


def warm_up(pipeline, folder: Path) -> None:
    """Run the clip's first frame once (then forget it), so that model loading and first-call
    set-up are not timed as part of the first clip."""
    from app.sources import Clip300VWSource, SourceError

    try:
        with Clip300VWSource(folder) as source:
            frame = source.read()
    except (SourceError, OSError, ValueError):
        return  # the clip's own run reports the problem
    if frame is not None:
        pipeline.process(frame)
        pipeline.process(frame)
    pipeline.reset()


def _summarise(result: ClipResult, rows, numbers, gts, shown, raws, status) -> dict:
    n = len(rows)
    status = np.array(status, dtype=object)
    result.frames = n
    result.no_annotation = int((status == NO_ANNOTATION).sum())
    result.unreliable = int((status == UNRELIABLE).sum())
    result.misses = int((status == MISS).sum())
    result.scored = int(((status == OK) | (status == MISS)).sum())
    if n == 0:
        return {}
    gt, p, r = np.stack(gts), np.stack(shown), np.stack(raws)
    ok = status == OK
    consecutive = np.zeros(n, bool)
    consecutive[1:] = (numbers[1:] == numbers[:-1] + 1) & ok[1:] & ok[:-1]
    jit = error_jitter(p, gt, consecutive)
    jit_raw = error_jitter(r, gt, consecutive)
    for i in np.flatnonzero(consecutive):
        rows[i]["jitter"], rows[i]["jitter_raw"] = float(jit[i]), float(jit_raw[i])
    result.jitter, result.jitter_raw, result.jitter_pairs = _mean(jit), _mean(jit_raw), int(consecutive.sum())
    for key in ("nme68", "nme49", "nme68_raw", "nme49_raw"):
        setattr(result, key, _mean(np.array([row[key] for row in rows if row[key] != ""], float)))
    # lag needs frames numbered consecutively: place them on the full number line
    span = numbers.max() - numbers.min() + 1
    at = numbers - numbers.min()
    line = {name: np.full((span, 68, 2), np.nan) for name in ("gt", "p", "r")}
    line["gt"][at], line["p"][at], line["r"][at] = gt, p, r
    scored_line = np.zeros(span, bool)
    scored_line[at] = ok
    io_line = np.ones(span)
    io_line[at[ok]] = [inter_ocular(g) for g in gt[ok]]
    result.lag_cost = {
        "shown_vs_raw": lag_cost(line["p"], line["r"], scored_line, io_line),
        "shown_vs_gt": lag_cost(line["p"], line["gt"], scored_line, io_line),
        "raw_vs_gt": lag_cost(line["r"], line["gt"], scored_line, io_line),
    }
    result.lag_frames = lag_from_costs([result.lag_cost["shown_vs_raw"]])
    detect = np.array([row["detect_ms"] for row in rows], float)
    result.detector_runs = int(sum(row["detector_ran"] for row in rows))
    result.detect_ms = float(detect.mean())
    result.pipeline_ms = float(np.mean([row["pipeline_ms"] for row in rows]))
    result.wall_ms = float(np.mean([row["wall_ms"] for row in rows]))
    result.cpu_ms = float(np.mean([row["cpu_ms"] for row in rows]))
    return {"frame": numbers, "status": status.astype(str), "gt": gt, "shown": p, "raw": r}


# --------------------------------------------------------------------------- cache


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value):
    if value is None:
        return math.nan
    return value


def save_clip(clip_dir: Path, result: ClipResult, rows: list[dict], arrays: dict) -> None:
    clip_dir.mkdir(parents=True, exist_ok=True)
    stem = clip_dir / result.clip

    _write_csv(stem.with_suffix(".csv"), rows, FRAME_FIELDS)
    if arrays:
        with atomic_writer(stem.with_suffix(".npz")) as handle:
            np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    # the .json is written last: its presence marks the clip as done
    summary = json.dumps(_jsonable(asdict(result)), indent=1)
    atomic_write(stem.with_suffix(".json"), summary)


_FLOAT_FIELDS = ("nme68", "nme49", "nme68_raw", "nme49_raw", "jitter", "jitter_raw")


def load_clip(clip_dir: Path, clip: str, config: EvalConfig, signature: dict, unreliable: set[int]):
    """A finished clip's cached result and rows, or None when absent or made differently."""
    stem = clip_dir / clip
    try:
        data = json.loads(stem.with_suffix(".json").read_text())
        with stem.with_suffix(".csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError):
        return None
    if (
        data.get("version") != CACHE_VERSION
        or data.get("config") != asdict(config)
        or data.get("signature") != json.loads(json.dumps(signature))
        or data.get("unreliable_frames") != sorted(unreliable)
    ):
        return None
    for key in _FLOAT_FIELDS + ("wall_ms", "pipeline_ms", "detect_ms", "cpu_ms"):
        data[key] = _from_json(data.get(key))
    result = ClipResult(**data)
    for row in rows:
        for key in _FLOAT_FIELDS:
            row[key] = float(row[key]) if row[key] != "" else ""
        for key in ("frame", "detector_ran", "faces"):
            row[key] = int(row[key])
        for key in ("detect_ms", "pipeline_ms", "wall_ms", "cpu_ms"):
            row[key] = float(row[key])
    return result, rows


# --------------------------------------------------------------------------- summaries and report


def summarise_category(name: str, clips: list[ClipResult], rows: list[dict]) -> CategorySummary:
    scored = [r for r in rows if r["status"] in (OK, MISS)]
    e68 = np.array([r["nme68"] for r in scored], float)
    e49 = np.array([r["nme49"] for r in scored], float)
    e68_raw = np.array([r["nme68_raw"] for r in scored], float)
    jit = np.array([r["jitter"] for r in rows if r["jitter"] != ""], float)
    jit_raw = np.array([r["jitter_raw"] for r in rows if r["jitter_raw"] != ""], float)
    has = e68.size > 0
    n = max(len(rows), 1)
    return CategorySummary(
        category=name,
        clips=len(clips),
        frames=len(rows),
        scored=len(scored),
        misses=metrics.count_misses(e68) if has else 0,
        no_annotation=sum(c.no_annotation for c in clips),
        unreliable=sum(c.unreliable for c in clips),
        nme68=metrics.mean_nme(e68) if has else math.nan,
        nme49=metrics.mean_nme(e49) if has else math.nan,
        auc68=metrics.auc(e68, THRESHOLD) if has else math.nan,
        fr68=metrics.failure_rate(e68, THRESHOLD) if has else math.nan,
        auc49=metrics.auc(e49, THRESHOLD) if has else math.nan,
        fr49=metrics.failure_rate(e49, THRESHOLD) if has else math.nan,
        nme68_raw=metrics.mean_nme(e68_raw) if has else math.nan,
        auc68_raw=metrics.auc(e68_raw, THRESHOLD) if has else math.nan,
        fr68_raw=metrics.failure_rate(e68_raw, THRESHOLD) if has else math.nan,
        jitter=float(jit.mean()) if jit.size else math.nan,
        jitter_raw=float(jit_raw.mean()) if jit_raw.size else math.nan,
        lag_frames=lag_from_costs(c.lag_cost.get("shown_vs_raw", ([], 0)) for c in clips),
        detector_runs=sum(int(r["detector_ran"]) for r in rows),
        detect_ms=sum(float(r["detect_ms"]) for r in rows) / n,
        pipeline_ms=sum(float(r["pipeline_ms"]) for r in rows) / n,
        wall_ms=sum(float(r["wall_ms"]) for r in rows) / n,
        wall_ms_median=float(np.median([float(r["wall_ms"]) for r in rows])) if rows else math.nan,
        cpu_ms=sum(float(r["cpu_ms"]) for r in rows) / n,
    )


def _pct(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{100 * x:.{digits}f}"


def _num(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def write_report(report: EvalReport, command: str) -> Path:
    out = report.out_dir
    cfg = report.config
    lines = [
        f"# 300-VW style evaluation: {cfg.model}",
        "",
        f"- clips: `{report.root}` ({len(report.clips)} clips)",
        f"- protocol: {cfg.protocol()}",
        *([f"- command: `{command}`"] if command else []),
        f"- machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs),"
        f" Python {platform.python_version()}",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        "- NME: inter-ocular (outer eye corners), in % of it; means over the found faces; a miss counts as"
        f" a failure in AUC@{THRESHOLD} and FR@{THRESHOLD}.",
        "- jitter: mean frame-to-frame change of the error vector, % of inter-ocular (see `app/eval300vw.py`);"
        " *shown* = the landmarks the user sees, *raw* = before smoothing.",
        "- lag: the shift (frames) that best aligns the shown track with the raw one, pooled over clips;"
        " meaningful on moving clips only (on a still face there is no motion to align).",
    ]
    if report.resumed:
        lines.append(f"- {len(report.resumed)} clips were taken from earlier runs into this folder (same settings)")
    lines += ["", "## Per category", ""]
    lines.append(
        "| category | clips | frames | scored | misses | no annot. | unreliable | NME68 % | NME49 % "
        f"| AUC@{THRESHOLD} (68) | FR@{THRESHOLD} (68) % | AUC@{THRESHOLD} (49) | FR@{THRESHOLD} (49) % "
        f"| NME68 raw % | AUC@{THRESHOLD} (68 raw) | FR@{THRESHOLD} (68 raw) % | jitter shown % | jitter raw % "
        "| lag (frames) |"
    )
    lines.append("|" + "---|" * 19)
    for s in report.categories:
        lines.append(
            f"| {s.category} | {s.clips} | {s.frames} | {s.scored} | {s.misses} | {s.no_annotation} | {s.unreliable} "
            f"| {_pct(s.nme68)} | {_pct(s.nme49)} | {_num(s.auc68, 4)} | {_pct(s.fr68)} | {_num(s.auc49, 4)} "
            f"| {_pct(s.fr49)} | {_pct(s.nme68_raw)} | {_num(s.auc68_raw, 4)} | {_pct(s.fr68_raw)} "
            f"| {_pct(s.jitter, 3)} | {_pct(s.jitter_raw, 3)} "
            f"| {_num(s.lag_frames)} |"
        )
    lines += [
        "",
        "## Speed (ms per frame, means over all frames)",
        "",
        "*detect*: the detector's time, amortised over all frames; *pipeline*: the sum of the pipeline's"
        " stage timings; *wall*: wall clock around `Pipeline.process`; *CPU*: this process's CPU time"
        " (all threads) around it, which depends less on other load on a shared machine.",
        "",
        "| category | frames | detector runs | detect ms/frame | pipeline ms/frame | wall ms/frame | fps (wall) "
        "| median wall ms | CPU ms/frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.categories:
        fps = 1000.0 / s.wall_ms if s.wall_ms > 0 else math.nan
        lines.append(
            f"| {s.category} | {s.frames} | {s.detector_runs} | {_num(s.detect_ms)} | {_num(s.pipeline_ms)} "
            f"| {_num(s.wall_ms)} | {_num(fps, 1)} | {_num(s.wall_ms_median)} | {_num(s.cpu_ms)} |"
        )
    lines += ["", "## Per clip", ""]
    lines.append(
        "| clip | category | frames | scored | misses | no annot. | unreliable | NME68 % | NME49 % "
        "| jitter shown % | jitter raw % | lag | detector runs | wall ms/frame | notes |"
    )
    lines.append("|" + "---|" * 15)
    for c in report.clips:
        notes = c.error or (f"{len(c.problems)} annotation problems" if c.problems else "")
        lines.append(
            f"| {c.clip} | {c.category} | {c.frames} | {c.scored} | {c.misses} | {c.no_annotation} | {c.unreliable} "
            f"| {_pct(c.nme68)} | {_pct(c.nme49)} | {_pct(c.jitter, 3)} | {_pct(c.jitter_raw, 3)} "
            f"| {_num(c.lag_frames)} | {c.detector_runs} | {_num(c.wall_ms)} | {notes} |"
        )
    problems = [(c.clip, p) for c in report.clips for p in c.problems]
    errors = [(c.clip, c.error) for c in report.clips if c.error]
    if problems or errors or report.missing_clips:
        lines += ["", "## Problems", ""]
        for clip in report.missing_clips:
            lines.append(f"- {clip}: asked for, but not in `{report.root}`")
        for clip, error in errors:
            lines.append(f"- {clip}: not evaluated: {error}")
        for clip, problem in problems:
            lines.append(f"- {clip}: {problem}")
    plots = sorted(out.glob("ced_*.png"))
    if plots:
        lines += ["", "## CED", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = out / "report.md"
    atomic_write(path, "\n".join(lines) + "\n")
    return path


def _write_csv(path: Path, rows: list[dict], fields: Sequence[str]) -> None:
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- the run


def default_out_dir(root: Path, config: EvalConfig) -> Path:
    return DEFAULT_OUT / Path(root).resolve().name / config.tag


def evaluate(
    root: str | Path,
    config: EvalConfig | None = None,
    out_dir: str | Path | None = None,
    clips: Sequence[str] | None = None,
    category: str | None = None,
    unreliable_file: str | Path | None = None,
    progress: bool = False,
    pipeline=None,
    command: str = "",
    say=print,
) -> EvalReport:
    """Evaluate every (selected) clip under ``root``; finished clips in ``out_dir`` are not run again.

    ``pipeline``: an existing ``app.pipeline.Pipeline`` running ``config.model`` (its
    options are set from ``config``); by default one is built when a clip needs running.
    """
    from tqdm import tqdm

    config = config or EvalConfig()
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else default_out_dir(root, config)
    clip_dir = out / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    selected, missing = select_clips(find_clips(root), clips, category)
    if not selected:
        absent = f" (missing: {', '.join(missing)})" if missing else ""
        raise FileNotFoundError(f"no clips to evaluate in {root}{absent}")
    unreliable = read_unreliable(Path(unreliable_file) if unreliable_file else None)
    results: list[ClipResult] = []
    rows_by_clip: dict[str, list[dict]] = {}
    resumed: list[str] = []
    own_pipeline = None
    if pipeline is not None:
        pipeline.set_options(config.pipeline_options())
    try:
        for folder in tqdm(selected, desc=f"300-VW {config.tag}", unit="clip", disable=not progress):
            signature = clip_signature(folder)
            bad = unreliable.get(folder.name, set())
            cached = load_clip(clip_dir, folder.name, config, signature, bad)
            if cached is not None:
                result, rows = cached
                resumed.append(folder.name)
            else:
                if pipeline is None:
                    pipeline = own_pipeline = build_eval_pipeline(config, say)
                    warm_up(pipeline, folder)
                result, rows, arrays = evaluate_clip(pipeline, folder, config, bad, progress=progress)
                result.config, result.signature = asdict(config), signature
                if result.error is None:
                    save_clip(clip_dir, result, rows, arrays)
                else:
                    say(f"{folder.name}: not evaluated: {result.error}")
            if result.problems and cached is None:
                say(f"{folder.name}: {len(result.problems)} annotation problem(s), first: {result.problems[0]}")
            results.append(result)
            rows_by_clip[result.clip] = rows
    finally:
        if own_pipeline is not None:
            own_pipeline.close()

    evaluated = [c for c in results if c.error is None]
    groups: dict[str, list[ClipResult]] = {}
    for c in evaluated:
        groups.setdefault(c.category, []).append(c)
    order = [k for k in ("train", *TEST_CATEGORIES, OTHER) if k in groups]
    summaries = [summarise_category(k, groups[k], [r for c in groups[k] for r in rows_by_clip[c.clip]]) for k in order]
    if len(order) > 1:
        summaries.append(summarise_category(OVERALL, evaluated, [r for c in evaluated for r in rows_by_clip[c.clip]]))
    for s in summaries:
        rows = [r for c in evaluated if s.category in (OVERALL, c.category) for r in rows_by_clip[c.clip]]
        scored = [r for r in rows if r["status"] in (OK, MISS)]
        if scored:
            plot_ced(
                {
                    "68 points": [r["nme68"] for r in scored],
                    "49 points": [r["nme49"] for r in scored],
                },
                out / f"ced_{s.category}.png",
                THRESHOLD,
                title=f"{cfg_title(config)}: {s.category}",
            )
    all_rows = [r for c in results for r in rows_by_clip.get(c.clip, [])]
    _write_csv(out / "frames.csv", all_rows, FRAME_FIELDS)
    clip_fields = [f for f in ClipResult.__dataclass_fields__ if f not in ("lag_cost", "config", "signature")]
    _write_csv(
        out / "clips.csv",
        [
            {**asdict(c), "problems": " | ".join(c.problems), "unreliable_frames": len(c.unreliable_frames)}
            for c in results
        ],
        clip_fields,
    )
    _write_csv(out / "categories.csv", [asdict(s) for s in summaries], list(CategorySummary.__dataclass_fields__))
    (out / "run.json").write_text(json.dumps({"config": asdict(config), "root": str(root)}, indent=1))
    report = EvalReport(config, root, out, results, summaries, missing, resumed, out / "report.md")
    write_report(report, command)
    return report


def cfg_title(config: EvalConfig) -> str:
    return f"{config.model}, {'GT boxes' if config.boxes == 'gt' else config.detector}, " + (
        "detect every frame" if config.detect_every_frame else "tracking"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.pipeline_args import add_pipeline_arguments

    parser.add_argument("root", type=Path, help="folder of 300-VW clips (ID/vid.avi or ID/imgs, + ID/annot)")
    parser.add_argument("--clips", default=None, help="comma-separated clip ids (default: every clip in ROOT)")
    parser.add_argument("--category", choices=sorted(SPLITS), default=None, help="only the clips of this 300-VW split")
    parser.add_argument("--boxes", choices=("tracker", "gt"), default="tracker",
                        help="tracker: the face detector finds the faces (default); gt: boxes from the ground truth")
    parser.add_argument("--unreliable", type=Path, default=None,
                        help="file of frames to leave out: lines 'CLIP FRAME [FRAME|A-B ...]'")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT}/ROOT/SETTINGS)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_pipeline_arguments(parser)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        model=args.model,
        backend=args.backend,
        detector=args.detector,
        detector_model=args.detector_model,
        boxes=args.boxes,
        smoothing=not args.no_smooth,
        min_cutoff=args.min_cutoff,
        beta=args.beta,
        detect_every_frame=args.detect_every_frame,
        redetect_interval=args.redetect_interval,
        max_faces=args.max_faces,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    ids = [c.strip() for c in args.clips.split(",") if c.strip()] if args.clips else None
    command = "python -m app " + " ".join(sys.argv[1:])
    report = evaluate(
        args.root,
        config,
        out_dir=args.out,
        clips=ids,
        category=args.category,
        unreliable_file=args.unreliable,
        progress=args.progress,
        command=command,
        say=lambda message: print(message, file=sys.stderr),
    )
    for s in report.categories:
        print(
            f"{s.category:>5}: {s.clips} clips, {s.scored} frames scored, {s.misses} misses, "
            f"NME68 {_pct(s.nme68)}%, NME49 {_pct(s.nme49)}%, AUC@{THRESHOLD} {_num(s.auc68, 4)}, "
            f"FR@{THRESHOLD} {_pct(s.fr68)}%, jitter {_pct(s.jitter, 3)}% (raw {_pct(s.jitter_raw, 3)}%), "
            f"lag {_num(s.lag_frames)} frames, {_num(s.wall_ms)} ms/frame (CPU {_num(s.cpu_ms)} ms)"
        )
    failed = [c.clip for c in report.clips if c.error]
    if failed:
        print(f"not evaluated: {', '.join(failed)} (see the report)", file=sys.stderr)
    print(f"report: {report.report_path}")
    return 0 if len(failed) < len(report.clips) else 1

"""One clip through the app's pipeline, scored frame by frame, and summarised."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from app.eval.vw300.config import EvalConfig
from app.eval.vw300.measures import detection_from_ground_truth, error_jitter, lag_cost, lag_from_costs
from app.tracking import pick_face
from app.eval.vw300.records import MISS, NO_ANNOTATION, OK, UNRELIABLE, ClipResult
from app.eval.vw_splits import category_of
from models import metrics
from models.landmarks68 import INNER_49, inter_ocular

def _mean(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(v.mean()) if v.size else math.nan


def evaluate_clip(pipeline, folder: Path, config: EvalConfig, unreliable: set[int], progress: bool = False,
                  warm_up: bool = False):
    """Run one clip through ``pipeline``; returns (ClipResult, per-frame rows, arrays for the .npz).

    ``warm_up``: first run the clip's first frame twice untimed (then forget it), so that model
    loading and first-call set-up are not timed as part of the clip.
    """
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
            if warm_up:
                pipeline.process(frame)
                pipeline.process(frame)
                pipeline.reset()
                warm_up = False
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
            # Frames that could not be read (a bad image, a damaged stretch of vid.avi) were skipped
            # by the source: named here with the annotation problems, counted in ``skipped``.
            result.problems = [str(p) for p in getattr(source, "annotation_problems", [])] + list(source.problems)
            result.skipped = len(source.skipped_frames)
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

    spec = config.pipeline_spec()
    try:
        return build_pipeline(spec, on_message=say)
    except UnknownModelError:
        if spec.model != "dlib68":
            raise
    from models.detectors import create_detector
    from models.dlib68 import Dlib68Model

    detector = create_detector(spec.detector, model_path=spec.detector_model)
    try:
        return Pipeline(detector, Dlib68Model(), spec.options)
    except BaseException:
        detector.close()
        raise


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

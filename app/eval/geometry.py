"""Measurements of the face geometry (docs/RESULTS.md, "Head pose" and "Blinks").

``python -m app.eval.geometry views``   yaw/pitch/roll on projected 3D faces at known poses, with noise
``python -m app.eval.geometry roll DIR`` roll against the exact in-plane rotation of synth-clips
``python -m app.eval.geometry plot CLIP --out docs/pose_track.png``  a clip's pose track
``python -m app.eval.geometry blinks``  detected blinks against the hand labels (tests/data/blinks.json)
``python -m app.eval.geometry tracked CLIP...``  the per-frame pose against a converged solve
``python -m app.eval.geometry bench``   milliseconds of pose + openness + blinks per face
``python -m app.eval.geometry lid-gap CLIP --frames 98-105 --models A,B``  each network's lid gap in
one shared crop per frame (why a network sees blinks or not)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.geometry.face import FaceGeometryTracker, GeometryOptions
from app.geometry.pose import PoseOptions, PoseSolver, camera_matrix, rotation_from_angles
from app.output_paths import OutputCollision, check_outputs
from app.smoothing import OneEuroParams
from app.sources.base import DEFAULT_FPS
from app.types import BlinkEvent, FaceGeometry
from models.datasets import PROJECT_ROOT, data_root
from models.landmarks68 import NUM_LANDMARKS, OUTER_EYE_CORNERS
from models.types import Landmarks

BLINK_LABELS = PROJECT_ROOT / "tests" / "data" / "blinks.json"
NME_NOISE = 0.034  # our measured NME_io (docs/RESULTS.md): mean point error over the inter-ocular distance


# --- synthetic views -------------------------------------------------------------------------------


def synthetic_views(
    count: int = 2000,
    max_yaw: float = 45.0,
    max_pitch: float = 45.0,
    max_roll: float = 30.0,
    noise: float = NME_NOISE,
    options: PoseOptions | None = None,
    seed: int = 0,
) -> dict:
    """Project the 3D face at random known poses on a 640x480 camera, add Gaussian point noise
    whose mean length is ``noise`` x the frontal inter-ocular distance, solve; errors per angle."""
    rng = np.random.default_rng(seed)
    camera = camera_matrix(640, 480)
    solver = PoseSolver(camera, options)
    model = solver.model
    eye_mm = float(np.linalg.norm(model[OUTER_EYE_CORNERS[0]] - model[OUTER_EYE_CORNERS[1]]))
    errors, missing = [], 0
    for _ in range(count):
        truth = (rng.uniform(-max_yaw, max_yaw), rng.uniform(-max_pitch, max_pitch), rng.uniform(-max_roll, max_roll))
        distance = rng.uniform(400.0, 1200.0)
        translation = np.array([rng.uniform(-0.2, 0.2) * distance, rng.uniform(-0.15, 0.15) * distance, distance])
        rvec = cv2.Rodrigues(rotation_from_angles(*truth))[0]
        points = cv2.projectPoints(model, rvec, translation, camera, None)[0].reshape(NUM_LANDMARKS, 2)
        eye_px = camera[0, 0] * eye_mm / distance
        sigma = noise * eye_px / math.sqrt(math.pi / 2)  # mean length of a 2-D Gaussian = sigma sqrt(pi/2)
        pose = solver.solve(points + rng.normal(0.0, sigma, points.shape))
        if pose is None:
            missing += 1
            continue
        diff = np.subtract((pose.yaw, pose.pitch, pose.roll), truth)
        errors.append((diff + 180.0) % 360.0 - 180.0)
    errors = np.abs(np.array(errors))
    return {
        "views": count,
        "no_pose": missing,
        "mae": dict(zip(("yaw", "pitch", "roll"), errors.mean(axis=0).round(3).tolist())),
        "p95": dict(zip(("yaw", "pitch", "roll"), np.percentile(errors, 95, axis=0).round(3).tolist())),
    }


# --- synth-clips roll ------------------------------------------------------------------------------


def _rotation_deg(source: np.ndarray, target: np.ndarray) -> float:
    """In-plane rotation (degrees, clockwise on screen) of the similarity taking source to target points."""
    a, b = source - source.mean(axis=0), target - target.mean(axis=0)
    return math.degrees(math.atan2(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]), np.sum(a * b)))


def clip_roll_errors(clip: Path, model: str | None = None) -> dict:
    """Run the tracker over one synth-clips clip; roll errors against the exact rotation.

    The clip's frames are one still rotated by a known angle per frame (recovered exactly from
    the ground truth: the similarity from frame 1's points to each frame's). The still's own head
    roll is unknown, so the truth is ``rotation + offset`` with the offset either the roll solved
    from frame 1's ground-truth points (``absolute``) or the clip's median difference (``centred``).
    """
    from app.pipeline import build_pipeline
    from app.sources import open_source

    rolls, truths, first_truth = [], [], None
    with build_pipeline(model) as pipeline, open_source(str(clip)) as source:
        for frame in source:
            result = pipeline.process(frame)
            if frame.ground_truth is None:
                continue
            if first_truth is None:
                first_truth = frame.ground_truth
                h, w = frame.image.shape[:2]
                gt_pose = PoseSolver(camera_matrix(w, h)).solve(first_truth)
            pose = result.faces[0].geometry.pose if result.faces and result.faces[0].geometry else None
            rolls.append(pose.roll if pose is not None else np.nan)
            truths.append(_rotation_deg(first_truth, frame.ground_truth))
    rolls, truths = np.array(rolls), np.array(truths)
    ok = np.isfinite(rolls)
    wrap = lambda d: (d + 180.0) % 360.0 - 180.0  # noqa: E731
    centred = wrap(rolls[ok] - truths[ok])
    centred = centred - np.median(centred)
    absolute = wrap(rolls[ok] - truths[ok] - gt_pose.roll)
    return {
        "clip": clip.name,
        "frames": len(rolls),
        "with_pose": int(ok.sum()),
        "rotation_range": [round(float(truths.min()), 1), round(float(truths.max()), 1)],
        "mae_absolute": float(np.abs(absolute).mean()),
        "mae_centred": float(np.abs(centred).mean()),
        "abs_errors": np.abs(absolute),
        "centred_errors": np.abs(centred),
    }


def synth_roll(folder: Path, model: str | None = None, limit: int | None = None) -> dict:
    clips = sorted(p for p in folder.iterdir() if (p / "annot").is_dir())[:limit]
    per_clip = [clip_roll_errors(clip, model) for clip in clips]
    absolute = np.concatenate([c["abs_errors"] for c in per_clip])
    centred = np.concatenate([c["centred_errors"] for c in per_clip])
    return {
        "clips": len(per_clip),
        "frames": sum(c["frames"] for c in per_clip),
        "with_pose": sum(c["with_pose"] for c in per_clip),
        "mae_absolute": round(float(absolute.mean()), 3),
        "mae_centred": round(float(centred.mean()), 3),
        "per_clip": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items() if not k.endswith("errors")}
            for c in per_clip
        ],
    }


# --- the per-frame solve against a converged one ------------------------------------------------


def tracked_vs_converged(clips: list[Path], model: str | None = None, steps: int = 30) -> dict:
    """How far the per-frame pose (a few refine steps from the previous frame's pose) is from a fully
    converged solve of the same frame (SQPnP, then ``steps`` refine steps), on real clips' landmarks;
    degrees of unsmoothed yaw / pitch / roll."""
    out = {}
    for clip in clips:
        landmarks = [lm for lm in track_clip(clip, model).landmarks if lm is not None]
        capture = cv2.VideoCapture(str(clip))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        capture.release()
        solver, reference = PoseSolver(camera_matrix(*size)), PoseSolver(camera_matrix(*size))
        previous, diffs = None, []
        for lm in landmarks:
            weights = solver.weights(lm.confidence)
            previous = solver.solve_weighted(lm.points, weights, previous)
            use = weights >= solver.options.min_weight
            ok, rvec, tvec = cv2.solvePnP(
                solver.model[use], lm.points[use], solver.camera, None, flags=cv2.SOLVEPNP_SQPNP
            )
            converged = None
            if ok:
                converged = reference.refine(lm.points, weights * use, rvec.reshape(3), tvec.reshape(3), steps)
            if previous is not None and converged is not None:
                diffs.append(np.subtract((previous.yaw, previous.pitch, previous.roll),
                                         (converged.yaw, converged.pitch, converged.roll)))
        diffs = np.abs(np.array(diffs))
        out[clip.name] = {
            "frames": len(diffs),
            "mean": dict(zip(("yaw", "pitch", "roll"), diffs.mean(axis=0).round(3).tolist())),
            "p95": dict(zip(("yaw", "pitch", "roll"), np.percentile(diffs, 95, axis=0).round(3).tolist())),
            "max": dict(zip(("yaw", "pitch", "roll"), diffs.max(axis=0).round(2).tolist())),
            "projections_per_frame": round(solver.projections / max(1, len(landmarks)), 2),
        }
    return out


# --- tracking a clip -------------------------------------------------------------------------------


@dataclass
class ClipGeometry:
    """Geometry of the first tracked face on every frame of a clip (None where no face)."""

    fps: float
    geometry: list[FaceGeometry | None]
    landmarks: list[Landmarks | None]  # raw landmarks, for the bench

    @property
    def blinks(self) -> list[BlinkEvent]:
        return [g.blink for g in self.geometry if g is not None and g.blink is not None]


def track_clip(path: str | Path, model: str | None = None, options: GeometryOptions | None = None) -> ClipGeometry:
    from app.pipeline import PipelineOptions, PipelineSpec, build_pipeline
    from app.sources import open_source

    geometry, landmarks = [], []
    spec = PipelineSpec(model=model, options=PipelineOptions(geometry=options or GeometryOptions()))
    with build_pipeline(spec) as pipeline:
        with open_source(str(path)) as source:
            fps = source.fps or DEFAULT_FPS
            for frame in source:
                faces = pipeline.process(frame).faces
                geometry.append(faces[0].geometry if faces else None)
                landmarks.append(faces[0].raw_landmarks if faces else None)
    return ClipGeometry(fps, geometry, landmarks)


def plot_pose_track(path: Path, out: Path, model: str | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clip = track_clip(path, model)
    t = np.arange(len(clip.geometry)) / clip.fps
    nan = float("nan")
    pose = np.array([(g.pose.yaw, g.pose.pitch, g.pose.roll) if g and g.pose else (nan,) * 3 for g in clip.geometry])
    ears = np.array([((g.ear_left + g.ear_right) / 2, g.mouth_opening) if g else (nan, nan) for g in clip.geometry])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(2, 1))
    for k, name in enumerate(("yaw", "pitch", "roll")):
        top.plot(t, pose[:, k], label=name)
    top.set_ylabel("degrees")
    top.axhline(0, color="grey", lw=0.5)
    top.legend(loc="upper right")
    top.set_title(f"{path.name}: head pose (yaw > 0 nose to image right, pitch > 0 up, roll > 0 clockwise)")
    bottom.plot(t, ears[:, 0], label="eye aspect ratio (mean)")
    bottom.plot(t, ears[:, 1], label="mouth opening")
    for blink in clip.blinks:
        bottom.axvspan(blink.start_frame / clip.fps, (blink.end_frame + 1) / clip.fps, color="red", alpha=0.25)
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    finite = pose[np.all(np.isfinite(pose), axis=1)]
    return {
        "frames": len(pose),
        "with_pose": len(finite),
        "range": {n: [round(float(finite[:, k].min()), 1), round(float(finite[:, k].max()), 1)] for k, n in
                  enumerate(("yaw", "pitch", "roll"))},
        "frame_to_frame_median": np.median(np.abs(np.diff(finite, axis=0)), axis=0).round(3).tolist(),
        "blinks": [(b.start_frame, b.end_frame) for b in clip.blinks],
        "out": str(out),
    }


# --- blinks ----------------------------------------------------------------------------------------


def load_blink_labels(path: Path = BLINK_LABELS) -> dict[str, list[tuple[int, int]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {clip: [tuple(b) for b in entry["blinks"]] for clip, entry in data["clips"].items()}


def match_blinks(
    detected: list[tuple[int, int]], labelled: list[tuple[int, int]], tolerance: int = 1
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives); an event matches a label it overlaps
    (within ``tolerance`` frames), each label at most once."""
    used = set()
    tp = 0
    for start, end in detected:
        for k, (a, b) in enumerate(labelled):
            if k not in used and start <= b + tolerance and end >= a - tolerance:
                used.add(k)
                tp += 1
                break
    return tp, len(detected) - tp, len(labelled) - tp


def _scores(counts: np.ndarray) -> dict:
    tp, fp, fn = (int(v) for v in counts)
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def evaluate_blinks(model: str | None = None, options: GeometryOptions | None = None) -> dict:
    """Detected blinks against the hand labels: all clips, and split into the clips the detector's
    defaults were chosen on (``tuned_on`` in the labels file) and the held-out rest."""
    tuned_on = set(json.loads(BLINK_LABELS.read_text(encoding="utf-8")).get("tuned_on", []))
    totals = {"tuned": np.zeros(3, dtype=int), "held_out": np.zeros(3, dtype=int)}
    per_clip = {}
    for clip, labels in load_blink_labels().items():
        blinks = track_clip(data_root() / "videos" / clip, model, options).blinks
        detected = [(b.start_frame, b.end_frame) for b in blinks]
        counts = match_blinks(detected, labels)
        totals["tuned" if clip in tuned_on else "held_out"] += counts
        per_clip[clip] = {"labelled": labels, "detected": detected, "tp_fp_fn": counts, "tuned_on": clip in tuned_on}
    return {
        **_scores(totals["tuned"] + totals["held_out"]),
        "tuned_clips": _scores(totals["tuned"]),
        "held_out_clips": _scores(totals["held_out"]),
        "per_clip": per_clip,
    }


# --- lid gaps -------------------------------------------------------------------------------------

LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))


def lid_gaps(clip: Path, frames: range, models: list[str], reference: str = "r18_ffld@fp32",
             crop_size: int = 192) -> dict:
    """Mean gap of the four upper/lower lid point pairs, in pixels of a ``crop_size`` crop aligned
    from ``reference``'s tracked points, for each of ``models`` on each of ``frames`` of ``clip``
    (every network sees the same crop, so the gaps compare)."""
    from app.eval.evaluate import load_model
    from app.synth.clips import read_video_frames
    from models.align import alignment_matrix, align_from_landmarks, transform_points
    from models.landmarks68 import FIVE_POINT_MASK, keypoints_from_landmarks

    tracked = track_clip(clip, reference).landmarks
    images = {k: image for k, image in read_video_frames(clip, list(frames)).items() if tracked[k] is not None}
    shared = {k: alignment_matrix(keypoints_from_landmarks(tracked[k].points), FIVE_POINT_MASK, crop_size)
              for k in images}  # frame -> the shared crop
    out = {name: {} for name in models}
    for name in models:
        with load_model(name) as model:
            for k, image in images.items():
                model_crop = align_from_landmarks(image, tracked[k].points, model.input_size)
                points = transform_points(model.predict([model_crop])[0].points, shared[k])
                out[name][k] = round(float(np.mean([np.linalg.norm(points[a] - points[b]) for a, b in LID_PAIRS])), 2)
    return {"clip": clip.name, "crop_size": crop_size, "gap_px": out}


def _frame_range(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


# --- speed -----------------------------------------------------------------------------------------


def bench(clip: Path, model: str | None = None, repeats: int = 30) -> dict:
    """Milliseconds per face of ``FaceGeometryTracker.update`` (pose + smoothing + openness + blinks)
    on the real landmarks of ``clip``, ``repeats`` passes: min and median of the wall time and of the
    process CPU time (the CPU time is less disturbed by other load on the machine)."""
    tracked = track_clip(clip, model)
    frames = [lm for lm in tracked.landmarks if lm is not None]
    image = cv2.VideoCapture(str(clip))
    size = (int(image.get(cv2.CAP_PROP_FRAME_WIDTH)), int(image.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    image.release()
    solver = PoseSolver(camera_matrix(*size))
    wall, cpu = [], []
    for _ in range(repeats):
        tracker = FaceGeometryTracker(GeometryOptions(), OneEuroParams())
        start, start_cpu = time.perf_counter(), time.process_time()
        for i, landmarks in enumerate(frames):
            tracker.update(landmarks, solver, i, i / tracked.fps)
        cpu.append((time.process_time() - start_cpu) * 1000.0 / len(frames))
        wall.append((time.perf_counter() - start) * 1000.0 / len(frames))
    return {
        "faces": len(frames),
        "passes": repeats,
        "ms_per_face_wall": {"min": round(min(wall), 4), "median": round(float(np.median(wall)), 4)},
        "ms_per_face_cpu": {"min": round(min(cpu), 4), "median": round(float(np.median(cpu)), 4)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.eval.geometry", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    views = sub.add_parser("views")
    views.add_argument("--count", type=int, default=2000)
    views.add_argument("--noise", type=float, default=NME_NOISE)
    views.add_argument("--jaw-weight", type=float, default=PoseOptions.jaw_weight)
    roll = sub.add_parser("roll")
    roll.add_argument("folder", type=Path)
    roll.add_argument("--limit", type=int, default=None)
    plot = sub.add_parser("plot")
    plot.add_argument("clip", type=Path)
    plot.add_argument("--out", type=Path, required=True)
    sub.add_parser("blinks")
    tracked = sub.add_parser("tracked")
    tracked.add_argument("clips", type=Path, nargs="+")
    bench_parser = sub.add_parser("bench")
    bench_parser.add_argument("clip", type=Path, nargs="?", default=None)
    for p in (roll, plot, sub.choices["blinks"], tracked, bench_parser):
        p.add_argument("--model", default=None)
    gaps = sub.add_parser("lid-gap")
    gaps.add_argument("clip", type=Path)
    gaps.add_argument("--frames", type=_frame_range, required=True, help="FIRST-LAST (0-based, inclusive)")
    gaps.add_argument("--models", required=True, help="comma-separated model names")
    args = parser.parse_args(argv)
    if args.command == "views":
        result = synthetic_views(args.count, noise=args.noise, options=PoseOptions(jaw_weight=args.jaw_weight))
    elif args.command == "roll":
        result = synth_roll(args.folder, args.model, args.limit)
    elif args.command == "plot":
        try:
            check_outputs([args.clip], {"--out": args.out})  # before anything is written
        except OutputCollision as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        result = plot_pose_track(args.clip, args.out, args.model)
    elif args.command == "blinks":
        result = evaluate_blinks(args.model)
    elif args.command == "tracked":
        result = tracked_vs_converged(args.clips, args.model)
    elif args.command == "lid-gap":
        result = lid_gaps(args.clip, args.frames, args.models.split(","))
    else:
        result = bench(args.clip or data_root() / "videos" / "talking_d12.mp4", args.model)
    print(json.dumps(result, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure the face detectors on the shared data.

    python -m models.tools.measure_detectors [--detectors blazeface,mtcnn,retinaface,yunet]

1. On ``300w/helen_test``: coverage (a detection whose centre lies inside the ground-truth
   landmark box; the detection whose centre is closest to the box centre is used), the
   error of every present keypoint slot against the slots derived from the ground truth,
   normalised by the inter-ocular distance (mean, median), and the detection time per image.
2. With ``--videos``: on the shared clips, the fraction of sampled frames with a face
   (talking clips, one face each) and the mean number of faces per frame (street clip).
3. Unless ``--skip-train``: on the training images only (AFW, HELEN-train, a sample of
   ytf68), each detector's keypoint error in template crop units (the frame -> crop
   similarity that aligns the ground truth's keypoints to ``models.align.TEMPLATE``,
   divided by the crop size): mean (systematic offset) and covariance per slot, written
   to ``models/detector_keypoint_error.json`` for the training code's keypoint jitter.
"""
from __future__ import annotations

import argparse
import ast
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.align import TEMPLATE, alignment_matrix
from models.boxes import match_face
from models.datasets import PROJECT_ROOT, TEST_SET, data_root, detector_model_dir, list_annotated
from models.detectors import DETECTOR_NAMES, MODEL_FILES, FaceDetector, create_detector
from models.landmarks68 import FIVE_POINT_MASK, KEYPOINT_NAMES, inter_ocular, keypoints_from_landmarks
from models.types import Detection

JSON_PATH = PROJECT_ROOT / "models" / "detector_keypoint_error.json"
TRAIN_FOLDERS = ("300w/afw", "300w/helen_train")
YTF_FOLDER = "ytf68"
TEMPLATE_EYE_DISTANCE = float(np.linalg.norm(TEMPLATE[1] - TEMPLATE[0]))


def match_detection(detections: list[Detection], points68: np.ndarray) -> Detection | None:
    """The detection that belongs to the annotated face (``models.boxes.match_face``), or None."""
    index = match_face([d.box for d in detections], points68)
    return None if index is None else detections[index]


def crop_unit_error(detection: Detection, points68: np.ndarray) -> np.ndarray:
    """(6, 2) detector keypoint minus ground-truth keypoint, in template crop units (NaN where absent)."""
    gt = keypoints_from_landmarks(points68)
    size = 1000
    linear = alignment_matrix(gt, FIVE_POINT_MASK, size)[:, :2] / size
    return (detection.keypoints - gt) @ linear.T


@dataclass
class TestStats:
    """Per-detector results on the test set."""

    images: int = 0
    found: int = 0
    faces_per_image: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    nme: dict[int, list[float]] = field(default_factory=dict)  # slot -> per-face error / inter-ocular


def open_detector(name: str, model_dir: Path, options: dict) -> FaceDetector:
    path = model_dir / MODEL_FILES[name] if name in MODEL_FILES else None
    return create_detector(name, path, **options.get(name, {}))


def measure_test_set(detector: FaceDetector, folder: Path) -> TestStats:
    stats = TestStats()
    items = list_annotated(folder)
    detector.detect(cv2.imread(str(items[0].image_path)))  # warm-up, not timed
    for item in tqdm(items, desc=f"{detector.name} {folder.name}", leave=False):
        image = cv2.imread(str(item.image_path))
        points = item.load_points()
        start = time.perf_counter()
        detections = detector.detect(image)
        stats.seconds.append(time.perf_counter() - start)
        stats.images += 1
        stats.faces_per_image.append(len(detections))
        match = match_detection(detections, points)
        if match is None:
            continue
        stats.found += 1
        gt = keypoints_from_landmarks(points)
        iod = inter_ocular(points)
        for slot in np.flatnonzero(match.keypoint_mask):
            stats.nme.setdefault(int(slot), []).append(float(np.linalg.norm(match.keypoints[slot] - gt[slot]) / iod))
    return stats


def print_test_table(results: dict[str, TestStats]) -> None:
    print(f"\n## Detectors on {TEST_SET}")
    print("| detector | found | coverage | faces/image | time mean ms | time median ms |")
    print("|---|---|---|---|---|---|")
    for name, s in results.items():
        ms = np.array(s.seconds) * 1000
        print(
            f"| {name} | {s.found}/{s.images} | {100 * s.found / s.images:.1f}% | {np.mean(s.faces_per_image):.2f} "
            f"| {ms.mean():.1f} | {np.median(ms):.1f} |"
        )
    print("\nKeypoint error / inter-ocular distance (outer eye corners), matched faces: mean / median")
    print("| detector | " + " | ".join(KEYPOINT_NAMES) + " |")
    print("|---|" + "---|" * len(KEYPOINT_NAMES))
    for name, s in results.items():
        cells = [
            f"{np.mean(s.nme[k]):.3f} / {np.median(s.nme[k]):.3f}" if k in s.nme else "-"
            for k in range(len(KEYPOINT_NAMES))
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def sample_video_frames(path: Path, frames: int) -> list[np.ndarray]:
    """About ``frames`` frames spread evenly over the clip."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video: {path}")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    every = max(1, total // frames)
    picked, index = [], 0
    while capture.grab():
        if index % every == 0:
            ok, frame = capture.retrieve()
            if ok:
                picked.append(frame)
        index += 1
    capture.release()
    return picked


def measure_videos(detectors: dict[str, FaceDetector], frames: int) -> None:
    print("\n## Detectors on the shared clips")
    print("| clip | frames | " + " | ".join(f"{n} with face / faces per frame" for n in detectors) + " |")
    print("|---|---|" + "---|" * len(detectors))
    clips = sorted((data_root() / "videos").glob("*.mp4"))
    totals = {n: [0, 0] for n in detectors}
    for clip in clips:
        sampled = sample_video_frames(clip, frames)
        cells = []
        for name, detector in detectors.items():
            counts = [len(detector.detect(f)) for f in sampled]
            with_face = sum(c > 0 for c in counts)
            if clip.name.startswith("talking"):
                totals[name][0] += with_face
                totals[name][1] += len(sampled)
            cells.append(f"{with_face}/{len(sampled)} / {np.mean(counts):.2f}")
        print(f"| {clip.name} | {len(sampled)} | " + " | ".join(cells) + " |")
    print(
        "| all talking clips | | "
        + " | ".join(f"{100 * a / max(b, 1):.1f}% frames with a face" for a, b in totals.values())
        + " |"
    )


def training_items(ytf_sample: int, seed: int) -> tuple[list, int]:
    """The AFW and HELEN-train images and a seeded sample of ytf68; also how many ytf68 images."""
    items = [item for folder in TRAIN_FOLDERS for item in list_annotated(data_root() / folder)]
    ytf = list_annotated(data_root() / YTF_FOLDER)
    sample = random.Random(seed).sample(ytf, min(ytf_sample, len(ytf)))
    return items + sample, len(sample)


def keypoint_error_summary(errors: np.ndarray, mask: np.ndarray, sets: list[str]) -> dict:
    """Per-slot mean / std / covariance (and the mean per image set) and the joint covariance
    of (N, 6, 2) crop-unit errors; ``sets`` names each face's image set."""
    slots = {}
    labels = np.array(sets)
    for k in np.flatnonzero(mask):
        e = errors[:, k]
        slots[KEYPOINT_NAMES[k]] = {
            "mean": np.round(e.mean(axis=0), 5).tolist(),
            "std": np.round(e.std(axis=0, ddof=1), 5).tolist(),
            "cov": np.round(np.cov(e.T), 7).tolist(),
            "median": np.round(np.median(e, axis=0), 5).tolist(),
            "mean_by_set": {name: np.round(e[labels == name].mean(axis=0), 5).tolist() for name in sorted(set(sets))},
        }
    flat = errors[:, mask].reshape(len(errors), -1)
    return {
        "slots": slots,
        "joint_order": [f"{KEYPOINT_NAMES[k]}.{axis}" for k in np.flatnonzero(mask) for axis in "xy"],
        "joint_cov": np.round(np.cov(flat.T), 7).tolist(),
    }


def measure_training_error(
    detectors: dict[str, FaceDetector], items: list, outlier: float
) -> dict[str, dict]:
    """Each detector's crop-unit keypoint error on the training images."""
    report = {}
    for name, detector in detectors.items():
        errors, sets, missed, outliers, mask = [], [], 0, 0, None
        for item in tqdm(items, desc=f"{name} training images", leave=False):
            points = item.load_points()
            match = match_detection(detector.detect(cv2.imread(str(item.image_path))), points)
            if match is None:
                missed += 1
                continue
            mask = match.keypoint_mask
            error = crop_unit_error(match, points)
            if np.nanmax(np.linalg.norm(error, axis=1)) > outlier:
                outliers += 1
                continue
            errors.append(error)
            sets.append(item.image_path.parent.name)
        summary = keypoint_error_summary(np.array(errors), mask, sets)
        report[name] = {
            "options": {"score_threshold": detector.score_threshold}
            | {k: getattr(detector, k) for k in ("model_range", "max_side") if hasattr(detector, k)},
            "images": len(items),
            "used": len(errors),
            "missed": missed,
            "outliers_dropped": outliers,
            **summary,
        }
    return report


def print_training_table(report: dict[str, dict]) -> None:
    print("\n## Keypoint error on the training images, template crop units (x, y)")
    print(f"(template eye-centre distance = {TEMPLATE_EYE_DISTANCE:.4f} crop units)")
    sets = sorted(next(iter(next(iter(report.values()))["slots"].values()))["mean_by_set"])
    header = "| detector | slot | mean (offset) | std | |offset| / eye distance | "
    print(header + " | ".join(f"mean {s}" for s in sets) + " |")
    print("|---|---|---|---|---|" + "---|" * len(sets))
    for name, r in report.items():
        for slot, s in r["slots"].items():
            mean, std = s["mean"], s["std"]
            rel = np.linalg.norm(mean) / TEMPLATE_EYE_DISTANCE
            by_set = " | ".join(f"({m[0]:+.4f}, {m[1]:+.4f})" for m in s["mean_by_set"].values())
            print(
                f"| {name} | {slot} | ({mean[0]:+.4f}, {mean[1]:+.4f}) | ({std[0]:.4f}, {std[1]:.4f}) | {rel:.3f} "
                f"| {by_set} |"
            )
        print(f"| {name} | used {r['used']}/{r['images']} | missed {r['missed']} | outliers {r['outliers_dropped']} |")


def parse_options(settings: list[str]) -> dict[str, dict]:
    """``["retinaface.max_side=960", ...]`` -> ``{"retinaface": {"max_side": 960}}``."""
    options: dict[str, dict] = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        name, _, option = key.partition(".")
        if not value or not option or name not in DETECTOR_NAMES:
            raise SystemExit(f"--set needs DETECTOR.OPTION=VALUE with DETECTOR in {DETECTOR_NAMES}, got {setting!r}")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        options.setdefault(name, {})[option] = parsed
    return options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default=",".join(n for n in DETECTOR_NAMES if n != "auto"),
                        help="comma-separated detector names (auto: BlazeFace or MTCNN by frame size)")
    parser.add_argument("--model-dir", type=Path, default=detector_model_dir(), help="folder of the ONNX files")
    parser.add_argument("--set", action="append", default=[], metavar="DET.OPT=VAL", help="detector option")
    parser.add_argument("--skip-test", action="store_true", help=f"skip the {TEST_SET} measurement")
    parser.add_argument("--videos", action="store_true", help="also count faces on the shared clips")
    parser.add_argument("--video-frames", type=int, default=40, help="frames sampled per clip")
    parser.add_argument("--skip-train", action="store_true", help="skip the training-image keypoint error")
    parser.add_argument(
        "--error-detectors", default="blazeface,retinaface", help="detectors measured on the training images"
    )
    parser.add_argument("--ytf-sample", type=int, default=800, help="ytf68 images in the training sample")
    parser.add_argument(
        "--outlier", type=float, default=0.15, help="drop faces with a slot error above this (crop units)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=JSON_PATH, help="where the keypoint-error JSON goes")
    args = parser.parse_args(argv)

    names = parse_names(args.detectors)
    error_names = parse_names(args.error_detectors)
    options = parse_options(args.set)
    detectors: dict[str, FaceDetector] = {}
    try:
        for name in names:
            detectors[name] = open_detector(name, args.model_dir, options)
        if not args.skip_test:
            results = {name: measure_test_set(d, data_root() / TEST_SET) for name, d in detectors.items()}
            print_test_table(results)
        if args.videos:
            measure_videos(detectors, args.video_frames)
        if not args.skip_train and error_names:
            for name in error_names:
                if name not in detectors:
                    detectors[name] = open_detector(name, args.model_dir, options)
            items, ytf_count = training_items(args.ytf_sample, args.seed)
            report = measure_training_error({n: detectors[n] for n in error_names}, items, args.outlier)
            print_training_table(report)
            write_error_json(args.json, report, ytf_count, args.seed, args.outlier)
            print(f"\nwrote {args.json}")
    finally:
        for detector in detectors.values():
            detector.close()


def parse_names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(DETECTOR_NAMES))
    if unknown:
        raise SystemExit(f"unknown detectors {unknown}; choose from {', '.join(DETECTOR_NAMES)}")
    return names


def write_error_json(path: Path, report: dict, ytf_count: int, seed: int, outlier: float) -> None:
    description = (
        "Face-detector keypoint error against the keypoints derived from the 68-point ground truth "
        "(models.landmarks68.keypoints_from_landmarks), on training images only "
        f"({', '.join(TRAIN_FOLDERS)} and {ytf_count} random {YTF_FOLDER} images, seed {seed}), in template "
        "crop units: (detector - ground truth) mapped through the linear part of the similarity that aligns "
        "the ground-truth keypoints to models.align.TEMPLATE, divided by the crop size (1.0 = crop side). "
        "Per slot: mean = systematic offset, std, cov (2x2), median, mean_by_set; joint_cov covers all "
        "present slots in joint_order. Faces whose detection centre is not inside the ground-truth landmark "
        f"box are 'missed'; faces with any slot error above {outlier} crop units are dropped as 'outliers'. "
        "Written by python -m models.tools.measure_detectors."
    )
    payload = {
        "description": description,
        "template_eye_distance": round(TEMPLATE_EYE_DISTANCE, 5),
        "detectors": report,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()

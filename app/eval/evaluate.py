"""``python -m app evaluate``: landmark accuracy on annotated stills (NME, AUC, FR, CED).

Every model named is measured on the same faces in the same run, one summary line each::

    model=NAME dataset=DIR mode=MODE n=N NME_io=X.XX% NME_ip=X.XX% AUC@0.08=X.XXX FR@0.08=X.XX%

Modes:

* ``gt5``: each face is aligned from the five keypoints derived from its ground truth.
* ``detector``: the pipeline's path on a still: the detector runs on the image, the
  detection whose box centre is nearest the centre of the ground-truth landmark box
  (among those whose centre lies inside that box) is the face, it is aligned from the
  detector's keypoints and the model runs on the crop. No detection there is a miss.
  Tracking is not involved: the stills are unrelated images.
* ``own``: models that bring their own detector (``dlib68``: dlib's HOG detector on the
  full image, the classic way) use it, matched to the ground truth the same way.

Misses are never dropped: their count is printed, NME is the mean over the found faces,
and every miss counts as a failure in FR and as error infinity in the CED and AUC.
AUC, FR and the CED use NME_io unless ``--norm`` names another normaliser (``ip``, or
``box``: the square root of the ground-truth landmark box's area, for large-pose sets such as
AFLW2000-3D); ``--points 51`` scores the 51 points off the jaw line (17-67) instead of all 68.
``n`` counts the faces evaluated, misses included; an
annotation that cannot be read is reported by name, skipped and counted.

Writes ``<out>/<dataset>_<mode>_errors.csv`` (file, model, NME_io, NME_ip, NME_box, detected;
NME as fractions over the scored points, empty for a miss) and ``<out>/<dataset>_<mode>_ced.png``
(the CED of the chosen normaliser); a non-default ``--norm`` or ``--points`` adds ``_<norm>`` and
``_<points>pts`` to both names.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from app.cli import exit_codes
from app.cli.argtypes import positive_float, positive_int
from app.cli.pipeline_args import add_precision_argument
from app.eval.plots import plot_ced
from app.output_paths import check_output_folder, check_outputs
from models.landmarks68 import INNER_51
from models.metrics import DEFAULT_THRESHOLD, MISS, NORMALISER_NAMES, NORMALISERS, auc, failure_rate, mean_nme, nme
from models.detectors import DEFAULT_DETECTOR, FaceDetector
from models.boxes import match_face
from models.landmark_model import LandmarkModel

MODES = ("gt5", "detector", "own")
DEFAULT_OUT = Path("out/eval")
DLIB68 = "dlib68"


@dataclass(frozen=True)
class ImageResult:
    """One face, one model. A miss has ``detected`` False and both errors ``MISS`` (inf)."""

    file: str
    model: str
    nme_io: float
    nme_ip: float
    detected: bool
    nme_box: float = MISS

    def error(self, norm: str) -> float:
        return {"io": self.nme_io, "ip": self.nme_ip, "box": self.nme_box}[norm]


@dataclass(frozen=True)
class EvaluationSummary:
    model: str
    dataset: str
    mode: str
    n: int  # faces evaluated, misses included
    misses: int
    nme_io: float  # mean over the found faces
    nme_ip: float
    auc: float  # of NME_io, misses included
    fr: float  # of NME_io, misses included
    threshold: float
    skipped: tuple[str, ...]  # "file: reason" for annotations that could not be used
    results: tuple[ImageResult, ...]
    detector: str | None = None
    norm: str = "io"  # the normaliser of auc, fr and the CED
    points: int = 68  # 68, or 51 (the points off the jaw line)
    nme_box: float = float("nan")

    @property
    def found(self) -> int:
        return self.n - self.misses

    def line(self) -> str:
        thr = f"{self.threshold:g}"
        default = self.norm == "io" and self.points == 68
        scoring = "" if default else f"points={self.points} norm={self.norm} "
        box = f"NME_box={100 * self.nme_box:.2f}% " if self.norm == "box" else ""
        return (
            f"model={self.model} dataset={self.dataset} mode={self.mode} n={self.n} {scoring}"
            f"NME_io={100 * self.nme_io:.2f}% NME_ip={100 * self.nme_ip:.2f}% {box}"
            f"AUC@{thr}={self.auc:.3f} FR@{thr}={100 * self.fr:.2f}%"
        )


def load_model(name: str, backend: str = "auto", on_message: Callable[[str], None] | None = None,
               precision: str = "auto") -> LandmarkModel:
    from models.registry import load_landmark_model

    return load_landmark_model(name, backend=backend, on_message=on_message, precision=precision,
                               strict_precision=True)


def predict_gt5(model: LandmarkModel, image: np.ndarray, gt: np.ndarray, crops: dict) -> np.ndarray:
    from models.align import align_from_landmarks

    if model.input_size not in crops:
        crops[model.input_size] = align_from_landmarks(image, gt, model.input_size)
    return model.predict([crops[model.input_size]])[0].points


def _predict_detection(model: LandmarkModel, image: np.ndarray, detection, crops: dict) -> np.ndarray:
    from models.align import align

    if model.input_size not in crops:
        crops[model.input_size] = align(image, detection.keypoints, detection.keypoint_mask, model.input_size)
    return model.predict([crops[model.input_size]])[0].points


def _predict_own(model: LandmarkModel, image: np.ndarray, gt: np.ndarray) -> np.ndarray | None:
    faces = model.detect_and_predict(image)
    k = match_face(np.array([box for box, _ in faces]), gt)
    return None if k is None else faces[k][1].points


def _result(file: str, model: str, pred: np.ndarray | None, gt: np.ndarray,
            indices: Sequence[int] | None = None) -> ImageResult:
    if pred is None:
        return ImageResult(file, model, MISS, MISS, detected=False)
    io, ip, box = (nme(pred, gt, norm, indices) for norm in NORMALISERS)
    return ImageResult(file, model, io, ip, detected=True, nme_box=box)


def scored_points(points: int) -> tuple[int, ...] | None:
    """The indices ``--points`` scores: None for all 68, the 51 off the jaw line for 51."""
    if points == 68:
        return None
    if points == 51:
        return INNER_51
    raise ValueError(f"--points must be 68 or 51, not {points}")


def evaluate(
    models: Sequence[LandmarkModel | str],
    dataset: str | Path,
    mode: str = "gt5",
    detector: FaceDetector | str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    limit: int | None = None,
    progress: bool = False,
    dataset_label: str | None = None,
    norm: str = "io",
    points: int = 68,
) -> list[EvaluationSummary]:
    """Measure each model on the annotated stills of ``dataset``, all on the same faces.

    ``models`` are loaded models or names (loaded here and closed afterwards); ``dataset``
    is a folder or a name under the data root (``300w/helen_test``); ``detector`` (an
    instance or a name) is needed in ``detector`` mode; ``limit`` takes the first N images
    by name; ``norm`` is the normaliser of AUC, FR and the CED, ``points`` 68 or 51 (the
    points scored). Raises FileNotFoundError for a missing or empty dataset, ValueError for a bad
    mode or model list.
    """
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; choose one of {', '.join(MODES)}")
    if norm not in NORMALISERS:
        raise ValueError(f"unknown NME normaliser {norm!r}; choose one of {', '.join(NORMALISERS)}")
    indices = scored_points(points)
    with contextlib.ExitStack() as owned:
        loaded = []
        for model in models:
            if isinstance(model, str):
                model = owned.enter_context(load_model(model))
            loaded.append(model)
        if isinstance(detector, str) and mode == "detector":
            from models.detectors import create_detector

            detector = owned.enter_context(create_detector(detector))
        summaries = _evaluate(loaded, dataset, mode, detector, threshold, limit, progress, dataset_label, indices, norm)
    return [dataclasses.replace(s, points=points) for s in summaries]


def _evaluate(
    models: Sequence[LandmarkModel],
    dataset: str | Path,
    mode: str,
    detector: FaceDetector | None,
    threshold: float,
    limit: int | None,
    progress: bool,
    dataset_label: str | None,
    indices: Sequence[int] | None,
    norm: str,
) -> list[EvaluationSummary]:
    import cv2
    from tqdm import tqdm

    from models.datasets import list_annotated, resolve_dataset
    from models.pts import PtsFormatError

    if mode == "detector" and detector is None:
        raise ValueError("detector mode needs a face detector")
    if mode == "own":
        lacking = [m.name for m in models if not hasattr(m, "detect_and_predict")]
        if lacking:
            raise ValueError(f"mode 'own' needs models with their own face detector ({DLIB68}); not: {', '.join(lacking)}")
    if not models:
        raise ValueError("no landmark model to evaluate")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"each model can be evaluated once per run: {', '.join(names)}")
    folder = resolve_dataset(dataset)
    items = list_annotated(folder)
    if not items:
        raise FileNotFoundError(f"no annotated images (image + .pts) in {folder}")
    items = items[:limit] if limit is not None else items

    results: dict[str, list[ImageResult]] = {name: [] for name in names}
    skipped: list[str] = unannotated_images(folder, items[-1].image_path.name if limit is not None else None)
    for item in tqdm(items, desc=f"evaluate {mode}", unit="img", disable=not progress, file=sys.stderr):
        file = item.image_path.name
        try:
            gt = item.load_points()
        except PtsFormatError as exc:
            skipped.append(f"{item.pts_path.name}: {exc}")
            continue
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(f"{file}: unreadable image")
            continue
        crops: dict = {}
        if mode == "gt5":
            preds = {m.name: predict_gt5(m, image, gt, crops) for m in models}
        elif mode == "detector":
            detections = detector.detect(image)
            k = match_face(np.array([d.box for d in detections]), gt)
            preds = {
                m.name: None if k is None else _predict_detection(m, image, detections[k], crops) for m in models
            }
        else:
            preds = {m.name: _predict_own(m, image, gt) for m in models}
        for name, pred in preds.items():
            results[name].append(_result(file, name, pred, gt, indices))

    label = dataset_label if dataset_label is not None else str(dataset)
    summaries = []
    for name in names:
        rows = results[name]
        if not rows:
            raise ValueError(f"no usable annotations in {folder}: {len(skipped)} skipped")
        io = np.array([r.nme_io for r in rows])
        ip = np.array([r.nme_ip for r in rows])
        box = np.array([r.nme_box for r in rows])
        chosen = {"io": io, "ip": ip, "box": box}[norm]
        summaries.append(
            EvaluationSummary(
                model=name,
                dataset=label,
                mode=mode,
                n=len(rows),
                misses=int(sum(not r.detected for r in rows)),
                nme_io=mean_nme(io),
                nme_ip=mean_nme(ip),
                auc=auc(chosen, threshold),
                fr=failure_rate(chosen, threshold),
                threshold=threshold,
                skipped=tuple(skipped),
                results=tuple(rows),
                detector=getattr(detector, "name", None) if mode == "detector" else None,
                norm=norm,
                nme_box=mean_nme(box),
            )
        )
    return summaries


def unannotated_images(folder: Path, up_to: str | None = None) -> list[str]:
    """"NAME: no NAME.pts beside it" for the images of ``folder`` that have no annotation (sorted by
    name; with ``up_to``, only those that sort before that image: the ones a ``--limit`` reached)."""
    from models.datasets import IMAGE_SUFFIXES

    lonely = sorted(p.name for p in Path(folder).iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.with_suffix(".pts").is_file())
    return [f"{name}: no {Path(name).stem}.pts beside it, not scored" for name in lonely
            if up_to is None or name < up_to]


def output_paths(out_dir: str | Path, dataset: str | Path, mode: str, norm: str = "io",
                 points: int = 68) -> tuple[Path, Path]:
    """The CSV and PNG paths: ``<out>/<dataset folder name>_<mode>_errors.csv`` and ``..._ced.png``
    (``_<norm>`` and ``_<points>pts`` added after the mode when not the defaults)."""
    stem = f"{Path(dataset).name}_{mode}" + (f"_{norm}" if norm != "io" else "") + (
        f"_{points}pts" if points != 68 else "")
    out = Path(out_dir)
    return out / f"{stem}_errors.csv", out / f"{stem}_ced.png"


def write_outputs(summaries: Sequence[EvaluationSummary], out_dir: str | Path, dataset: str | Path) -> tuple[Path, Path]:
    """Write the per-image CSV and the CED plot of one run; returns their paths."""
    first = summaries[0]
    mode = first.mode
    csv_path, png_path = output_paths(out_dir, dataset, mode, first.norm, first.points)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "model", "NME_io", "NME_ip", "NME_box", "detected"])
        for summary in summaries:
            for r in summary.results:
                cells = [f"{r.nme_io:.6f}", f"{r.nme_ip:.6f}", f"{r.nme_box:.6f}"] if r.detected else ["", "", ""]
                writer.writerow([r.file, r.model, *cells, int(r.detected)])
    how = mode if summaries[0].detector is None else f"{mode}, {summaries[0].detector}"
    scored = "" if first.points == 68 else f", {first.points} points"
    plot_ced(
        {s.model: [r.error(first.norm) for r in s.results] for s in summaries},
        png_path,
        threshold=first.threshold,
        title=f"{Path(dataset).name} ({how}{scored})",
        xlabel=f"NME ({NORMALISER_NAMES[first.norm]})",
    )
    return csv_path, png_path


def report_lines(summaries: Sequence[EvaluationSummary]) -> list[str]:
    """The summary lines, then misses and skipped annotations."""
    lines = [s.line() for s in summaries]
    first = summaries[0]
    if first.mode == "detector":
        lines.append(
            f"detector={first.detector} missed={first.misses} of {first.n} faces "
            f"(each miss is a failure in FR and AUC; NME over the {first.found} found)"
        )
    elif first.mode == "own":
        for s in summaries:
            lines.append(
                f"model={s.model} own detector missed={s.misses} of {s.n} faces "
                f"(each miss is a failure in FR and AUC; NME over the {s.found} found)"
            )
    if first.skipped:
        lines.append(f"skipped={len(first.skipped)} unusable annotation(s):")
        lines.extend(f"  {reason}" for reason in first.skipped)
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True,
        help=f"landmark model, or several separated by commas (e.g. mnv2_sdd,{DLIB68},mediapipe68); "
        "append +flip to a network's name for flip test-time averaging (mnv2_sdd,mnv2_sdd+flip) and @PRECISION "
        "to run it at that precision (r18_ffld@fp32,r18_ffld@int8: both in one run)",
    )
    parser.add_argument("--dataset", required=True, help="folder of images + .pts, or a name under the data root")
    parser.add_argument("--mode", choices=MODES, default="gt5",
                        help="gt5: align from the ground truth's five points; detector: detect, align, model; "
                             f"own: the model's own detector ({DLIB68} only). Default gt5")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"detector for --mode detector (default {DEFAULT_DETECTOR})")
    parser.add_argument("--detector-model", default=None, help="ONNX file for retinaface / yunet")
    parser.add_argument("--backend", default="auto", help="engine for our networks: auto, tensorrt, ort-cuda, ort-cpu")
    add_precision_argument(parser)
    parser.add_argument("--threshold", type=positive_float, default=DEFAULT_THRESHOLD, help="AUC / FR threshold (default 0.08)")
    parser.add_argument("--norm", choices=NORMALISERS, default="io",
                        help="normaliser of AUC, FR and the CED: io (outer eye corners, default), ip (eye centres), "
                             "box (sqrt of the landmark box's width x height: large-pose sets such as AFLW2000-3D)")
    parser.add_argument("--points", type=int, choices=(68, 51), default=68,
                        help="points scored: all 68 (default) or the 51 off the jaw line")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N images (by name)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder for the CSV and CED plot (default {DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    from models.datasets import list_annotated, resolve_dataset
    from models.detectors import create_detector

    try:
        folder = resolve_dataset(args.dataset)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not list_annotated(folder):
        print(f"error: no annotated images (image + .pts) in {folder}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.model.split(",") if n.strip()]
    if not names:
        print("error: --model names no landmark model", file=sys.stderr)
        return 2
    inputs = [folder, args.detector_model]
    check_output_folder(inputs, args.out)  # before anything is loaded or written
    check_outputs(inputs, [("--out", path) for path in output_paths(args.out, folder, args.mode, args.norm, args.points)])

    def message(text: str) -> None:
        print(text, file=sys.stderr)

    models: list[LandmarkModel] = []
    detector = None
    try:
        for name in names:
            models.append(load_model(name, backend=args.backend, on_message=message, precision=args.precision))
        if args.mode == "detector":
            detector = create_detector(args.detector, args.detector_model)
        summaries = evaluate(
            models, folder, args.mode, detector=detector, threshold=args.threshold,
            limit=args.limit, progress=True, dataset_label=args.dataset, norm=args.norm, points=args.points,
        )
    finally:
        for model in models:
            model.close()
        if detector is not None:
            detector.close()
    for line in report_lines(summaries):
        print(line)
    csv_path, png_path = write_outputs(summaries, args.out, folder)
    print(f"errors: {csv_path}")
    print(f"ced: {png_path}")
    # One policy with track, batch and eval300vw: what was skipped is named (above) and counted, exit 3.
    return exit_codes.INPUT_PROBLEMS if summaries and summaries[0].skipped else exit_codes.OK

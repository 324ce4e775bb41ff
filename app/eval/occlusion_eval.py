"""``python -m app eval-occlusions``: accuracy on all, hidden and visible points of an occluded set
(``python -m app synth-occlusions``), and each model's confidence as a detector of hidden points.

Faces are aligned from the five keypoints of their ground truth (``evaluate``'s ``gt5`` mode).
One line per model::

    model=NAME n=N NME_all=X.XX% NME_hidden=X.XX% NME_visible=X.XX% hidden_AUC=0.XXX P=0.XX R=0.XX @T

NME is normalised by the outer-eye-corner distance; ``NME_hidden`` is the mean over the faces
that have hidden points of their hidden points' mean error. ``hidden_AUC`` is the ROC AUC of
``1 - confidence`` as a score for "hidden" over every point of every face; precision and recall
of "confidence < T" as the hidden-point call, at T = the model's visibility threshold (its
manifest's ``visibility_threshold``) or ``--visibility-threshold``; ``best_F1`` is the threshold
with the highest F1 of that call on this set (to choose a network's threshold on an occluded set
made from training faces: ``synth-occlusions --source 300w/afw``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from app.cli.argtypes import non_negative_float, positive_int
from app.output_paths import check_output_folder, check_outputs
from engines.files import atomic_write
from models.metrics import nme

DEFAULT_OUT = Path("out/eval")


@dataclass(frozen=True)
class OcclusionSummary:
    model: str
    n: int
    nme_all: float
    nme_hidden: float
    nme_visible: float
    hidden_auc: float
    threshold: float
    precision: float
    recall: float
    best_threshold: float = float("nan")  # the threshold with the highest F1 on this set
    best_f1: float = float("nan")

    def line(self) -> str:
        return (f"model={self.model} n={self.n} NME_all={100 * self.nme_all:.2f}% "
                f"NME_hidden={100 * self.nme_hidden:.2f}% NME_visible={100 * self.nme_visible:.2f}% "
                f"hidden_AUC={self.hidden_auc:.3f} P={self.precision:.2f} R={self.recall:.2f} @{self.threshold:g} "
                f"best_F1={self.best_f1:.2f} @{self.best_threshold:.3g}")


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` labels (ties count half)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_scores) != 0])
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):  # average rank of each run of ties (1-based)
        ranks[order[s:e]] = (s + e + 1) / 2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_f1_threshold(confidence: np.ndarray, hidden: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) of the call "confidence < threshold" = hidden with the highest F1; the
    threshold is halfway between two neighbouring confidences."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    hidden = np.asarray(hidden, dtype=bool).ravel()
    if not hidden.any():
        return float("nan"), float("nan")
    order = np.argsort(confidence, kind="mergesort")
    c, h = confidence[order], hidden[order]
    true_pos = np.cumsum(h)  # calling the first i + 1 (lowest confidences) hidden
    called = np.arange(1, len(c) + 1)
    f1 = 2 * true_pos / (called + h.sum())
    valid = np.r_[c[1:] > c[:-1], True]  # cut only between distinct confidences
    f1 = np.where(valid, f1, -1.0)
    i = int(np.argmax(f1))
    threshold = (c[i] + c[i + 1]) / 2 if i + 1 < len(c) else np.nextafter(c[i], np.inf)
    return float(threshold), float(f1[i])


def visibility_threshold(model, default: float) -> float:
    manifest = getattr(model, "manifest", None)
    return float(getattr(manifest, "visibility_threshold", default)) if manifest is not None else default


def evaluate_occlusions(models, folder: str | Path, default_threshold: float = 0.5, limit: int | None = None,
                        progress: bool = False) -> list[OcclusionSummary]:
    from tqdm import tqdm

    from app.synth.occlusions import load_visibility
    from models.align import align_from_landmarks
    from models.datasets import list_annotated, resolve_dataset

    folder = resolve_dataset(folder)
    hidden = load_visibility(folder)
    items = [i for i in list_annotated(folder) if i.image_path.name in hidden][:limit]
    if not items:
        raise FileNotFoundError(f"no annotated images listed in {folder}/visibility.json")
    rows = {m.name: {"all": [], "hidden": [], "visible": [], "conf": [], "label": []} for m in models}
    for item in tqdm(items, desc="occluded set", unit="img", disable=not progress, file=sys.stderr):
        image = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode image {item.image_path}")
        gt = item.load_points()
        mask = hidden[item.image_path.name]
        crops = {}
        for model in models:
            if model.input_size not in crops:
                crops[model.input_size] = align_from_landmarks(image, gt, model.input_size)
            result = model.predict([crops[model.input_size]])[0]
            r = rows[model.name]
            r["all"].append(nme(result.points, gt, "io"))
            if mask.any():
                r["hidden"].append(nme(result.points, gt, "io", np.flatnonzero(mask)))
            if (~mask).any():
                r["visible"].append(nme(result.points, gt, "io", np.flatnonzero(~mask)))
            r["conf"].append(np.asarray(result.confidence, dtype=np.float64))
            r["label"].append(mask)
    summaries = []
    for model in models:
        r = rows[model.name]
        conf, label = np.concatenate(r["conf"]), np.concatenate(r["label"])
        threshold = visibility_threshold(model, default_threshold)
        called = conf < threshold
        precision = float((called & label).sum() / max(1, called.sum()))
        recall = float((called & label).sum() / max(1, label.sum()))
        summaries.append(OcclusionSummary(
            model.name, len(items), float(np.mean(r["all"])), float(np.mean(r["hidden"])) if r["hidden"] else np.nan,
            float(np.mean(r["visible"])) if r["visible"] else np.nan, roc_auc(1.0 - conf, label), threshold,
            precision, recall, *best_f1_threshold(conf, label)))
    return summaries


def unit_interval(text: str) -> float:
    value = non_negative_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


unit_interval.__name__ = "a number from 0 to 1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="landmark models separated by commas (e.g. sgfa,sgfa+norepair,"
                        "r18_ffld,mnv2_sdd,dlib68,mediapipe68)")
    parser.add_argument("--dataset", default="out/occluded", help="folder made by synth-occlusions")
    parser.add_argument("--visibility-threshold", type=unit_interval, default=0.5,
                        help="hidden-point call for models whose manifest gives none (default 0.5)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--assets", type=Path, default=None,
                        help="folder of the networks' manifests (default: the installed assets/), e.g. a scratch export")
    parser.add_argument("--limit", type=positive_int, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for occlusions.json")


def run(args: argparse.Namespace) -> int:
    from models.datasets import resolve_dataset
    from models.registry import load_landmark_model

    names = [n.strip() for n in args.model.split(",") if n.strip()]
    summary_path = Path(args.out) / f"{Path(args.dataset).name}_occlusions.json"
    inputs = [resolve_dataset(args.dataset), args.assets]
    check_output_folder(inputs, args.out)  # before anything is loaded or written
    check_outputs(inputs, {"--out": summary_path})
    models = []
    try:
        for name in names:
            models.append(load_landmark_model(name, backend=args.backend, assets_dir=args.assets,
                                              on_message=lambda t: print(t, file=sys.stderr), strict_precision=True))
        summaries = evaluate_occlusions(models, args.dataset, args.visibility_threshold, args.limit, progress=True)
    finally:
        for model in models:
            model.close()
    for s in summaries:
        print(s.line())
    path = atomic_write(summary_path, json.dumps([asdict(s) for s in summaries], indent=1))
    print(f"summary: {path}")
    return 0

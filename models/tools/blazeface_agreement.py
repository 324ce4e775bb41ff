"""The shipped ONNX BlazeFace against mediapipe's solution (needs the ``peers`` extra).

    python -m models.tools.blazeface_agreement [--every 5] [--clips talking_d12.mp4,...]

On every HELEN-test image and every ``--every``-th frame of the shared clips both detectors
run on the same frame; faces are paired greedily by IoU. Printed: faces found by each, the
pairs' smallest box IoU, the largest keypoint distance (pixels, the four used slots) and the
median time per call of each detector, measured alternately in one run.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.datasets import TEST_SET, data_root
from models.detectors import create_detector
from models.types import Detection


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Agreement:
    """Counts and worst cases over the frames compared so far."""

    frames: int = 0
    ours: int = 0
    theirs: int = 0
    unpaired: int = 0
    ious: list[float] = field(default_factory=list)
    keypoint_px: list[float] = field(default_factory=list)

    def add(self, ours: list[Detection], theirs: list[Detection]) -> None:
        self.frames += 1
        self.ours += len(ours)
        self.theirs += len(theirs)
        left = list(theirs)
        for det in ours:
            if not left:
                self.unpaired += 1
                continue
            ious = [box_iou(det.box, other.box) for other in left]
            k = int(np.argmax(ious))
            if ious[k] < 0.5:
                self.unpaired += 1
                continue
            other = left.pop(k)
            mask = det.keypoint_mask & other.keypoint_mask
            self.ious.append(ious[k])
            self.keypoint_px.append(float(np.linalg.norm(det.keypoints[mask] - other.keypoints[mask], axis=1).max()))
        self.unpaired += len(left)

    def line(self, label: str) -> str:
        iou = min(self.ious) if self.ious else float("nan")
        kp = np.array(self.keypoint_px) if self.keypoint_px else np.array([np.nan])
        return (f"{label}: {self.frames} frames, faces onnx {self.ours} / mediapipe {self.theirs}, unpaired {self.unpaired}, "
                f"min IoU {iou:.4f}, keypoint px max {kp.max():.3f} (p99 {np.percentile(kp, 99):.3f}, "
                f"mean {kp.mean():.4f})")


def _frames(path: Path, every: int):
    capture = cv2.VideoCapture(str(path))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % every == 0:
                yield frame
            index += 1
    finally:
        capture.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=5, help="every N-th clip frame (default 5)")
    parser.add_argument("--clips", default="", help="comma-separated clip names in videos/ (default: all)")
    args = parser.parse_args(argv)
    root = Path(data_root())
    clips = [root / "videos" / c for c in args.clips.split(",") if c] or sorted((root / "videos").glob("*.mp4"))
    times: dict[str, list[float]] = {"onnx": [], "mediapipe": []}
    with create_detector("blazeface") as ours, create_detector("blazeface-mediapipe") as theirs:

        def compare(frame: np.ndarray, agreement: Agreement) -> None:
            t0 = time.perf_counter()
            a = ours.detect(frame)
            t1 = time.perf_counter()
            b = theirs.detect(frame)
            times["onnx"].append(t1 - t0)
            times["mediapipe"].append(time.perf_counter() - t1)
            agreement.add(a, b)

        helen = Agreement()
        for path in sorted((root / TEST_SET).glob("*.jpg")) + sorted((root / TEST_SET).glob("*.png")):
            compare(cv2.imread(str(path)), helen)
        print(helen.line(TEST_SET))
        total = Agreement()
        for clip in clips:
            agreement = Agreement()
            for frame in _frames(clip, args.every):
                compare(frame, agreement)
            print(agreement.line(clip.name))
            for name in ("frames", "ours", "theirs", "unpaired"):
                setattr(total, name, getattr(total, name) + getattr(agreement, name))
            total.ious += agreement.ious
            total.keypoint_px += agreement.keypoint_px
        print(total.line("all clips"))
    for name, values in times.items():
        print(f"{name}: median {1e3 * np.median(values):.2f} ms per detect ({len(values)} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

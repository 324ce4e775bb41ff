"""Run one detector over every frame of a clip (default: the shared street clip, 6-9 small faces).

    python -m models.tools.street_detections [--detector auto] [--sheet docs/street_auto] [--resize 640x480]

Prints the faces per frame (mean, min, max) and the detection time per frame (wall clock and
this process's CPU time, which a loaded machine inflates less), and with ``--sheet PREFIX``
writes two PNGs to look at: ``PREFIX_frames.png``, every ``--every``-th frame with its boxes
and points, and ``PREFIX_crops.png``, every detection of every frame as a small crop labelled
with its frame, for counting false detections by eye. ``--resize WxH`` first resizes every
frame (detection time at another frame size).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from models.datasets import data_root, detector_model_dir
from models.detectors import DETECTOR_NAMES, MODEL_FILES, create_detector
from models.types import Detection

CLIP = "videos/street_multiface.mp4"
CROP = 56  # px per detection on the crop sheet


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SystemExit(f"cannot open video: {path}")
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def draw(frame: np.ndarray, detections: list[Detection]) -> np.ndarray:
    out = frame.copy()
    for det in detections:
        x1, y1, x2, y2 = np.round(det.box).astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 3)
        for x, y in det.keypoints[det.keypoint_mask]:
            cv2.circle(out, (int(round(x)), int(round(y))), 3, (0, 0, 255), -1)
    return out


def frame_sheet(frames: list[np.ndarray], results: list[list[Detection]], every: int, width: int = 480) -> np.ndarray:
    tiles = []
    for index in range(0, len(frames), every):
        tile = draw(frames[index], results[index])
        tile = cv2.resize(tile, (width, round(tile.shape[0] * width / tile.shape[1])), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"frame {index}: {len(results[index])}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (0, 255, 255), 2)
        tiles.append(tile)
    return grid(tiles, columns=3)


def crop_sheet(frames: list[np.ndarray], results: list[list[Detection]], columns: int = 24) -> np.ndarray:
    tiles = []
    for index, (frame, detections) in enumerate(zip(frames, results)):
        for det in detections:
            x1, y1, x2, y2 = np.round(det.box).astype(int)
            pad = max(x2 - x1, y2 - y1) // 4
            patch = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT)[
                max(y1, 0) : y2 + 2 * pad, max(x1, 0) : x2 + 2 * pad
            ]
            tile = cv2.resize(patch, (CROP, CROP), interpolation=cv2.INTER_AREA)
            cv2.putText(tile, str(index), (1, CROP - 3), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 255, 255), 1)
            tiles.append(tile)
    return grid(tiles, columns) if tiles else np.zeros((CROP, CROP, 3), np.uint8)


def write_png(path: Path, image: np.ndarray) -> None:
    """A 256-colour PNG (a third of the full-colour size; these sheets go into docs/)."""
    from PIL import Image

    Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).quantize(256).save(path, optimize=True)


def grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * h : r * h + tile.shape[0], c * w : c * w + tile.shape[1]] = tile
    return sheet


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if width < 2 or height < 2:
        raise argparse.ArgumentTypeError(f"frame size must be at least 2x2, got {text!r}")
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="auto", choices=DETECTOR_NAMES)
    parser.add_argument("--clip", type=Path, default=None, help=f"video (default ../shared/data/{CLIP})")
    parser.add_argument("--sheet", type=Path, default=None, help="write PREFIX_frames.png and PREFIX_crops.png")
    parser.add_argument("--every", type=int, default=15, help="frames between tiles on the frame sheet")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (mtcnn)")
    parser.add_argument("--resize", type=parse_size, default=None, metavar="WxH", help="resize frames first")
    args = parser.parse_args(argv)

    clip = args.clip or data_root() / CLIP
    frames = read_frames(clip)
    if args.resize:
        frames = [cv2.resize(f, args.resize, interpolation=cv2.INTER_AREA) for f in frames]
    path = detector_model_dir() / MODEL_FILES[args.detector] if args.detector in MODEL_FILES else None
    options = {"threads": args.threads} if args.threads and args.detector in ("mtcnn", "retinaface") else {}
    if args.threads and not options:
        raise SystemExit(f"--threads applies to mtcnn and retinaface, not {args.detector}")
    results, wall, cpu = [], [], []
    with create_detector(args.detector, path, **options) as detector:
        detector.detect(frames[0])  # warm-up, not timed
        for frame in frames:
            w0, c0 = time.perf_counter(), time.process_time()
            results.append(detector.detect(frame))
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    counts = np.array([len(r) for r in results])
    h, w = frames[0].shape[:2]
    print(f"{clip.name} ({w}x{h}, {len(frames)} frames), detector {args.detector}")
    print(f"faces per frame: mean {counts.mean():.2f}, min {counts.min()}, max {counts.max()}")
    print(f"detection ms per frame: wall median {1000 * np.median(wall):.0f}, CPU median {1000 * np.median(cpu):.0f}")
    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        frames_png = args.sheet.with_name(args.sheet.name + "_frames.png")
        crops_png = args.sheet.with_name(args.sheet.name + "_crops.png")
        write_png(frames_png, frame_sheet(frames, results, args.every))
        write_png(crops_png, crop_sheet(frames, results))
        print(f"wrote {frames_png} and {crops_png} ({int(counts.sum())} detections)")


if __name__ == "__main__":
    main()

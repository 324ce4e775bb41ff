"""Side-by-side timings for ``python -m app bench``: our pipeline against MediaPipe Face Mesh, and
one network at several precisions, each in one process on the same inputs, in alternating rounds.

``vs_mediapipe``: the frames are decoded once (optionally resized), then each round runs MediaPipe
Face Mesh's own tracking graph (``mediapipe.solutions.face_mesh`` in video mode: it detects, then
follows the face from the previous frame's landmarks, the way a MediaPipe user runs it; the BGR->RGB
conversion its API needs is counted) and our ``Pipeline.process`` (detection when needed, alignment,
network, decoding, smoothing; no drawing) over the same frames. Both start each round with no face
known. Printed per round: median ms per frame, frames with a face, our ratio to MediaPipe.

``network_precisions``: the landmark network alone at batch 1 on one real aligned crop, one model
per precision, timed in alternating rounds so that a machine's drift hits each alike.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from app.types import Frame


@dataclass
class RoundTimes:
    """Per-frame milliseconds of one contender in one round, and the frames where it found a face."""

    ms: list[float] = field(default_factory=list)
    with_face: int = 0

    @property
    def median(self) -> float:
        return float(np.median(self.ms)) if self.ms else float("nan")


def resized(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``image`` resized to ``size`` (w, h) (``cv2.INTER_AREA``), or as it is where it has that size or none is given."""
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def decode_frames(source, count: int, size: tuple[int, int] | None) -> list[Frame]:
    """Up to ``count`` frames of ``source``, resized to ``size`` (w, h) when given."""
    frames = []
    for frame in source:
        if len(frames) >= count:
            break
        frames.append(Frame(image=np.ascontiguousarray(resized(frame.image, size)), index=len(frames),
                            timestamp=frame.timestamp))
    return frames


def time_mediapipe(frames: Sequence[Frame]) -> RoundTimes:
    """One pass of MediaPipe Face Mesh (video mode, one face, no iris refinement) over ``frames``."""
    from mediapipe.python.solutions import face_mesh

    from models.native_logs import quiet_native_logs

    times = RoundTimes()
    with quiet_native_logs(), face_mesh.FaceMesh(  # its graph logs as it starts (shown with --verbose)
        static_image_mode=False, max_num_faces=1, refine_landmarks=False,
        min_detection_confidence=0.5, min_tracking_confidence=0.5,
    ) as mesh:
        for frame in frames:
            start = time.perf_counter()
            result = mesh.process(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))
            times.ms.append(1e3 * (time.perf_counter() - start))
            times.with_face += bool(result.multi_face_landmarks)
    return times


def time_pipeline(pipeline, frames: Sequence[Frame]) -> RoundTimes:
    """One pass of ``pipeline.process`` over ``frames``, starting with no face known."""
    pipeline.reset()
    times = RoundTimes()
    for frame in frames:
        start = time.perf_counter()
        result = pipeline.process(frame)
        times.ms.append(1e3 * (time.perf_counter() - start))
        times.with_face += bool(result.faces)
    return times


def vs_mediapipe(pipeline, frames: Sequence[Frame], rounds: int, label: str,
                 say: Callable[[str], None] = print) -> dict[str, list[RoundTimes]]:
    """Alternate rounds of MediaPipe and ``pipeline`` (after one untimed warm-up pass of each)."""
    time_mediapipe(frames[: min(len(frames), 20)])
    time_pipeline(pipeline, frames[: min(len(frames), 20)])
    results: dict[str, list[RoundTimes]] = {"mediapipe": [], label: []}
    for index in range(rounds):
        mp_round = time_mediapipe(frames)
        ours = time_pipeline(pipeline, frames)
        results["mediapipe"].append(mp_round)
        results[label].append(ours)
        say(f"round {index + 1}/{rounds}: MediaPipe Face Mesh {mp_round.median:.2f} ms/frame "
            f"({mp_round.with_face}/{len(frames)} with a face); {label} {ours.median:.2f} ms/frame "
            f"({ours.with_face}/{len(frames)}); ratio {ours.median / mp_round.median:.2f}x")
    mp_medians = np.array([r.median for r in results["mediapipe"]])
    our_medians = np.array([r.median for r in results[label]])
    ratios = our_medians / mp_medians
    say(f"over {rounds} rounds (median of round medians, min-max): MediaPipe {np.median(mp_medians):.2f} ms "
        f"({mp_medians.min():.2f}-{mp_medians.max():.2f}); {label} {np.median(our_medians):.2f} ms "
        f"({our_medians.min():.2f}-{our_medians.max():.2f}); ratio {np.median(ratios):.2f}x "
        f"({ratios.min():.2f}-{ratios.max():.2f})")
    return results


def network_precisions(models: dict[str, object], crop, runs: int, rounds: int = 5,
                       say: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Seconds per ``infer`` call at batch 1 of each model (keyed by precision), alternating rounds.
    Also prints the process CPU time per call, steadier than wall time on a shared machine."""
    for model in models.values():
        for _ in range(10):
            model.infer([crop])
    times: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for name, model in models.items():
            for _ in range(per_round):
                start, start_cpu = time.perf_counter(), time.process_time()
                model.infer([crop])
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    first = next(iter(models))
    reference = float(np.median(times[first]))
    for name, seconds in times.items():
        median, p95 = 1e3 * np.percentile(seconds, (50, 95))
        speed = f"; {reference / np.median(seconds):.2f}x {first}'s speed" if name != first else ""
        say(f"network + preprocessing, batch 1, {name} ({models[name].backend}): median {median:.2f} ms, "
            f"p95 {p95:.2f} ms, CPU {1e3 * np.median(cpu[name]):.2f} ms ({len(seconds)} runs in {rounds} "
            f"alternating rounds){speed}")
    return times

"""Moving latency and frame-rate statistics for the overlay and the ``bench`` command."""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from app.types import STAGES, StageTimings


@dataclass(frozen=True)
class StatsSummary:
    """Latency figures over the frames in the window, in milliseconds.

    A stage's median and p95 are taken over the frames where it ran (timing > 0):
    the detector runs on few frames while tracking, and a median over all frames
    would read 0. ``runs`` says on how many of the ``frames`` each stage ran; a stage
    that never ran has ``None`` figures. ``total_*`` are over every frame (the sum of
    its stages). ``fps`` comes from frame arrival times; ``None`` until two frames
    with distinct times have arrived.
    """

    frames: int
    fps: float | None
    median_ms: Mapping[str, float | None]
    p95_ms: Mapping[str, float | None]
    runs: Mapping[str, int]
    total_median_ms: float | None
    total_p95_ms: float | None

    def as_dict(self) -> dict:
        return {
            "frames": self.frames,
            "fps": self.fps,
            "median_ms": dict(self.median_ms),
            "p95_ms": dict(self.p95_ms),
            "runs": dict(self.runs),
            "total_median_ms": self.total_median_ms,
            "total_p95_ms": self.total_p95_ms,
        }


class LatencyStats:
    """Per-stage timings and arrival times of the last ``window`` frames (all frames if None)."""

    def __init__(self, window: int | None = 60) -> None:
        if window is not None and window < 2:
            raise ValueError(f"window must be >= 2 frames (or None for all), got {window}")
        self.window = window
        self.reset()

    def reset(self) -> None:
        self._timings: deque[tuple[float, ...]] = deque(maxlen=self.window)
        self._arrivals: deque[float] = deque(maxlen=self.window)

    def __len__(self) -> int:
        return len(self._timings)

    def add(self, timings: StageTimings, frame_time: float) -> None:
        """Record one frame: its stage timings (ms) and its arrival time (s, any monotonic clock).

        An arrival time earlier than the previous one (a restarted source or clock)
        restarts the frame-rate window; latencies are kept.
        """
        values = tuple(float(getattr(timings, name)) for name in STAGES)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"stage timings must be finite and >= 0 ms, got {timings}")
        if not math.isfinite(frame_time):
            raise ValueError(f"frame_time must be finite, got {frame_time!r}")
        if self._arrivals and frame_time < self._arrivals[-1]:
            self._arrivals.clear()
        self._timings.append(values)
        self._arrivals.append(float(frame_time))

    def fps(self) -> float | None:
        if len(self._arrivals) < 2:
            return None
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else None

    def summary(self) -> StatsSummary:
        """Medians and 95th percentiles (numpy's linear interpolation) of each stage over the frames
        where it ran, and of the frame totals. One sort of the table: the window asks every frame."""
        table = np.array(self._timings, dtype=np.float64).reshape(-1, len(STAGES))
        totals = table.sum(axis=1)
        # Stages that did not run hold 0 and sort first; each column's run values are its tail.
        ordered = np.sort(np.column_stack([table, totals]), axis=0)
        counts = np.append(np.count_nonzero(table > 0, axis=0), len(table))
        median: dict[str, float | None] = {}
        p95: dict[str, float | None] = {}
        for column, name in enumerate((*STAGES, "total")):
            ran = ordered[len(table) - counts[column]:, column]
            median[name], p95[name] = _percentile(ran, 0.5), _percentile(ran, 0.95)
        return StatsSummary(
            frames=len(table),
            fps=self.fps(),
            median_ms={name: median[name] for name in STAGES},
            p95_ms={name: p95[name] for name in STAGES},
            runs={name: int(count) for name, count in zip(STAGES, counts)},
            total_median_ms=median["total"],
            total_p95_ms=p95["total"],
        )


def _percentile(ordered: np.ndarray, q: float) -> float | None:
    """Linear-interpolation percentile (as ``np.percentile``) of already sorted values; None if empty."""
    if not ordered.size:
        return None
    position = q * (ordered.size - 1)
    low = int(position)
    high = min(low + 1, ordered.size - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_bench_table(summaries: StatsSummary | Mapping[str, StatsSummary]) -> str:
    """A Markdown table: median and p95 ms per stage, end-to-end latency and FPS.

    Pass one summary, or a mapping label -> summary for one column pair per configuration.
    Stage rows show ``runs/frames`` when a stage did not run on every frame.
    """
    if isinstance(summaries, StatsSummary):
        summaries = {"": summaries}
    if not summaries:
        raise ValueError("format_bench_table needs at least one summary")
    header = ["stage"]
    for label in summaries:
        prefix = f"{label} " if label else ""
        header += [f"{prefix}median ms", f"{prefix}p95 ms"]
    rows = [header, ["---"] + ["---:"] * (len(header) - 1)]
    for name in STAGES:
        row = [name]
        for s in summaries.values():
            note = f" ({s.runs[name]}/{s.frames})" if 0 < s.runs[name] < s.frames else ""
            row += [_cell(s.median_ms[name]) + note, _cell(s.p95_ms[name])]
        rows.append(row)
    total = ["end-to-end"]
    fps = ["FPS"]
    for s in summaries.values():
        total += [_cell(s.total_median_ms), _cell(s.total_p95_ms)]
        fps += [_cell(s.fps, 1), ""]
    rows += [total, fps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        if r is rows[1]:
            cells = ["-" * widths[0]] + ["-" * (w - 1) + ":" for w in widths[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

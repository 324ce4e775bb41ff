"""Blink events from the eye aspect ratio, online, one detector per face track.

The signal is the mean eye aspect ratio of the usable eyes (``openness``). Each face's
open-eye level differs (eye shape, pose, the model's habits), so thresholds are relative
to a running baseline: the median of the last ``baseline_window`` seconds of frames that
were not inside a closed spell. The eyes count as closed from the first frame whose ratio
falls under ``close_ratio`` x baseline until the first frame that rises above the spell's
minimum + ``reopen_share`` x (baseline - minimum) (hysteresis, relative to how deep the dip
went, so a gaze that drops right after a blink does not stretch it). A closed spell counts
as a blink when its minimum fell under ``depth_ratio`` x baseline and it lasted from
``min_duration`` to ``max_duration`` seconds: looking down lowers the lids by less and for
longer, eyes shut stay shut. The event is emitted on the frame the eyes open again. Nothing
is detected until ``warmup`` seconds of open-eye samples give a baseline. The defaults were
chosen on hand-labelled talking clips (docs/RESULTS.md, "Blinks").
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

from app.types import BlinkEvent


@dataclass(frozen=True)
class BlinkOptions:
    close_ratio: float = 0.8  # closed under this share of the open-eye baseline
    reopen_share: float = 0.4  # open again above the closed spell's minimum + this share of (baseline - minimum)
    depth_ratio: float = 0.65  # a blink's minimum must fall under this share of the baseline
    min_duration: float = 0.05  # s: shorter dips are noise
    max_duration: float = 0.5  # s: longer closures (a lowered gaze, eyes shut) are not blinks
    baseline_window: float = 3.0  # s of open-eye samples in the baseline median
    warmup: float = 0.3  # s of open-eye samples needed before detecting

    def __post_init__(self) -> None:
        if not (0.0 < self.depth_ratio <= self.close_ratio <= 1.0 and 0.0 < self.reopen_share <= 1.0):
            raise ValueError(
                "need 0 < depth_ratio <= close_ratio <= 1 and 0 < reopen_share <= 1, got "
                f"{self.depth_ratio!r}, {self.close_ratio!r}, {self.reopen_share!r}"
            )
        if not 0.0 <= self.min_duration < self.max_duration:
            raise ValueError(f"need 0 <= min_duration < max_duration, got {self.min_duration!r}, {self.max_duration!r}")


class BlinkDetector:
    """Feed one eye aspect ratio per frame (``update``); it returns a ``BlinkEvent`` when one ends."""

    def __init__(self, options: BlinkOptions | None = None) -> None:
        self.options = options or BlinkOptions()
        self._open: deque[tuple[float, float]] = deque()  # (time, ratio) of open-eye frames
        self._sorted: list[float] = []  # the same ratios, sorted (the median without a sort per frame)
        self._closed_since: tuple[int, float] | None = None  # (frame, time) the eyes closed
        self._last: tuple[int, float] | None = None  # last closed frame
        self._minimum = math.inf  # lowest ratio of the current closed spell
        self._base = math.nan  # the baseline when the spell began
        self.count = 0

    @property
    def eyes_closed(self) -> bool:
        return self._closed_since is not None

    def baseline(self) -> float:
        """Median open-eye ratio over the window (NaN before any sample)."""
        values, n = self._sorted, len(self._sorted)
        if not n:
            return math.nan
        return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])

    def update(self, frame: int, time: float, left: float, right: float = math.nan) -> BlinkEvent | None:
        """One frame's eye aspect ratios (NaN: no information about that eye; neither: nothing changes)."""
        ratio = (left + right) / 2.0 if math.isfinite(left) and math.isfinite(right) else (
            left if math.isfinite(left) else right
        )
        if not math.isfinite(ratio):
            return None
        o = self.options
        ready = bool(self._open) and time - self._open[0][0] >= o.warmup
        base = self.baseline() if ready else float("nan")
        event = None
        if self._closed_since is None:
            if ready and ratio < o.close_ratio * base:
                self._closed_since = self._last = (frame, time)
                self._minimum, self._base = ratio, base
                return None
        elif ratio > self._minimum + o.reopen_share * (self._base - self._minimum):
            (start_frame, start_time), (end_frame, _) = self._closed_since, self._last
            self._closed_since = None
            deep = self._minimum < o.depth_ratio * self._base
            if deep and o.min_duration <= time - start_time <= o.max_duration:
                self.count += 1
                event = BlinkEvent(start_frame, end_frame, start_time, time)
        else:
            self._last = (frame, time)
            self._minimum = min(self._minimum, ratio)
            return None
        self._open.append((time, ratio))
        bisect.insort(self._sorted, ratio)
        while time - self._open[0][0] > o.baseline_window:
            del self._sorted[bisect.bisect_left(self._sorted, self._open.popleft()[1])]
        return event

"""Temporal smoothing of landmark tracks: a One Euro filter (Casiez et al., CHI 2012).

The filter is a first-order low-pass whose cutoff rises with the signal's speed:
``cutoff = min_cutoff + beta * |speed|``. Slow or still points are smoothed hard
(jitter goes), fast ones lightly (lag stays small).

Scale: the speed is measured in face sizes per second, not pixels per second, so one
set of parameters behaves the same for a 40 px face and a 400 px face. Because the
low-pass itself is linear, filtering ``points / face_size`` and scaling back is the
same as filtering the pixels with a cutoff from the normalised speed; the state is
kept in pixels so that frame-to-frame noise in ``face_size`` does not leak into the
points. The defaults are tuned for ``face_size`` = :func:`models.boxes.face_size` (the diagonal of
the landmark box); pass that, or something proportional to it scaled to match.

Time: every step uses the caller's timestamps (seconds), never an assumed frame rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    """One Euro parameters in normalised units.

    ``min_cutoff`` (Hz): cutoff for a still point; lower = less jitter, more lag on slow motion.
    ``beta`` (Hz per face-size/s): how fast the cutoff rises with speed; higher = less lag on fast motion.
    ``d_cutoff`` (Hz): cutoff of the low-pass on the speed estimate itself.
    """

    min_cutoff: float = 0.5
    beta: float = 80.0  # chosen on clips made from training stills (docs/RESULTS.md, "Smoothing")
    d_cutoff: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "beta", "d_cutoff"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"OneEuroParams.{name} must be a finite number >= 0, got {value!r}")
        if self.min_cutoff == 0 or self.d_cutoff == 0:
            raise ValueError("OneEuroParams.min_cutoff and d_cutoff must be > 0")


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with ``cutoff`` Hz over a ``dt`` s step."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class LandmarkSmoother:
    """One Euro filter over an (N, 2) point array (N = 68 for a face), one per track.

    Each point gets its own cutoff from its own 2-D speed (rotation invariant).
    Timestamps: an equal timestamp (a repeated frame) returns the previous output and
    leaves the state alone; an earlier timestamp (a seek back, a restarted source)
    restarts the filter from the new points.
    """

    def __init__(self, params: OneEuroParams | None = None) -> None:
        self.params = params or OneEuroParams()
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next call returns its input unchanged."""
        self._x: np.ndarray | None = None  # last output, pixels
        self._dx: np.ndarray | None = None  # smoothed normalised speed, (N, 2) face sizes/s
        self._t: float | None = None

    @property
    def started(self) -> bool:
        return self._x is not None

    @property
    def last(self) -> np.ndarray | None:
        """The last output (a copy), or None before the first call."""
        return None if self._x is None else self._x.copy()

    def smooth(self, points: np.ndarray, timestamp: float, face_size: float) -> np.ndarray:
        """Filter one observation; returns new (N, 2) float64 points (the input is not modified)."""
        x = np.array(points, dtype=np.float64)  # copy
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"points must have shape (N, 2), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("points contain NaN or infinite values")
        if not (math.isfinite(face_size) and face_size > 0):
            raise ValueError(f"face_size must be a finite number > 0, got {face_size!r}")
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp!r}")
        if self._x is not None and self._x.shape != x.shape:
            raise ValueError(
                f"points changed shape from {self._x.shape} to {x.shape}; call reset() for a new track"
            )

        if self._x is None or timestamp < self._t:
            self._x, self._dx, self._t = x, np.zeros_like(x), float(timestamp)
            return x.copy()
        dt = timestamp - self._t
        if dt == 0:
            return self._x.copy()

        p = self.params
        speed = (x - self._x) / (dt * face_size)  # face sizes per second
        self._dx = self._dx + _alpha(p.d_cutoff, dt) * (speed - self._dx)
        cutoff = p.min_cutoff + p.beta * np.linalg.norm(self._dx, axis=1, keepdims=True)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = float(timestamp)
        return self._x.copy()


class OneEuroFilter:
    """One Euro filter over a vector of independent values, each with its own unit (the values
    move by one unit as a point moves by one face size; ``LandmarkSmoother`` on (N, 2) points is
    the same filter with each point's 2-D speed). Timestamps as for ``LandmarkSmoother``. Inputs
    are not checked: this is the per-frame path of the head pose."""

    def __init__(self, units: np.ndarray, params: OneEuroParams | None = None) -> None:
        self.params = params or OneEuroParams()
        self._units = np.asarray(units, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None  # last output
        self._dx: np.ndarray | None = None  # smoothed speed, units/s
        self._t = 0.0

    @property
    def last(self) -> np.ndarray | None:
        """The last output, or None before the first call (read-only: do not modify)."""
        return self._x

    def smooth(self, values: np.ndarray, timestamp: float) -> np.ndarray:
        """Filter one observation; returns a new array."""
        if self._x is None or timestamp < self._t:
            self._x, self._dx, self._t = np.array(values, dtype=np.float64), np.zeros(len(self._units)), timestamp
            return self._x.copy()
        dt = timestamp - self._t
        if dt == 0:
            return self._x.copy()
        p = self.params
        step = values - self._x
        self._dx = self._dx + _alpha(p.d_cutoff, dt) * (step / (dt * self._units) - self._dx)
        tau = 1.0 / (2.0 * math.pi * (p.min_cutoff + p.beta * np.abs(self._dx)))
        self._x = self._x + step / (1.0 + tau / dt)
        self._t = timestamp
        return self._x.copy()

"""Reading and writing 300-W ``.pts`` files.

On disk the coordinates are 1-based (the centre of the top-left pixel is (1, 1)).
In memory this project uses 0-based pixel-centre coordinates everywhere, so
``read_pts`` subtracts 1 and ``write_pts`` adds it back.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from models.landmarks68 import NUM_LANDMARKS


class PtsFormatError(ValueError):
    """A ``.pts`` file that does not follow the 300-W format. The message names the file."""


_NPOINTS = re.compile(r"^n_points\s*:\s*(\d+)\s*$")


def parse_pts(text: str, source: str = "<string>", expected: int | None = NUM_LANDMARKS) -> np.ndarray:
    """Parse the text of a ``.pts`` file into 0-based (N, 2) float64 points."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    declared = None
    for ln in lines:
        m = _NPOINTS.match(ln)
        if m:
            declared = int(m.group(1))
            break
    if declared is None:
        raise PtsFormatError(f"{source}: no 'n_points:' line")
    try:
        start = lines.index("{")
    except ValueError:
        raise PtsFormatError(f"{source}: missing opening brace '{{'") from None
    try:
        end = lines.index("}", start)
    except ValueError:
        raise PtsFormatError(f"{source}: missing closing brace '}}'") from None
    rows = []
    for number, ln in enumerate(lines[start + 1 : end], start=1):
        parts = ln.split()
        try:
            if len(parts) != 2:
                raise ValueError
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise PtsFormatError(f"{source}: point {number} is not two numbers: {ln!r}") from None
    if len(rows) != declared:
        raise PtsFormatError(f"{source}: n_points says {declared} but {len(rows)} points are listed")
    if expected is not None and declared != expected:
        raise PtsFormatError(f"{source}: expected {expected} points, found {declared}")
    points = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(points)):
        raise PtsFormatError(f"{source}: contains non-finite coordinates")
    return points - 1.0


def read_pts(path: str | Path, expected: int | None = NUM_LANDMARKS) -> np.ndarray:
    """Read a ``.pts`` file into 0-based (N, 2) points; raises PtsFormatError or FileNotFoundError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise PtsFormatError(f"{path}: not a text file") from None
    return parse_pts(text, source=str(path), expected=expected)


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write 0-based points as a 1-based 300-W ``.pts`` file."""
    points = np.asarray(points, dtype=np.float64) + 1.0
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    Path(path).write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")

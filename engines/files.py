"""File-system rules every layer shares: the user's cache folder, and atomic writes.

They live in ``engines/`` because it is the lowest layer (``models/`` and ``app/`` import it,
it imports neither), so one copy serves the engine cache, training, evaluation and the app.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Writable cache outside the work tree (``$FACETRACK_CACHE`` or ``~/.cache/facetrack``), created if missing."""
    env = os.environ.get("FACETRACK_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "facetrack"
    path.mkdir(parents=True, exist_ok=True)
    return path

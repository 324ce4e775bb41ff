"""File-system rules every layer shares: the user's cache folder, and atomic writes.

They live in ``engines/`` because it is the lowest layer (``models/`` and ``app/`` import it,
it imports neither), so one copy serves the engine cache, training, evaluation and the app.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def cache_dir() -> Path:
    """Writable cache outside the work tree (``$FACETRACK_CACHE`` or ``~/.cache/facetrack``), created if missing."""
    env = os.environ.get("FACETRACK_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "facetrack"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_writer(path: str | Path, mode: str = "wb", **open_args) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit flush it, fsync it and
    ``os.replace`` it onto ``path``, so that ``path`` holds either its old content or all of the
    new one, never a part. On an error the temporary file is removed and ``path`` is untouched.
    The parent folder is created if missing. ``mode`` is "wb" or "w"; ``open_args`` go to
    ``open`` (``newline=""`` for csv). The new file gets the usual permissions (umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"), **open_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)

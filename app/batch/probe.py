"""What the manifest records about an input, and opening it for reading in a worker.

``stat_input`` is cheap (the driver uses it to skip unchanged inputs on resume);
``probe_input`` reads every byte for the content hash and opens the input for its frame
count, so it runs in the workers, beside the data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from app.batch.inputs import CLIP_300VW, IMAGES, InputItem
from app.sources import Clip300VWSource, ImageFolderSource, SeekableSource, SourceError, VideoFileSource

_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputStat:
    size: int  # bytes (a folder: all its files)
    mtime_ns: int  # newest modification time


@dataclass(frozen=True)
class InputInfo:
    """An input as probed: ``error`` set when it cannot be read at all."""

    stat: InputStat | None
    sha256: str | None
    frames: int | None  # as declared (a truncated file holds fewer); None when unknown
    fps: float | None
    error: str | None = None


def _files(item: InputItem) -> list[Path]:
    if item.path.is_dir():
        return sorted((p for p in item.path.rglob("*") if p.is_file()), key=lambda p: p.as_posix())
    return [item.path]


def stat_input(item: InputItem) -> InputStat:
    """Size and newest mtime. OSError when the path is missing or unreadable."""
    if not item.path.exists():
        raise FileNotFoundError(f"no such file or folder: {item.path}")
    stats = [p.stat() for p in _files(item)]
    return InputStat(sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0))


def content_hash(item: InputItem) -> str:
    """SHA-256 of the file, or of a folder's files (relative names and contents, in name order)."""
    digest = hashlib.sha256()
    for path in _files(item):
        if item.path.is_dir():
            digest.update(path.relative_to(item.path).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def open_input(item: InputItem) -> SeekableSource:
    """The input as a frame source; SourceError when it cannot be opened."""
    if item.kind == CLIP_300VW:
        return Clip300VWSource(item.path)
    if item.kind == IMAGES:
        return ImageFolderSource(item.path)
    return VideoFileSource(item.path, history_bytes=0)  # read forward only: keep no decoded frames


def probe_input(item: InputItem) -> InputInfo:
    try:
        stat = stat_input(item)
    except OSError as error:
        return InputInfo(None, None, None, None, f"cannot read {item.path}: {error.strerror or error}")
    try:
        with open_input(item) as source:
            frames, fps = source.frame_count, source.fps
        sha = content_hash(item)
    except (SourceError, OSError, ValueError) as error:
        return InputInfo(stat, None, None, None, str(error))
    return InputInfo(stat, sha, frames, fps)

"""Frame sources: cameras, video files, image folders and 300-VW clips.

``open_source(spec)`` picks the right one from what the user typed or chose.
Every source is a context manager and an iterable of :class:`app.types.Frame`,
with ``read()``, ``close()``, ``frame_count`` (None for cameras), ``fps`` and
``is_live``; file-backed ones add ``seek``, ``frame_at`` and ``step_back``.
"""
from __future__ import annotations

import re
from pathlib import Path

from app.sources.base import FrameSource, SeekableSource, SourceError, TruncatedVideoError, frames_to_end
from app.sources.camera import CameraInfo, CameraSource, list_cameras
from app.sources.clip300vw import AnnotationProblem, Clip300VWSource, is_300vw_clip
from app.sources.images import IMAGE_SUFFIXES, ImageFolderSource
from app.sources.video import VIDEO_SUFFIXES, VideoFileSource

__all__ = [
    "AnnotationProblem",
    "CameraInfo",
    "CameraSource",
    "Clip300VWSource",
    "FrameSource",
    "IMAGE_SUFFIXES",
    "ImageFolderSource",
    "SeekableSource",
    "SourceError",
    "TruncatedVideoError",
    "VIDEO_SUFFIXES",
    "VideoFileSource",
    "frames_to_end",
    "is_300vw_clip",
    "list_cameras",
    "open_source",
]

_CAMERA_SPEC = re.compile(r"^(?:camera:)?(\d+)$", re.IGNORECASE)


def open_source(
    spec: str | int | Path,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
) -> FrameSource:
    """Open what ``spec`` names.

    ``0`` / ``"0"`` / ``"camera:0"``: camera 0 (``width``, ``height``, ``fps`` requested).
    A file: a video. A folder: a 300-VW clip if it has ``annot/`` with ``vid.avi``
    or ``imgs/``, else a folder of images (played at ``fps``, default 30).
    """
    if isinstance(spec, int):
        return CameraSource(spec, width, height, fps)
    text = str(spec).strip()
    match = _CAMERA_SPEC.match(text)
    if match and not Path(text).exists():
        return CameraSource(int(match.group(1)), width, height, fps)
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if path.is_dir():
        if is_300vw_clip(path):
            return Clip300VWSource(path, **({"fps": fps} if fps else {}))
        try:
            return ImageFolderSource(path, **({"fps": fps} if fps else {}))
        except SourceError as error:
            clips = sorted(p.name for p in path.iterdir() if p.is_dir() and is_300vw_clip(p))
            if clips:
                shown = ", ".join(clips[:5]) + (", ..." if len(clips) > 5 else "")
                raise SourceError(f"{error}; it holds 300-VW clip folders ({shown}): open one of them") from None
            raise
    return VideoFileSource(path)

"""Finding the clip folders under a root, selecting them by id or split, and the ``--unreliable`` list."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from app.eval.vw_splits import SPLITS

def looks_like_clip(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in ("vid.avi", "imgs", "annot"))


def find_clips(root: Path) -> list[Path]:
    """The clip folders under ``root`` (or ``root`` itself when it is one clip), sorted by name."""
    if not root.is_dir():
        raise FileNotFoundError(f"300-VW root folder not found: {root}")
    if looks_like_clip(root) and not any(looks_like_clip(p) for p in root.iterdir() if p.is_dir()):
        return [root]
    return sorted((p for p in root.iterdir() if looks_like_clip(p)), key=lambda p: p.name)


def select_clips(
    found: Sequence[Path], ids: Sequence[str] | None, category: str | None
) -> tuple[list[Path], list[str]]:
    """Filter by ``--clips`` and ``--category``; also returns the asked-for ids that are not in ROOT."""
    by_name = {p.name: p for p in found}
    wanted: list[str] | None = None
    if ids:
        wanted = list(dict.fromkeys(ids))
    if category:
        if category not in SPLITS:
            raise ValueError(f"unknown category {category!r}; use one of {', '.join(SPLITS)}")
        members = [c for c in SPLITS[category] if wanted is None or c in wanted]
        wanted = members
    if wanted is None:
        return list(found), []
    return [by_name[c] for c in wanted if c in by_name], [c for c in wanted if c not in by_name]


def clip_signature(folder: Path) -> dict:
    """Cheap identity of a clip's files, so a cached result is not reused for changed data."""
    sig: dict = {}
    video = folder / "vid.avi"
    if video.is_file():
        st = video.stat()
        sig["video"] = [st.st_size, st.st_mtime_ns]
    for sub in ("annot", "imgs"):
        d = folder / sub
        if d.is_dir():
            files = sorted(d.iterdir())
            sig[sub] = [len(files), max((f.stat().st_mtime_ns for f in files), default=0)]
    return sig


def read_unreliable(path: Path | None) -> dict[str, set[int]]:
    """The ``--unreliable`` list: lines ``CLIP FRAME [FRAME ...]``, a frame may be a range ``A-B``.

    Frame numbers are the annotation numbers (``000123.pts`` is frame 123). ``#`` starts a comment.
    """
    if path is None:
        return {}
    table: dict[str, set[int]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split("#", 1)[0].replace(",", " ").split()
        if not parts:
            continue
        clip, frames = parts[0], table.setdefault(parts[0], set())
        if len(parts) == 1:
            raise ValueError(f"{path}:{number}: clip {clip} lists no frames")
        for item in parts[1:]:
            try:
                lo, _, hi = item.partition("-")
                first, last = int(lo), int(hi or lo)
            except ValueError:
                raise ValueError(f"{path}:{number}: {item!r} is not a frame number or range A-B") from None
            frames.update(range(first, last + 1))
    return table

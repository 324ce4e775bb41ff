"""Which inputs a command line names, and where each one's outputs go.

An argument is a video file, a folder or a text file listing paths (one per line, ``#``
comments, relative paths relative to the list file). A folder that is a 300-VW clip is
one input; any other folder is searched recursively: every video file, every 300-VW clip
(not searched further) and every folder holding images (one image-folder input) is an
input. Hidden folders are skipped.

Each input gets a ``key``: its path relative to the folder it was found in (a file named
directly: its name), without the file suffix, as a POSIX path; its outputs are
``DIR/<key>.csv`` and ``DIR/<key>.parquet``. Two inputs with the same key (``a.mp4`` and
``a.avi``) get ``~2``, ``~3`` appended in command-line order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_300vw_clip

LIST_SUFFIXES = (".txt", ".lst", ".list")
VIDEO, CLIP_300VW, IMAGES = "video", "300vw", "images"


@dataclass(frozen=True)
class InputItem:
    path: Path  # absolute
    key: str  # output path relative to DIR, without suffix
    kind: str  # VIDEO, CLIP_300VW or IMAGES


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _walk(root: Path, skip: Path | None) -> list[tuple[Path, str]]:
    """(path, kind) of every input below ``root``, in sorted order."""
    found: list[tuple[Path, str]] = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        if is_300vw_clip(here):
            found.append((here, CLIP_300VW))
            subfolders.clear()
            continue
        found += [(here / f, VIDEO) for f in sorted(files) if Path(f).suffix.lower() in VIDEO_SUFFIXES]
        if _has_images(here):
            found.append((here, IMAGES))
    return found


def _key(path: Path, base: Path | None, kind: str) -> str:
    relative = path.relative_to(base) if base is not None and path != base else PurePosixPath(path.name)
    relative = PurePosixPath(*Path(relative).parts)
    return str(relative.with_suffix("") if kind == VIDEO else relative)


def _expand(spec: Path, skip: Path | None, listed_from: set[Path]) -> list[tuple[Path, str, str]]:
    """(path, kind, key) of the inputs ``spec`` names."""
    path = spec.expanduser().absolute()
    if path.is_dir():
        if is_300vw_clip(path):
            return [(path, CLIP_300VW, path.name)]
        return [(p, kind, _key(p, path, kind)) for p, kind in _walk(path, skip)]
    if path.suffix.lower() in LIST_SUFFIXES and path.is_file():
        if path.resolve() in listed_from:
            raise ValueError(f"list file {path} includes itself")
        items = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                entry = Path(line).expanduser()
                entry = entry if entry.is_absolute() else path.parent / entry
                items += _expand(entry, skip, listed_from | {path.resolve()})
        return items
    # A file (or a missing path): a video. If it is not one, reading it says so, per input.
    return [(path, VIDEO, _key(path, None, VIDEO))]


def discover_inputs(specs: list[str | Path], out_dir: str | Path | None = None) -> list[InputItem]:
    """The inputs ``specs`` name, each once, in command-line order. ``out_dir`` is never searched."""
    skip = Path(out_dir).resolve() if out_dir is not None else None
    items: list[InputItem] = []
    seen_paths: set[Path] = set()
    keys: set[str] = set()
    for spec in specs:
        for path, kind, key in _expand(Path(spec), skip, set()):
            if path.resolve() in seen_paths:
                continue
            seen_paths.add(path.resolve())
            unique, n = key, 1
            while unique in keys:
                n += 1
                unique = f"{key}~{n}"
            keys.add(unique)
            items.append(InputItem(path, unique, kind))
    return items

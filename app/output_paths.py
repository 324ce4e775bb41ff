"""One check before any command writes: no output is, or resolves to, an input or another output.

Existing files are compared by identity (``os.path.samefile``: device and inode, so symlinks and
hard links match); paths not yet written by ``normcase(realpath)``, case-folded where the folder
lives on a case-insensitive file system. A refusal (``OutputCollision``, a ``ValueError``, so
the CLI exits 2) names both paths and comes before anything is opened.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping


class OutputCollision(ValueError):
    """An output path that would overwrite an input or share a file with another output."""


def _case_insensitive(folder: str) -> bool:
    """True when ``folder``'s file system ignores case (its name, case swapped, is the same folder)."""
    folder = os.path.realpath(folder)
    head, name = os.path.split(folder)
    if not name or name.swapcase() == name:
        return False
    swapped = os.path.join(head, name.swapcase())
    try:
        return os.path.samefile(folder, swapped)
    except OSError:
        return False


def path_key(path: str | os.PathLike) -> str:
    """A comparable key for a path that may not exist yet."""
    real = os.path.normcase(os.path.realpath(os.fspath(path)))
    return real.casefold() if _case_insensitive(os.path.dirname(real) or ".") else real


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (existing: by device and inode; else by ``path_key``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return path_key(a) == path_key(b)


def _input_files(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """The existing input files: each file given, and every file in a folder given."""
    files = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            for root, _dirs, names in os.walk(item):
                files.extend(os.path.join(root, name) for name in names)
        elif os.path.exists(item):
            files.append(item)
    return files


def check_outputs(inputs: Iterable[str | os.PathLike], outputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse (``OutputCollision``) an output that is an existing folder, an input file (or a file
    inside an input folder), or the same file as another output. ``outputs`` maps an option name
    (``--out``) to its path; ``None`` entries are ignored."""
    named = [(option, os.fspath(path)) for option, path in outputs.items() if path is not None]
    for option, path in named:
        if os.path.isdir(path):
            raise OutputCollision(f"{option} {path} is an existing folder, not a file to write")
    files = _input_files(inputs)
    for option, path in named:
        for source in files:
            if same_file(path, source):
                raise OutputCollision(f"{option} {path} is the input {source}: refusing to overwrite it")
    for i, (option, path) in enumerate(named):
        for other_option, other in named[i + 1:]:
            if same_file(path, other):
                raise OutputCollision(f"{option} {path} and {other_option} {other} are the same file: "
                                      "give each output its own path")


def check_output_folder(inputs: Iterable[str | os.PathLike], folder: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output folder that is an existing file, or an input file."""
    folder = os.fspath(folder)
    for source in _input_files(inputs):
        if same_file(folder, source):
            raise OutputCollision(f"{option} {folder} is the input {source}: refusing to overwrite it")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputCollision(f"{option} {folder} is an existing file, not a folder")


__all__ = ["OutputCollision", "check_output_folder", "check_outputs", "path_key", "same_file"]

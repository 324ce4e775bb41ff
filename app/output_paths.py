"""One check before any command writes: no output is, or resolves to, an input or another output.

Existing files are compared by identity (``os.path.samefile``: device and inode, so symlinks and
hard links match); paths not yet written by ``normcase(realpath)``, case-folded where the folder
lives on a case-insensitive file system. A refusal (``OutputCollision``, a ``ValueError``, so
the CLI exits 2) names both paths and comes before anything is opened. Commands that write
many files list them all (``check_outputs`` takes (option, path) pairs); a folder a command
removes and writes again must not hold an input (``check_replaced_folders``).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path


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
        if item is None:  # an optional input not given
            continue
        item = os.fspath(item)
        if os.path.isdir(item):
            for root, _dirs, names in os.walk(item):
                files.extend(os.path.join(root, name) for name in names)
        elif os.path.exists(item):
            files.append(item)
    return files


def check_outputs(inputs: Iterable[str | os.PathLike],
                  outputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]],
                  ) -> None:
    """Refuse (``OutputCollision``) an output that is an existing folder, an input file (or a file
    inside an input folder), or the same file as another output. ``outputs`` maps an option name
    (``--out``) to its path, as a mapping or as (option, path) pairs when one option writes several
    files; ``None`` paths are ignored."""
    pairs = outputs.items() if isinstance(outputs, Mapping) else outputs
    named = [(option, os.fspath(path)) for option, path in pairs if path is not None]
    for option, path in named:
        if os.path.isdir(path):
            raise OutputCollision(f"{option} {path} is an existing folder, not a file to write")
    # Keys instead of pairwise ``same_file`` calls (a command may write thousands of files): an
    # existing file by device and inode, a path not yet written by ``path_key``.
    keys = [_identity(path) for _option, path in named]
    sources = {}
    if any(key[0] == "file" for key in keys):  # an output not yet written cannot be an input
        for source in _input_files(inputs):
            sources.setdefault(_identity(source), source)
    for (option, path), key in zip(named, keys):
        if key in sources:
            raise OutputCollision(f"{option} {path} is the input {sources[key]}: refusing to overwrite it")
    first: dict[tuple, tuple[str, str]] = {}
    for (option, path), key in zip(named, keys):
        if key in first:
            other_option, other = first[key]
            raise OutputCollision(f"{other_option} {other} and {option} {path} are the same file: "
                                  "give each output its own path")
        first[key] = (option, path)


def _identity(path: str) -> tuple:
    """What ``same_file`` compares: (device, inode) of an existing file, else the ``path_key``."""
    try:
        status = os.stat(path)
    except OSError:
        return ("path", path_key(path))
    return ("file", status.st_dev, status.st_ino)


def check_output_folder(inputs: Iterable[str | os.PathLike], folder: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output folder that is an existing file, or an input file."""
    folder = os.fspath(folder)
    if not os.path.exists(folder) or os.path.isdir(folder):
        return  # a folder not yet made, or one already there: neither is an input file
    for source in _input_files(inputs):
        if same_file(folder, source):
            raise OutputCollision(f"{option} {folder} is the input {source}: refusing to overwrite it")
    raise OutputCollision(f"{option} {folder} is an existing file, not a folder")


def why_not_writable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (None when they can): checked before any output is made."""
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    try:  # the real test: permissions, read-only drives, and what else the system refuses
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".facetrack-probe-"):
            pass
    except OSError as error:
        return f"folder {folder} is not writable ({error.strerror or error})"
    return None


class UnwritableOutput(OSError):
    """An output folder in which no file can be created (the CLI exits 2 with the message)."""


def check_writable_folder(folder: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output folder in which no file can be created, or, where it is not made yet,
    whose nearest existing parent folder is so: ``UnwritableOutput`` naming both, as ``track``
    names an unwritable ``--out`` (``cannot write PATH: folder F is not writable (REASON)``)."""
    path = Path(folder)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))  # as the user spelt it
    reason = (f"{existing} is a file, not a folder" if not existing.is_dir() else why_not_writable(existing))
    if reason:
        raise UnwritableOutput(f"cannot write {option} {folder}: {reason}")


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both resolved, case as the file system has it)."""
    path, folder = path_key(path), path_key(folder)
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def check_replaced_folders(inputs: Iterable[str | os.PathLike], folders: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Refuse a folder a command removes and writes again (``option``, path) that is, or holds, an
    input (a file or folder given, or one inside a folder given), or that is an existing file."""
    inputs = [os.fspath(item) for item in inputs if item is not None and os.path.exists(item)]
    for option, folder in folders:
        folder = os.fspath(folder)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise OutputCollision(f"{option} {folder} is an existing file, not a folder")
        if not os.path.isdir(folder):
            continue
        for source in inputs:
            if _inside(source, folder):
                raise OutputCollision(f"{option} {folder} would be replaced and it holds the input {source}: "
                                      "refusing to remove it")


__all__ = ["OutputCollision", "UnwritableOutput", "check_output_folder", "check_outputs", "check_replaced_folders",
           "check_writable_folder", "path_key", "same_file", "why_not_writable"]

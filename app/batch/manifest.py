"""``DIR/manifest.json``: what was annotated, how, with what, and how far it got.

Top level: ``model`` (name, weight files and their SHA-256), ``settings`` (every pipeline
option of ``track`` plus the chunking), ``settings_id`` (a hash of both), ``versions``
(packages), ``command``, ``updated``. ``inputs`` maps each input's key to its path, kind,
size, mtime, content SHA-256, the ``settings_id`` it was run with, ``status``, and
``frames``, ``faces`` (distinct face ids), ``rows`` (faces x frames), ``seconds`` (worker
time), ``write_seconds`` (the driver's), ``chunks``/``chunks_done``, ``workers`` (chunks
each worker ran), ``problems`` and the output files.

Status: ``pending`` (listed, not started), ``partial`` (some chunks written: a re-run
finishes it; or the outputs are complete, ``csv`` and ``parquet`` set, but the input had
problems: frames that could not be read, named in ``problems`` and listed in
``skipped_frames``, a truncated file, skipped images), ``done`` (outputs complete, every
frame read), ``failed`` (``reason`` says why). A re-run skips inputs that are done, or
complete with problems, with the same ``settings_id`` and unchanged content. The file is replaced
atomically, so it is always either the old or the new version.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from app.batch.inputs import InputItem
from models.registry import (ASSETS_DIR, DLIB68, FLIP_SUFFIX, MEDIAPIPE68, NO_REPAIR_SUFFIX, UnknownModelError,
                             available_models)

MANIFEST_NAME = "manifest.json"
PENDING, PARTIAL, DONE, FAILED = "pending", "partial", "done", "failed"
FORMAT = 1
_PACKAGES = ("facetrack68", "numpy", "opencv-contrib-python", "onnxruntime", "mediapipe", "ray", "pyarrow")


@dataclass
class InputEntry:
    path: str
    kind: str
    status: str = PENDING
    settings_id: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)
    skipped_frames: list[int] = field(default_factory=list)  # frames that could not be read (named in problems)
    frames_declared: int | None = None
    frames: int = 0
    faces: int = 0
    rows: int = 0
    chunks: int = 0
    chunks_done: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0  # the driver's time writing this input's files
    workers: dict[str, int] = field(default_factory=dict)  # chunks per worker (host:pid)
    csv: str | None = None
    parquet: str | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_info(name: str) -> dict:
    """The model's name and weight files with their hashes. UnknownModelError for unknown names."""
    base = name[: -len(FLIP_SUFFIX)] if name.endswith(FLIP_SUFFIX) else name
    if name not in available_models() and base not in available_models():
        raise UnknownModelError(f"unknown landmark model {name!r}; available: {', '.join(available_models())}")
    if base == MEDIAPIPE68:
        return {"name": name, "weights": {}, "package": f"mediapipe=={_version('mediapipe')}"}
    if base == DLIB68:
        from models.dlib68 import default_weights

        files = [default_weights()]
    else:
        from models.manifest import load_manifest

        manifest = load_manifest(ASSETS_DIR / f"{base.replace(NO_REPAIR_SUFFIX, '')}.json")
        files = [manifest.path, manifest.onnx_path]
        if manifest.repair is not None and NO_REPAIR_SUFFIX not in base:
            files.append(manifest.dictionary_path)
    return {"name": name, "weights": {path.name: file_sha256(path) for path in files}}


def settings_of(pipeline_args: argparse.Namespace, **chunking) -> dict:
    """Every option that changes the output: the pipeline's (``track``'s) and the chunking."""
    settings = dict(sorted(vars(pipeline_args).items()))
    if settings.get("detector_model") and Path(settings["detector_model"]).is_file():
        settings["detector_model_sha256"] = file_sha256(Path(settings["detector_model"]))
    settings.update(chunking)
    return settings


def settings_id(settings: dict, model: dict) -> str:
    text = json.dumps({"settings": settings, "model": model}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict:
    return {"python": platform.python_version(), **{name: _version(name) for name in _PACKAGES}}


class Manifest:
    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        self.header: dict = {}
        self.inputs: dict[str, InputEntry] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or not isinstance(data.get("inputs", {}), dict):
                    raise ValueError("not an object with an 'inputs' object")
                self.header = {k: v for k, v in data.items() if k != "inputs"}
                self.inputs = {key: InputEntry(**entry) for key, entry in data.get("inputs", {}).items()}
            except (ValueError, TypeError, AttributeError) as error:
                raise ValueError(
                    f"{self.path} is not a batch manifest ({error}): move it away or use another --out"
                ) from None

    def entry(self, item: InputItem) -> InputEntry:
        """The entry of ``item`` (made when new; a moved input keeps its key)."""
        entry = self.inputs.get(item.key)
        if entry is None or entry.path != str(item.path):
            entry = self.inputs[item.key] = InputEntry(str(item.path), item.kind)
        return entry

    def save(self) -> None:
        self.header["format"] = FORMAT
        self.header["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = {**self.header, "inputs": {key: asdict(entry) for key, entry in self.inputs.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

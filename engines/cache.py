"""On-disk cache of built TensorRT engines (and the builder's timing caches).

An engine is only valid for the exact network, GPU model, TensorRT version, precision and
optimisation profile it was built for, so all of them go into its key. Files live under
``engines.files.cache_dir() / "engines"``, are written atomically (``engines.files.atomic_write``),
and a cached engine that fails to load is deleted and rebuilt with a message rather than
crashing the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from engines.files import atomic_write, cache_dir

log = logging.getLogger(__name__)

T = TypeVar("T")


def engine_dir(root: str | Path | None = None) -> Path:
    """``root`` or ``cache_dir()/engines``, created if missing."""
    if root is None:
        root = cache_dir() / "engines"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``model_name`` only makes the file name readable."""

    onnx_sha256: str
    gpu_name: str
    compute_capability: str  # "8.9"
    trt_version: str
    precision: str = "fp16"
    max_batch: int = 8
    model_name: str = "model"

    def digest(self) -> str:
        fields = asdict(self)
        del fields["model_name"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def filename(self) -> str:
        return f"{_slug(self.model_name)}-{self.precision}-b{self.max_batch}-{self.digest()[:20]}.engine"


def engine_key(
    onnx_path: str | Path,
    *,
    gpu_name: str,
    compute_capability: str,
    trt_version: str,
    precision: str = "fp16",
    max_batch: int = 8,
) -> EngineKey:
    onnx_path = Path(onnx_path)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        gpu_name=gpu_name,
        compute_capability=str(compute_capability),
        trt_version=trt_version,
        precision=precision,
        max_batch=int(max_batch),
        model_name=onnx_path.stem,
    )


def engine_path(key: EngineKey, root: str | Path | None = None) -> Path:
    return engine_dir(root) / key.filename()


def timing_cache_path(gpu_name: str, compute_capability: str, trt_version: str, root: str | Path | None = None) -> Path:
    """The builder's timing cache: shared by every model, specific to the GPU and TensorRT version."""
    return engine_dir(root) / f"timing-{_slug(gpu_name)}-sm{compute_capability}-trt{trt_version}.cache"


def load_or_build(
    key: EngineKey,
    build: Callable[[], bytes],
    load: Callable[[bytes], T],
    *,
    root: str | Path | None = None,
    on_message: Callable[[str], None] | None = None,
) -> T:
    """``load`` the cached engine for ``key``; build, store and load it when absent or unloadable.

    A cached file that ``load`` rejects (corrupt, truncated, built by another TensorRT) is
    reported through ``on_message``, deleted and rebuilt. Errors from ``build`` and from
    loading a freshly built engine propagate (and leave no engine file behind).
    """
    path = engine_path(key, root)
    if path.is_file():
        try:
            return load(path.read_bytes())
        except Exception as exc:
            _say(on_message, f"Cached engine {path.name} could not be loaded ({exc}); rebuilding it.")
            path.unlink(missing_ok=True)
    data = build()
    atomic_write(path, data)
    try:
        loaded = load(data)
    except BaseException:
        path.unlink(missing_ok=True)  # an engine that cannot load here must not be retried on every start
        raise
    atomic_write(path.with_suffix(".json"), json.dumps(asdict(key), indent=1).encode())
    return loaded


def _say(on_message: Callable[[str], None] | None, text: str) -> None:
    if on_message is None:
        log.warning(text)
    else:
        on_message(text)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "x"

"""Finished clips saved beside the report and reused by a later run with the same settings and data."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from app.eval.vw300.config import EvalConfig
from app.eval.vw300.records import CACHE_VERSION, FRAME_FIELDS, ClipResult
from engines.files import atomic_write, atomic_writer

def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value):
    if value is None:
        return math.nan
    return value


def save_clip(clip_dir: Path, result: ClipResult, rows: list[dict], arrays: dict) -> None:
    clip_dir.mkdir(parents=True, exist_ok=True)
    stem = clip_dir / result.clip

    write_csv(stem.with_suffix(".csv"), rows, FRAME_FIELDS)
    if arrays:
        with atomic_writer(stem.with_suffix(".npz")) as handle:
            np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    # the .json is written last: its presence marks the clip as done
    summary = json.dumps(_jsonable(asdict(result)), indent=1)
    atomic_write(stem.with_suffix(".json"), summary)


_FLOAT_FIELDS = ("nme68", "nme49", "nme68_raw", "nme49_raw", "jitter", "jitter_raw")


def load_clip(clip_dir: Path, clip: str, config: EvalConfig, signature: dict, unreliable: set[int]):
    """A finished clip's cached result and rows, or None when absent or made differently."""
    stem = clip_dir / clip
    try:
        data = json.loads(stem.with_suffix(".json").read_text())
        with stem.with_suffix(".csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError):
        return None
    if (
        data.get("version") != CACHE_VERSION
        or data.get("config") != asdict(config)
        or data.get("signature") != json.loads(json.dumps(signature))
        or data.get("unreliable_frames") != sorted(unreliable)
    ):
        return None
    for key in _FLOAT_FIELDS + ("wall_ms", "pipeline_ms", "detect_ms", "cpu_ms"):
        data[key] = _from_json(data.get(key))
    result = ClipResult(**data)
    for row in rows:
        for key in _FLOAT_FIELDS:
            row[key] = float(row[key]) if row[key] != "" else ""
        for key in ("frame", "detector_ran", "faces"):
            row[key] = int(row[key])
        for key in ("detect_ms", "pipeline_ms", "wall_ms", "cpu_ms"):
            row[key] = float(row[key])
    return result, rows


def write_csv(path: Path, rows: list[dict], fields: Sequence[str]) -> None:
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

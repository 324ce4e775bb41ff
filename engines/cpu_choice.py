"""The fastest CPU back-end and precision for one network on this machine: measured once, cached.

With "auto" for both back-end and precision on a machine without a GPU back-end, a network
runs what a short measurement found fastest among the CPU candidates its model allows: ONNX
Runtime FP32, ONNX Runtime INT8 (only when the model's INT8 file met its accuracy bar, the
caller's ``int8_allowed``), OpenVINO FP32 and OpenVINO INT8 (its NNCF IR, on the same condition). Each candidate is opened, warmed up and timed
at batch 1 on zeros; the medians are kept per machine (CPU model, the instruction sets that
decide the speed, runtime versions, threads) and per file digest in
``engine_dir()/cpu_choice.json``, like the TensorRT engine cache, so a machine measures a
network once. Figures taken while the machine was busy (load average above its CPU count) are
measured again on a later open when it is quiet. ``$FACETRACK_CPU_CHOICE=fixed`` skips the measurement (the fixed order: INT8 on
ONNX Runtime when allowed, else ONNX Runtime FP32).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.base import Backend, Runner
from engines.cache import engine_dir, file_sha256
from engines.files import atomic_write
from engines.precision import Precision

log = logging.getLogger(__name__)

CACHE_FILE = "cpu_choice.json"
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")
WARMUP_CALLS = 5
TIMED_CALLS = 25


@dataclass(frozen=True)
class Candidate:
    backend: Backend
    precision: Precision
    path: Path

    @property
    def name(self) -> str:
        return f"{self.backend.value}/{self.precision.value}"


@dataclass(frozen=True)
class CpuChoice:
    backend: Backend
    precision: Precision
    median_ms: dict[str, float]  # candidate name -> median ms per call at batch 1
    measured: bool  # False: taken from the cache

    def describe(self, network: str) -> str:
        times = ", ".join(f"{name} {ms:.2f} ms" for name, ms in sorted(self.median_ms.items(), key=lambda kv: kv[1]))
        how = "measured now" if self.measured else "measured earlier on this machine"
        return f"{network}: {self.backend.label} {self.precision.value.upper()} is the fastest here ({times}; {how})."


def machine_key(threads: int | None) -> str:
    """What the speed of a CPU back-end depends on, besides the file."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    versions = []
    for module in ("onnxruntime", "openvino"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} -")
    speed = ",".join(f for f in SPEED_FLAGS if f in flags) or "-"
    return f"{model} | {speed} | {os.cpu_count()} cpus | threads {threads} | {' | '.join(versions)}"


def candidates(path: Path, int8_path: Path | None, int8_allowed: bool, openvino_available: bool,
               openvino_int8_path: Path | None = None, openvino_int8_allowed: bool = False) -> list[Candidate]:
    found = [Candidate(Backend.ORT_CPU, Precision.FP32, path)]
    if int8_path is not None and int8_allowed:
        found.append(Candidate(Backend.ORT_CPU, Precision.INT8, int8_path))
    if openvino_available:
        found.append(Candidate(Backend.OPENVINO, Precision.FP32, path))
        if openvino_int8_path is not None and openvino_int8_allowed:
            found.append(Candidate(Backend.OPENVINO, Precision.INT8, openvino_int8_path))
    return found


def time_runner(runner: Runner, calls: int = TIMED_CALLS, warmup: int = WARMUP_CALLS) -> float:
    """Median wall milliseconds of one batch-1 call on zeros."""
    feed = {spec.name: np.zeros(tuple(d if isinstance(d, int) else 1 for d in spec.shape), dtype=spec.dtype)
            for spec in runner.inputs}
    for _ in range(warmup):
        runner.infer(feed)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        runner.infer(feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def choose(options: list[Candidate], open_candidate: Callable[[Candidate], Runner], threads: int | None,
           cache_root: str | Path | None = None) -> CpuChoice | None:
    """The fastest of ``options`` (from the cache when this machine measured them before); None
    when there is nothing to choose or the measurement is turned off."""
    if len(options) < 2 or os.environ.get("FACETRACK_CPU_CHOICE", "").lower() == "fixed":
        return None
    key = json.dumps({"machine": machine_key(threads),
                      "files": {c.name: file_sha256(c.path) for c in options}}, sort_keys=True)
    cache_path = engine_dir(cache_root) / CACHE_FILE
    cache = _read_cache(cache_path)
    entry = cache.get(key)
    medians = entry.get("median_ms") if isinstance(entry, dict) else None
    stale = isinstance(entry, dict) and entry.get("busy", False) and _load() < 0.5 * (os.cpu_count() or 1)
    measured = False
    if stale or not isinstance(medians, dict) or set(medians) != {c.name for c in options}:
        medians = {}
        busy = _load() > (os.cpu_count() or 1)
        for candidate in options:
            try:
                runner = open_candidate(candidate)
            except Exception as exc:  # a candidate that cannot open is simply not chosen
                log.debug("cpu choice: %s cannot open (%s)", candidate.name, exc)
                continue
            try:
                medians[candidate.name] = time_runner(runner)
            finally:
                runner.close()
        if not medians:
            return None
        measured = True
        cache[key] = {"median_ms": medians, "busy": busy}
        atomic_write(cache_path, json.dumps(cache, indent=1, sort_keys=True))
    best = min(medians, key=medians.get)
    winner = next(c for c in options if c.name == best)
    return CpuChoice(winner.backend, winner.precision, dict(medians), measured)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return 0.0


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

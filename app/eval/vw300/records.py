"""What flows between the modules: a clip's result, a category's summary, the run's report, and the per-frame row fields."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from app.eval.vw300.config import EvalConfig

CACHE_VERSION = 2
OVERALL = "overall"  # the summary over every category (synthetic clips are category "all")

OK, MISS, NO_ANNOTATION, UNRELIABLE = "ok", "miss", "no_annotation", "unreliable"
FRAME_FIELDS = (
    "clip", "category", "frame", "status", "detector_ran", "faces",
    "nme68", "nme49", "nme68_raw", "nme49_raw", "jitter", "jitter_raw",
    "detect_ms", "pipeline_ms", "wall_ms", "cpu_ms",
)  # fmt: skip

@dataclass
class ClipResult:
    """One clip's summary (what ``clips/<ID>.json`` holds)."""

    clip: str
    category: str
    folder: str
    frames: int = 0  # frames processed
    scored: int = 0  # annotated, reliable frames (misses included)
    misses: int = 0
    no_annotation: int = 0
    unreliable: int = 0
    nme68: float = math.nan  # means over the found faces
    nme49: float = math.nan
    nme68_raw: float = math.nan
    nme49_raw: float = math.nan
    jitter: float = math.nan  # mean over consecutive scored pairs
    jitter_raw: float = math.nan
    jitter_pairs: int = 0
    lag_frames: float | None = None
    detector_runs: int = 0
    detect_ms: float = 0.0  # mean per frame (amortised over frames without a detector run)
    pipeline_ms: float = 0.0  # mean per frame, the pipeline's own stage timings
    wall_ms: float = 0.0  # mean per frame, wall clock around Pipeline.process
    cpu_ms: float = 0.0  # mean per frame, CPU time of this process (all threads) around Pipeline.process
    problems: list[str] = field(default_factory=list)  # annotation and reading problems, with file names
    skipped: int = 0  # frames that could not be read (a bad image, a damaged video), named in ``problems``
    error: str | None = None  # the clip could not be evaluated at all
    lag_cost: dict = field(default_factory=dict)  # name -> (cost sums per LAG_GRID value, usable frames)
    unreliable_frames: list[int] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)
    version: int = CACHE_VERSION


@dataclass
class CategorySummary:
    category: str
    clips: int
    frames: int
    scored: int
    misses: int
    no_annotation: int
    unreliable: int
    nme68: float
    nme49: float
    auc68: float
    fr68: float
    auc49: float
    fr49: float
    nme68_raw: float
    auc68_raw: float
    fr68_raw: float
    jitter: float
    jitter_raw: float
    lag_frames: float | None
    detector_runs: int
    detect_ms: float
    pipeline_ms: float
    wall_ms: float
    wall_ms_median: float
    cpu_ms: float


@dataclass
class EvalReport:
    config: EvalConfig
    root: Path
    out_dir: Path
    clips: list[ClipResult]
    categories: list[CategorySummary]
    missing_clips: list[str]
    resumed: list[str]
    report_path: Path

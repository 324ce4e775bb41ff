"""Summaries per category and the report: ``report.md`` with its tables."""
from __future__ import annotations

import datetime
import math
import os
import platform
from pathlib import Path

import numpy as np

from app.eval.vw300.config import THRESHOLD
from app.eval.vw300.measures import lag_from_costs
from app.eval.vw300.records import MISS, OK, CategorySummary, ClipResult, EvalReport
from engines.files import atomic_write
from models import metrics

def summarise_category(name: str, clips: list[ClipResult], rows: list[dict]) -> CategorySummary:
    scored = [r for r in rows if r["status"] in (OK, MISS)]
    e68 = np.array([r["nme68"] for r in scored], float)
    e49 = np.array([r["nme49"] for r in scored], float)
    e68_raw = np.array([r["nme68_raw"] for r in scored], float)
    jit = np.array([r["jitter"] for r in rows if r["jitter"] != ""], float)
    jit_raw = np.array([r["jitter_raw"] for r in rows if r["jitter_raw"] != ""], float)
    has = e68.size > 0
    n = max(len(rows), 1)
    return CategorySummary(
        category=name,
        clips=len(clips),
        frames=len(rows),
        scored=len(scored),
        misses=metrics.count_misses(e68) if has else 0,
        no_annotation=sum(c.no_annotation for c in clips),
        unreliable=sum(c.unreliable for c in clips),
        nme68=metrics.mean_nme(e68) if has else math.nan,
        nme49=metrics.mean_nme(e49) if has else math.nan,
        auc68=metrics.auc(e68, THRESHOLD) if has else math.nan,
        fr68=metrics.failure_rate(e68, THRESHOLD) if has else math.nan,
        auc49=metrics.auc(e49, THRESHOLD) if has else math.nan,
        fr49=metrics.failure_rate(e49, THRESHOLD) if has else math.nan,
        nme68_raw=metrics.mean_nme(e68_raw) if has else math.nan,
        auc68_raw=metrics.auc(e68_raw, THRESHOLD) if has else math.nan,
        fr68_raw=metrics.failure_rate(e68_raw, THRESHOLD) if has else math.nan,
        jitter=float(jit.mean()) if jit.size else math.nan,
        jitter_raw=float(jit_raw.mean()) if jit_raw.size else math.nan,
        lag_frames=lag_from_costs(c.lag_cost.get("shown_vs_raw", ([], 0)) for c in clips),
        detector_runs=sum(int(r["detector_ran"]) for r in rows),
        detect_ms=sum(float(r["detect_ms"]) for r in rows) / n,
        pipeline_ms=sum(float(r["pipeline_ms"]) for r in rows) / n,
        wall_ms=sum(float(r["wall_ms"]) for r in rows) / n,
        wall_ms_median=float(np.median([float(r["wall_ms"]) for r in rows])) if rows else math.nan,
        cpu_ms=sum(float(r["cpu_ms"]) for r in rows) / n,
    )


def fmt_pct(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage with ``digits`` decimals; "–" when unknown."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{100 * x:.{digits}f}"


def fmt_num(x: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals; "–" when unknown."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def write_report(report: EvalReport, command: str) -> Path:
    out = report.out_dir
    cfg = report.config
    lines = [
        f"# 300-VW style evaluation: {cfg.model}",
        "",
        f"- clips: `{report.root}` ({len(report.clips)} clips)",
        f"- protocol: {cfg.protocol()}",
        *([f"- command: `{command}`"] if command else []),
        f"- machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs),"
        f" Python {platform.python_version()}",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        "- NME: inter-ocular (outer eye corners), in % of it; means over the found faces; a miss counts as"
        f" a failure in AUC@{THRESHOLD} and FR@{THRESHOLD}.",
        "- jitter: mean frame-to-frame change of the error vector, % of inter-ocular (see `app/eval/vw300/measures.py`);"
        " *shown* = the landmarks the user sees, *raw* = before smoothing.",
        "- lag: the shift (frames) that best aligns the shown track with the raw one, pooled over clips;"
        " meaningful on moving clips only (on a still face there is no motion to align).",
    ]
    if report.resumed:
        lines.append(f"- {len(report.resumed)} clips were taken from earlier runs into this folder (same settings)")
    lines += ["", "## Per category", ""]
    lines.append(
        "| category | clips | frames | scored | misses | no annot. | unreliable | NME68 % | NME49 % "
        f"| AUC@{THRESHOLD} (68) | FR@{THRESHOLD} (68) % | AUC@{THRESHOLD} (49) | FR@{THRESHOLD} (49) % "
        f"| NME68 raw % | AUC@{THRESHOLD} (68 raw) | FR@{THRESHOLD} (68 raw) % | jitter shown % | jitter raw % "
        "| lag (frames) |"
    )
    lines.append("|" + "---|" * 19)
    for s in report.categories:
        lines.append(
            f"| {s.category} | {s.clips} | {s.frames} | {s.scored} | {s.misses} | {s.no_annotation} | {s.unreliable} "
            f"| {fmt_pct(s.nme68)} | {fmt_pct(s.nme49)} | {fmt_num(s.auc68, 4)} | {fmt_pct(s.fr68)} | {fmt_num(s.auc49, 4)} "
            f"| {fmt_pct(s.fr49)} | {fmt_pct(s.nme68_raw)} | {fmt_num(s.auc68_raw, 4)} | {fmt_pct(s.fr68_raw)} "
            f"| {fmt_pct(s.jitter, 3)} | {fmt_pct(s.jitter_raw, 3)} "
            f"| {fmt_num(s.lag_frames)} |"
        )
    lines += [
        "",
        "## Speed (ms per frame, means over all frames)",
        "",
        "*detect*: the detector's time, amortised over all frames; *pipeline*: the sum of the pipeline's"
        " stage timings; *wall*: wall clock around `Pipeline.process`; *CPU*: this process's CPU time"
        " (all threads) around it, which depends less on other load on a shared machine.",
        "",
        "| category | frames | detector runs | detect ms/frame | pipeline ms/frame | wall ms/frame | fps (wall) "
        "| median wall ms | CPU ms/frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.categories:
        fps = 1000.0 / s.wall_ms if s.wall_ms > 0 else math.nan
        lines.append(
            f"| {s.category} | {s.frames} | {s.detector_runs} | {fmt_num(s.detect_ms)} | {fmt_num(s.pipeline_ms)} "
            f"| {fmt_num(s.wall_ms)} | {fmt_num(fps, 1)} | {fmt_num(s.wall_ms_median)} | {fmt_num(s.cpu_ms)} |"
        )
    lines += ["", "## Per clip", ""]
    lines.append(
        "| clip | category | frames | scored | misses | no annot. | unreliable | NME68 % | NME49 % "
        "| jitter shown % | jitter raw % | lag | detector runs | wall ms/frame | notes |"
    )
    lines.append("|" + "---|" * 15)
    for c in report.clips:
        notes = c.error or (f"{len(c.problems)} annotation problems" if c.problems else "")
        lines.append(
            f"| {c.clip} | {c.category} | {c.frames} | {c.scored} | {c.misses} | {c.no_annotation} | {c.unreliable} "
            f"| {fmt_pct(c.nme68)} | {fmt_pct(c.nme49)} | {fmt_pct(c.jitter, 3)} | {fmt_pct(c.jitter_raw, 3)} "
            f"| {fmt_num(c.lag_frames)} | {c.detector_runs} | {fmt_num(c.wall_ms)} | {notes} |"
        )
    problems = [(c.clip, p) for c in report.clips for p in c.problems]
    errors = [(c.clip, c.error) for c in report.clips if c.error]
    if problems or errors or report.missing_clips:
        lines += ["", "## Problems", ""]
        for clip in report.missing_clips:
            lines.append(f"- {clip}: asked for, but not in `{report.root}`")
        for clip, error in errors:
            lines.append(f"- {clip}: not evaluated: {error}")
        for clip, problem in problems:
            lines.append(f"- {clip}: {problem}")
    plots = sorted(out.glob("ced_*.png"))
    if plots:
        lines += ["", "## CED", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = out / "report.md"
    atomic_write(path, "\n".join(lines) + "\n")
    return path

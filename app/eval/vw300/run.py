"""``evaluate``: every selected clip under a root, resumed where it stopped, then the summaries, CSV files, CED plots and report."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from app.eval.vw300.clips import clip_signature, find_clips, read_unreliable, select_clips
from app.eval.vw300.config import THRESHOLD, EvalConfig, cfg_title, default_out_dir
from app.eval.vw300.records import FRAME_FIELDS, MISS, OK, OVERALL, CategorySummary, ClipResult, EvalReport
from app.eval.vw300.report import summarise_category, write_report
from app.eval.vw300.resume import load_clip, save_clip, write_csv
from app.eval.vw300.score import build_eval_pipeline, evaluate_clip
from app.eval.plots import plot_ced
from app.eval.vw_splits import OTHER, TEST_CATEGORIES
from app.output_paths import check_output_folder, check_outputs
from engines.files import atomic_write

REPORT_FILES = ("frames.csv", "clips.csv", "categories.csv", "run.json", "report.md")


def check_planned_outputs(out: Path, inputs: Sequence, clip_ids: Sequence[str]) -> None:
    """Refuse (``OutputCollision``, exit 2) before anything is written when a file this run would
    write (``REPORT_FILES``, the CED plots, ``clips/ID.*``) is an input or ``out`` is an input file."""
    check_output_folder(inputs, out)
    check_output_folder(inputs, out / "clips")
    planned = [out / name for name in REPORT_FILES]
    planned += [out / f"ced_{category}.png" for category in ("train", *TEST_CATEGORIES, OTHER, OVERALL)]
    planned += [out / "clips" / f"{clip}{suffix}" for clip in clip_ids for suffix in (".csv", ".npz", ".json")]
    check_outputs(inputs, [("--out", path) for path in planned])


def evaluate(
    root: str | Path,
    config: EvalConfig | None = None,
    out_dir: str | Path | None = None,
    clips: Sequence[str] | None = None,
    category: str | None = None,
    unreliable_file: str | Path | None = None,
    progress: bool = False,
    pipeline=None,
    command: str = "",
    say=print,
) -> EvalReport:
    """Evaluate every (selected) clip under ``root``; finished clips in ``out_dir`` are not run again.

    ``pipeline``: an existing ``app.pipeline.Pipeline`` running ``config.model`` (its
    options are set from ``config``); by default one is built when a clip needs running, and
    warmed up on that clip's first frame. A clip's annotation problems are logged once, by
    ``Clip300VWSource`` when it opens the clip, and listed in the report.
    """
    from tqdm import tqdm

    config = config or EvalConfig()
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else default_out_dir(root, config)
    clip_dir = out / "clips"
    selected, missing = select_clips(find_clips(root), clips, category)
    if not selected:
        absent = f" (missing: {', '.join(missing)})" if missing else ""
        raise FileNotFoundError(f"no clips to evaluate in {root}{absent}")
    check_planned_outputs(out, [root, unreliable_file, config.detector_model], [c.name for c in selected])
    clip_dir.mkdir(parents=True, exist_ok=True)
    unreliable = read_unreliable(Path(unreliable_file) if unreliable_file else None)
    results: list[ClipResult] = []
    rows_by_clip: dict[str, list[dict]] = {}
    resumed: list[str] = []
    own_pipeline = None
    if pipeline is not None:
        pipeline.set_options(config.pipeline_options())
    try:
        for folder in tqdm(selected, desc=f"300-VW {config.tag}", unit="clip", disable=not progress):
            signature = clip_signature(folder)
            bad = unreliable.get(folder.name, set())
            cached = load_clip(clip_dir, folder.name, config, signature, bad)
            if cached is not None:
                result, rows = cached
                resumed.append(folder.name)
            else:
                warm_up = pipeline is None
                if pipeline is None:
                    pipeline = own_pipeline = build_eval_pipeline(config, say)
                result, rows, arrays = evaluate_clip(pipeline, folder, config, bad, progress=progress,
                                                     warm_up=warm_up)
                result.config, result.signature = asdict(config), signature
                if result.error is None:
                    save_clip(clip_dir, result, rows, arrays)
                else:
                    say(f"{folder.name}: not evaluated: {result.error}")
            results.append(result)
            rows_by_clip[result.clip] = rows
    finally:
        if own_pipeline is not None:
            own_pipeline.close()

    evaluated = [c for c in results if c.error is None]
    groups: dict[str, list[ClipResult]] = {}
    for c in evaluated:
        groups.setdefault(c.category, []).append(c)
    order = [k for k in ("train", *TEST_CATEGORIES, OTHER) if k in groups]
    summaries = [summarise_category(k, groups[k], [r for c in groups[k] for r in rows_by_clip[c.clip]]) for k in order]
    if len(order) > 1:
        summaries.append(summarise_category(OVERALL, evaluated, [r for c in evaluated for r in rows_by_clip[c.clip]]))
    for s in summaries:
        rows = [r for c in evaluated if s.category in (OVERALL, c.category) for r in rows_by_clip[c.clip]]
        scored = [r for r in rows if r["status"] in (OK, MISS)]
        if scored:
            plot_ced(
                {
                    "68 points": [r["nme68"] for r in scored],
                    "49 points": [r["nme49"] for r in scored],
                },
                out / f"ced_{s.category}.png",
                THRESHOLD,
                title=f"{cfg_title(config)}: {s.category}",
            )
    all_rows = [r for c in results for r in rows_by_clip.get(c.clip, [])]
    write_csv(out / "frames.csv", all_rows, FRAME_FIELDS)
    clip_fields = [f for f in ClipResult.__dataclass_fields__ if f not in ("lag_cost", "config", "signature")]
    write_csv(
        out / "clips.csv",
        [
            {**asdict(c), "problems": " | ".join(c.problems), "unreliable_frames": len(c.unreliable_frames)}
            for c in results
        ],
        clip_fields,
    )
    write_csv(out / "categories.csv", [asdict(s) for s in summaries], list(CategorySummary.__dataclass_fields__))
    atomic_write(out / "run.json", json.dumps({"config": asdict(config), "root": str(root)}, indent=1))
    report = EvalReport(config, root, out, results, summaries, missing, resumed, out / "report.md")
    write_report(report, command)
    return report

"""``python -m app eval300vw``: the command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli import exit_codes
from app.eval.vw300.config import DEFAULT_OUT, THRESHOLD, EvalConfig
from app.eval.vw300.report import fmt_num, fmt_pct
from app.eval.vw300.run import evaluate
from app.eval.vw_splits import SPLITS

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.cli.pipeline_args import add_pipeline_arguments

    parser.add_argument("root", type=Path, help="folder of 300-VW clips (ID/vid.avi or ID/imgs, + ID/annot)")
    parser.add_argument("--clips", default=None, help="comma-separated clip ids (default: every clip in ROOT)")
    parser.add_argument("--category", choices=sorted(SPLITS), default=None, help="only the clips of this 300-VW split")
    parser.add_argument("--boxes", choices=("tracker", "gt"), default="tracker",
                        help="tracker: the face detector finds the faces (default); gt: boxes from the ground truth")
    parser.add_argument("--unreliable", type=Path, default=None,
                        help="file of frames to leave out: lines 'CLIP FRAME [FRAME|A-B ...]'")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT}/ROOT/SETTINGS)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_pipeline_arguments(parser)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    from app.cli.pipeline_args import spec_from_args

    return EvalConfig.from_spec(spec_from_args(args), boxes=args.boxes)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    ids = [c.strip() for c in args.clips.split(",") if c.strip()] if args.clips else None
    command = "python -m app " + " ".join(sys.argv[1:])
    report = evaluate(
        args.root,
        config,
        out_dir=args.out,
        clips=ids,
        category=args.category,
        unreliable_file=args.unreliable,
        progress=args.progress,
        command=command,
        say=lambda message: print(message, file=sys.stderr),
    )
    for s in report.categories:
        print(
            f"{s.category:>5}: {s.clips} clips, {s.scored} frames scored, {s.misses} misses, "
            f"NME68 {fmt_pct(s.nme68)}%, NME49 {fmt_pct(s.nme49)}%, AUC@{THRESHOLD} {fmt_num(s.auc68, 4)}, "
            f"FR@{THRESHOLD} {fmt_pct(s.fr68)}%, jitter {fmt_pct(s.jitter, 3)}% (raw {fmt_pct(s.jitter_raw, 3)}%), "
            f"lag {fmt_num(s.lag_frames)} frames, {fmt_num(s.wall_ms)} ms/frame (CPU {fmt_num(s.cpu_ms)} ms)"
        )
    failed = [c.clip for c in report.clips if c.error]
    if failed:
        print(f"not evaluated: {', '.join(failed)} (see the report)", file=sys.stderr)
    # One policy with track and batch: what was skipped is named and counted, and the exit is 3.
    troubled = [c for c in report.clips if c.problems and not c.error]
    if troubled:
        skipped = sum(c.skipped for c in troubled)
        print(f"problems: {len(troubled)} clip(s) with {sum(len(c.problems) for c in troubled)} problem(s), "
              f"{skipped} frame(s) skipped (listed in the report)", file=sys.stderr)
        for c in troubled:
            for problem in c.problems[:3]:
                print(f"warning: {c.clip}: {problem}", file=sys.stderr)
            if len(c.problems) > 3:
                print(f"warning: {c.clip}: ... and {len(c.problems) - 3} more", file=sys.stderr)
    print(f"report: {report.report_path}")
    if report.clips and len(failed) == len(report.clips):
        return exit_codes.ERROR  # no clip could be read: the input is unreadable
    return exit_codes.INPUT_PROBLEMS if failed or troubled else exit_codes.OK

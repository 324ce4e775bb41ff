"""``python -m app batch INPUT... --out DIR``: annotate a collection (see ``app.batch``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli import exit_codes
from app.cli.argtypes import non_negative_int, positive_int
from app.output_paths import check_output_folder, check_writable_folder
from app.batch.plan import DEFAULT_CHUNK_FRAMES, DEFAULT_OVERLAP
from app.cli.pipeline_args import add_pipeline_arguments

MISSING_EXTRA = "python -m app batch needs ray and pyarrow: pip install -e '.[batch]' ({error})"


def pipeline_option_names() -> list[str]:
    """The destinations of the pipeline options ``track`` has (whatever they are now)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_pipeline_arguments(parser)
    return sorted(vars(parser.parse_args([])))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video file, folder (searched recursively) or text file listing paths")
    parser.add_argument("--out", required=True, help="output folder: <input>.csv, <input>.parquet, manifest.json")
    add_pipeline_arguments(parser)
    group = parser.add_argument_group("batch")
    group.add_argument("--workers", type=positive_int, default=None,
                       help="worker processes (default: the CPU cores here, or of the cluster with --address)")
    group.add_argument("--address", default=None,
                       help="a running Ray cluster (auto, ray://HOST:10001); default: start Ray on this machine")
    group.add_argument("--chunk-frames", type=positive_int, default=DEFAULT_CHUNK_FRAMES,
                       help=f"frames per chunk handed to a worker (default {DEFAULT_CHUNK_FRAMES})")
    group.add_argument("--overlap", type=non_negative_int, default=DEFAULT_OVERLAP,
                       help="frames each chunk runs before its own, to settle and match face ids "
                       f"(default {DEFAULT_OVERLAP})")
    group.add_argument("--max-frames", type=positive_int, default=None, help="annotate at most this many frames of each input")
    group.add_argument("--retries", type=non_negative_int, default=3,
                       help="worker restarts / chunk re-runs before giving up (default 3)")


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.inputs, args.out)  # before anything is opened
    check_writable_folder(args.out)  # a read-only drive: named, as track names it
    try:
        from app.batch.runner import BatchConfig, BatchRunner
    except ImportError as error:
        raise RuntimeError(MISSING_EXTRA.format(error=error)) from None
    pipeline_args = argparse.Namespace(**{name: getattr(args, name) for name in pipeline_option_names()})
    config = BatchConfig(
        inputs=args.inputs, out=Path(args.out), pipeline_args=pipeline_args, workers=args.workers,
        address=args.address, chunk_frames=args.chunk_frames, overlap=args.overlap, max_frames=args.max_frames,
        max_retries=args.retries, command=sys.argv[1:] if sys.argv[1:2] == ["batch"] else [],
    )
    summary = BatchRunner(config).run()
    for key, reason in summary.failures:
        print(f"failed: {key}: {reason}", file=sys.stderr)
    print(f"inputs: {summary.done} done, {summary.with_problems} with problems (partial: frames or images "
          f"skipped, named in the manifest), {summary.failed} failed, {summary.partial} unfinished, "
          f"{summary.skipped} skipped (done before); frames={summary.frames} fps={summary.fps:.1f} "
          f"seconds={summary.seconds:.1f}; manifest: {Path(args.out) / 'manifest.json'}")
    if summary.failed:
        return 1
    return exit_codes.INPUT_PROBLEMS if summary.with_problems else exit_codes.OK

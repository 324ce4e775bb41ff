"""``python -m app track``: run the tracker over a source, optionally recording video and landmarks."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from app.cli import exit_codes
from app.cli.argtypes import positive_int
from app.output_paths import check_outputs
from app.overlay import OverlayOptions
from app.cli.pipeline_args import add_pipeline_arguments, pipeline_from_args
from app.session import TrackingSession
from app.sources import frames_to_end, open_source
from app.sources.base import DEFAULT_FPS

PROBLEMS_SHOWN = 10  # input problems listed after the summary; the rest are counted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="camera index (0, camera:1), video file, image folder or 300-VW clip")
    add_pipeline_arguments(parser)
    parser.add_argument("--out", help="write the annotated video here (.mkv stays playable if cut short)")
    parser.add_argument("--landmarks", help="write the landmark CSV here")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames")


def run(args: argparse.Namespace) -> int:
    def say(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    check_outputs([args.source], {"--out": args.out, "--landmarks": args.landmarks})  # before anything is opened
    # Without a video to write nothing is drawn (the landmark CSV needs no overlay).
    overlay = None if args.out else OverlayOptions(**{name: False for name in OverlayOptions.__dataclass_fields__})
    with open_source(args.source) as source, \
            TrackingSession(pipeline_from_args(args, on_message=say), overlay) as session:
        total = source.frame_count
        if args.max_frames is not None:
            total = min(total, args.max_frames) if total else args.max_frames
        if args.out or args.landmarks:
            session.start_recording(args.out, args.landmarks, fps=source.fps or DEFAULT_FPS)
        frames = with_face = faces = most = detections = 0
        track_ids: set[int] = set()
        with tqdm(total=total, unit="frame", disable=None) as bar:
            for frame in frames_to_end(source):
                if args.max_frames is not None and frames >= args.max_frames:
                    break
                rendered = session.handle(frame)
                if rendered.recording_error is not None:
                    raise rendered.recording_error
                frames += 1
                with_face += bool(rendered.result.faces)
                faces += len(rendered.result.faces)
                most = max(most, len(rendered.result.faces))
                track_ids.update(face.track_id for face in rendered.result.faces)
                detections += rendered.result.detector_ran
                bar.update()
        session.stop_recording()  # a file that turned out short is an error here, before the summary
        summary = session.stats.summary()
    coverage = 100.0 * with_face / frames if frames else 0.0
    fps = f"{summary.fps:.1f}" if summary.fps else "n/a"
    print(f"frames={frames} with_face={with_face} coverage={coverage:.1f}% fps={fps}")
    # Fragmentation: distinct track ids over the source against the most faces tracked at once.
    per_frame = faces / frames if frames else 0.0
    print(f"faces_per_frame={per_frame:.2f} most_at_once={most} track_ids={len(track_ids)} detector_runs={detections}")
    skipped = source.skipped_frames
    if skipped or source.problems:
        print(f"skipped_frames={len(skipped)} problems={len(source.problems)}")
    for problem in source.problems[:PROBLEMS_SHOWN]:
        say(f"warning: {problem}")
    if len(source.problems) > PROBLEMS_SHOWN:
        say(f"warning: ... and {len(source.problems) - PROBLEMS_SHOWN} more problems with {source.name}")
    return exit_codes.INPUT_PROBLEMS if source.problems else exit_codes.OK

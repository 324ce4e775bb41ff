"""``python -m app COMMAND``: the headless entry points (the window uses the same pipeline)."""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from app.cli import exit_codes

# command name -> (module with add_arguments/run, help text)
COMMANDS = {
    "track": ("app.track", "track faces in a camera, video, image folder or 300-VW clip"),
    "bench": ("app.cli.bench", "time each pipeline stage and the end-to-end frame rate"),
    "evaluate": ("app.eval.evaluate", "landmark accuracy on annotated stills (NME, AUC, FR, CED)"),
    "eval300vw": ("app.eval.vw300.command", "frame-by-frame accuracy and jitter on 300-VW style clips"),
    "synth-clips": ("app.synth.clips", "make 300-VW style clips with exact ground truth from stills"),
    "synth-occlusions": ("app.synth.occlusions", "make an occluded test set from HELEN test with hidden-point labels"),
    "eval-occlusions": ("app.eval.occlusion_eval", "accuracy on hidden and visible points, visibility as a hidden-point detector"),
    "batch": ("app.batch.cli", "annotate a collection of videos on this machine or a Ray cluster (CSV + Parquet)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl+C's KeyboardInterrupt so every file is finished the same way."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit statuses are in ``app.cli.exit_codes``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers may be set
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return args.run(args)
    except Terminated:
        print("terminated (SIGTERM): files finished", file=sys.stderr)
        return exit_codes.TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except (OSError, ValueError, RuntimeError) as error:
        # Bad input (missing or corrupt files, unknown names, absent cameras) ends here with its
        # message; the exception classes of the project derive from these.
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.ERROR
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)

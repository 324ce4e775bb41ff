"""``python run_app.py [SOURCE]``: start the desktop application."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from app.gui.system_libs import drop_cv2_plugin_path, window_libraries_problem
from app.gui.values import SourceSpec


def source_spec(text: str) -> SourceSpec:
    """A camera index (``0``, ``camera:1``), a 300-VW clip folder or a video file."""
    lowered = text.lower().removeprefix("camera:")
    if lowered.isdigit() and not Path(text).exists():
        return SourceSpec("camera", camera_index=int(lowered))
    path = Path(text).expanduser()
    return SourceSpec("clip" if path.is_dir() else "video", str(path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_app.py", description="Real-time 68-point facial landmark tracker")
    parser.add_argument("source", nargs="?", help="camera index, video file or 300-VW clip folder to open")
    parser.add_argument("--model", help="landmark model to start with (default: the last one used)")
    parser.add_argument("--backend", help="auto, tensorrt, ort-cuda or ort-cpu (default: the last one used)")
    parser.add_argument("--settings", help="keep the settings in this INI file instead of the user's")
    parser.add_argument("--max-speed", action="store_true", default=None, help="play files as fast as possible")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


CLOSING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def close_on_signals(window) -> dict:
    """Ctrl+C (SIGINT) and SIGTERM close the window the normal way: a running recording is finished.

    Returns the previous handlers (to restore them). Python runs the handler when the event
    loop gives it control (``main`` keeps a timer for that).
    """
    return {number: signal.signal(number, lambda *_: window.close()) for number in CLOSING_SIGNALS}


def _headless() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    args = build_parser().parse_args(argv[1:])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if _headless() and "QT_QPA_PLATFORM" not in os.environ:
        print("error: no display found (DISPLAY and WAYLAND_DISPLAY are unset): run the app on a desktop, "
              "under xvfb-run, or with QT_QPA_PLATFORM=offscreen for an invisible window", file=sys.stderr)
        return 2
    problem = window_libraries_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.gui.settings import APPLICATION, ORGANISATION, open_qsettings
    from app.gui.window import MainWindow

    drop_cv2_plugin_path()  # after every import of cv2, before Qt reads it
    app = QApplication.instance() or QApplication(argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow(
        open_qsettings(args.settings),
        source=source_spec(args.source) if args.source else None,
        model=args.model,
        backend=args.backend,
        max_speed=args.max_speed,
    )
    window.show()
    close_on_signals(window)
    wake_python = QTimer()
    wake_python.timeout.connect(lambda: None)  # lets Python run its signal handlers during app.exec()
    wake_python.start(250)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""``python -m app.gui.bench_display SOURCE --model NAME``: what the window really shows, and how late.

Runs the real window (offscreen unless a display is set), plays SOURCE as fast as
possible and measures, over the frames painted after ``--warmup``:

* displayed FPS: frames painted per second by the video view;
* end-to-end latency: from the frame leaving the source to its first paint
  (median and p95), i.e. decode hand-off, pipeline, overlay, conversion, queueing, paint.

With ``--switch-to OTHER`` it then measures model switches during playback: the time
from the request to the first painted frame tracked by the new model, for the first
load of OTHER and for switches back and forth once both are loaded (cached).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from app.cli.argtypes import non_negative_int, positive_float, positive_int


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.gui.bench_display", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="video file or 300-VW clip folder")
    parser.add_argument("--model", help="landmark model (default: the first installed network); NAME@int8 etc. "
                        "for a precision")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=positive_int, default=150, help="painted frames to measure (default 150)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="painted frames ignored first (default 10)")
    parser.add_argument("--switch-to", help="a second model: measure switching to it and back during playback")
    parser.add_argument("--switches", type=non_negative_int, default=4, help="cached switches to time (default 4)")
    parser.add_argument("--assets", help="folder of ONNX models and manifests (default: the project's assets/)")
    parser.add_argument("--size", default="1280x800", help="window size (default 1280x800)")
    parser.add_argument("--timeout", type=positive_float, default=300.0, help="give up after this many seconds")
    return parser


def wait_until(condition, timeout: float, poll_ms: int = 5) -> bool:
    """Run the Qt event loop until ``condition()`` holds (polled every ``poll_ms``) or ``timeout`` s pass.

    The loop sleeps between events: a busy ``processEvents`` loop would steal the CPU being measured.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    if condition():
        return True
    deadline = time.perf_counter() + timeout
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(poll_ms)
    timer.timeout.connect(lambda: loop.quit() if condition() or time.perf_counter() > deadline else None)
    timer.start()
    loop.exec()
    timer.stop()
    return condition()


class DisplayBench:
    def __init__(self, window, args: argparse.Namespace) -> None:
        self.window = window
        self.args = args
        self.painted: list[tuple[float, float, int, str]] = []  # painted_at, read_time, index, model
        self.cpu: list[tuple[float, float]] = []  # (process CPU s, GUI-thread CPU s) at each paint
        window.view.frame_painted.connect(self._on_painted)

    def _on_painted(self, packet, painted_at: float) -> None:
        self.painted.append((painted_at, packet.read_time, packet.index, packet.model))
        if len(self.painted) in (self.args.warmup + 1, self.args.warmup + self.args.frames):
            self.cpu.append((time.process_time(), time.thread_time()))

    def wait_for(self, condition, timeout: float) -> bool:
        return wait_until(condition, timeout)

    def measure_playback(self) -> dict:
        args, window = self.args, self.window
        needed = args.warmup + args.frames
        ended = lambda: not window.playing and len(self.painted) > 0 and window.source_info is not None  # noqa: E731
        self.wait_for(lambda: len(self.painted) >= needed or (len(self.painted) > args.warmup and ended()),
                      args.timeout)
        rows = self.painted[args.warmup:needed]
        cpu = self.cpu if len(self.cpu) == 2 else [self.cpu[0], (time.process_time(), time.thread_time())]
        if len(rows) < 2:
            raise SystemExit(f"only {len(self.painted)} frames were painted: {window.messages[-3:]}")
        span = rows[-1][0] - rows[0][0]
        latencies = [(painted - read) * 1000.0 for painted, read, _, _ in rows]
        indices = [index for _, _, index, _ in self.painted[:needed]]
        return {
            "frames": len(rows),
            "fps": (len(rows) - 1) / span if span > 0 else float("nan"),
            "latency_median": statistics.median(latencies),
            "latency_p95": _percentile(latencies, 95),
            "cpu_ms": (cpu[-1][0] - cpu[0][0]) * 1000.0 / (len(rows) - 1),
            "gui_cpu_ms": (cpu[-1][1] - cpu[0][1]) * 1000.0 / (len(rows) - 1),
            "unpainted": sum(b - a - 1 for a, b in zip(indices, indices[1:]) if b > a + 1),
        }

    def measure_switch(self, model: str) -> float:
        """Milliseconds from the switch request to the first painted frame tracked by ``model``."""
        window = self.window
        if not window.playing:
            window.seek(0)
            window.worker.play()
            self.wait_for(lambda: window.playing, 5.0)
        start_count = len(self.painted)
        start = time.perf_counter()
        window.worker.set_model(model, self.args.backend)
        ok = self.wait_for(lambda: any(row[3] == model for row in self.painted[start_count:]), self.args.timeout)
        if not ok:
            raise SystemExit(f"switching to {model} timed out: {window.messages[-3:]}")
        painted_at = next(row[0] for row in self.painted[start_count:] if row[3] == model)
        return (painted_at - start) * 1000.0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from models.registry import default_model

    args.model = args.model or default_model(args.assets)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.gui.main import source_spec
    from app.gui.settings import open_qsettings
    from app.gui.window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(open_qsettings(str(Path(tmp) / "bench.ini")), model=args.model, backend=args.backend,
                            max_speed=True, open_picker_when_idle=False, assets_dir=args.assets)
        width, height = (int(v) for v in args.size.lower().split("x"))
        window.resize(width, height)
        window.show()
        bench = DisplayBench(window, args)
        window.open_source(source_spec(args.source), play=True)
        try:
            result = bench.measure_playback()
            last = window.last_packet
            print(f"source={args.source} model={last.model} backend={last.backend} window={args.size} "
                  f"platform={app.platformName()} cpu={platform.processor() or platform.machine()} "
                  f"cores={os.cpu_count()}")
            print(f"displayed_fps={result['fps']:.1f} frames={result['frames']} "
                  f"latency_median_ms={result['latency_median']:.1f} latency_p95_ms={result['latency_p95']:.1f} "
                  f"unpainted_frames={result['unpainted']} worker_fps={last.fps or float('nan'):.1f} "
                  f"pipeline_median_ms={last.latency_ms or float('nan'):.1f}")
            print(f"cpu_per_frame_ms={result['cpu_ms']:.1f} (all threads) gui_thread_cpu_per_frame_ms="
                  f"{result['gui_cpu_ms']:.1f} load_average_1min={os.getloadavg()[0]:.1f}")
            if args.switch_to:
                first = bench.measure_switch(args.switch_to)
                print(f"switch {args.model}->{args.switch_to} (first load): {first:.0f} ms")
                cached = []
                for i in range(args.switches):
                    target = args.model if i % 2 == 0 else args.switch_to
                    cached.append(bench.measure_switch(target))
                print(f"switch between loaded models: median {statistics.median(cached):.0f} ms, "
                      f"max {max(cached):.0f} ms over {len(cached)} switches")
        finally:
            window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m engines.ort_threads_bench MODEL.onnx``: ONNX Runtime CPU threads and spinning, batch 1.

Prints, for 1 and 2 intra-op threads with spinning on and off, the median wall time of
one inference and the process CPU time it costs. Run it on an idle machine and on a busy
one: spinning threads that lose their core stall every operator.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def measure(path: str, threads: int, spin: bool, runs: int) -> tuple[float, float]:
    """(median wall ms, mean process CPU ms) of one batch-1 inference."""
    from engines.ort import OrtRunner

    with OrtRunner(path, threads=threads, spin=spin) as runner:
        spec = runner.inputs[0]
        shape = [1 if not isinstance(d, int) else d for d in spec.shape]
        feed = {spec.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
        for _ in range(10):
            runner.infer(feed)
        walls = []
        cpu0 = time.process_time()
        for _ in range(runs):
            start = time.perf_counter()
            runner.infer(feed)
            walls.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu0) / runs
    return 1e3 * statistics.median(walls), 1e3 * cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.ort_threads_bench", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"model={args.model} cores={os.cpu_count()} load_average_1min={os.getloadavg()[0]:.2f}")
    print("| threads | spinning | wall median ms | CPU ms |\n|---|---|---|---|")
    for threads in (1, 2):
        for spin in (True, False):
            wall, cpu = measure(args.model, threads, spin, args.runs)
            print(f"| {threads} | {'on' if spin else 'off'} | {wall:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

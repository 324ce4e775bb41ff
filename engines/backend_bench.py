"""Network alone at batch 1 on every CPU runner and precision, interleaved rounds in one process.

    python -m engines.backend_bench assets/r18_ffld assets/mnv2_sdd   # NAME.onnx, NAME.int8.onnx, NAME.ov-int8.xml

Each network's files that exist are opened on each runner that runs them (ONNX Runtime FP32 and
its QDQ INT8; OpenVINO FP32 and its NNCF INT8 IR), warmed up, then timed in ``--rounds``
interleaved rounds of ``--calls`` calls on the same random input. Printed per file: the median
and the range of the rounds, the graph's GFLOPs (``engines.flops``) and the fraction of this
CPU's textbook peak that the median reaches (float32 peak for FP32, int8 peak for INT8).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from engines.flops import cpu_peak_gflops, graph_flops
from engines.openvino import OpenVinoRunner
from engines.ort import OrtRunner

VARIANTS = (("ort", "fp32", OrtRunner, ".onnx"), ("ort", "int8", OrtRunner, ".int8.onnx"),
            ("openvino", "fp32", OpenVinoRunner, ".onnx"), ("openvino", "int8", OpenVinoRunner, ".ov-int8.xml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stems", nargs="+", help="network file stems, e.g. assets/r18_ffld")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    peak = cpu_peak_gflops(args.threads)
    print(f"peak: {peak.fp32_gflops:.0f} GFLOP/s float32, {peak.int8_gops:.0f} GOP/s int8 ({peak.note})")
    runs = {}
    for stem in args.stems:
        flops = graph_flops(f"{stem}.onnx")
        for backend, precision, runner_type, suffix in VARIANTS:
            file = Path(f"{stem}{suffix}")
            if not file.is_file():
                continue
            runner = runner_type(file, threads=args.threads)
            spec = runner.inputs[0]
            feed = {spec.name: np.random.default_rng(0).random((1, *spec.shape[1:]), np.float32)}
            for _ in range(20):
                runner.infer(feed)
            runs[(Path(stem).name, backend, precision)] = (runner, feed, [], flops)
    for _ in range(args.rounds):
        for runner, feed, times, _ in runs.values():
            start = time.perf_counter()
            for _ in range(args.calls):
                runner.infer(feed)
            times.append((time.perf_counter() - start) / args.calls * 1e3)
    print("| network | back-end | precision | median ms | rounds | GFLOPs | fraction of peak |")
    print("|---|---|---|---|---|---|---|")
    for (name, backend, precision), (runner, _, times, flops) in runs.items():
        median = float(np.median(times))
        rate = flops / (median / 1e3) / 1e9
        top = peak.int8_gops if precision == "int8" else peak.fp32_gflops
        print(f"| {name} | {backend} | {precision.upper()} | {median:.2f} | {min(times):.2f}-{max(times):.2f} | "
              f"{flops / 1e9:.2f} | {100 * rate / top:.1f}% |")
        runner.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Network alone at batch 1 on each CPU runner, interleaved rounds in one process.

    python -m engines.backend_bench assets/r18_ffld assets/mnv2_sdd   # NAME.onnx and NAME.int8.onnx
"""
import sys
import time

import numpy as np

from engines.openvino import OpenVinoRunner
from engines.ort import OrtRunner


def main(stems: list[str], rounds: int = 5, calls: int = 40) -> None:
    runs = {}
    for stem in stems:
        for label, runner_type, file in (("ort fp32", OrtRunner, f"{stem}.onnx"), ("ort int8", OrtRunner, f"{stem}.int8.onnx"),
                                         ("openvino fp32", OpenVinoRunner, f"{stem}.onnx")):
            runner = runner_type(file, threads=2)
            spec = runner.inputs[0]
            feed = {spec.name: np.random.default_rng(0).random((1, *spec.shape[1:]), np.float32)}
            for _ in range(20):
                runner.infer(feed)
            runs[(stem, label)] = (runner, feed, [])
    for _ in range(rounds):
        for runner, feed, times in runs.values():
            start = time.perf_counter()
            for _ in range(calls):
                runner.infer(feed)
            times.append((time.perf_counter() - start) / calls * 1e3)
    for (stem, label), (_, _, times) in runs.items():
        print(f"{stem:18s} {label:14s} median {np.median(times):.2f} ms  rounds {min(times):.2f}-{max(times):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

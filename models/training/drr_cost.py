"""The cost of DRR by its number of steps K: parameters, FLOPs, ONNX Runtime time at batch 1.

``python -m models.training.drr_cost --threads 1``: random weights (the cost does not depend on
them), each graph and the shipped mnv2_sdd / r18_ffld files timed in interleaved rounds so that a
shared machine's load falls on all alike; times are also given as ratios to mnv2_sdd's network.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> None:
    import onnxruntime as ort
    from torch.utils.flop_counter import FlopCounterMode

    from models.heatmap_decode import dark_kernel
    from models.nets.drr import DRR, INPUT_SIZE
    from models.registry import ASSETS_DIR

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", default="0,1,2,4,8", help="values of K to time")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20, help="timed runs per graph per round")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    graphs, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in (int(v) for v in args.steps.split(",")):
            model = DRR(steps=k, decode_kernel=dark_kernel(1.5)).eval()
            x = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
            path = Path(tmp) / f"drr_k{k}.onnx"
            torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["input"], dynamo=False)
            with FlopCounterMode(display=False) as counter:
                model(x)
            name = f"drr K={k}"
            graphs[name] = (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), INPUT_SIZE)
            sizes[name] = (sum(q.numel() for q in model.parameters()) / 1e6, counter.get_total_flops() / 1e9)
        for name, size in (("mnv2_sdd", 192), ("r18_ffld", 224)):
            if (ASSETS_DIR / f"{name}.onnx").is_file():
                graphs[name] = (ort.InferenceSession(str(ASSETS_DIR / f"{name}.onnx"), options,
                                                     providers=["CPUExecutionProvider"]), size)
        times = {name: [] for name in graphs}
        for _ in range(args.rounds):
            for name, (session, size) in graphs.items():
                x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
                session.run(None, {"input": x})
                for _ in range(args.runs):
                    t = time.perf_counter()
                    session.run(None, {"input": x})
                    times[name].append(time.perf_counter() - t)
    reference = np.median(times["mnv2_sdd"]) if "mnv2_sdd" in times else None
    print(f"threads {args.threads}, load average {tuple(round(v, 2) for v in os.getloadavg())}")
    print("| graph | parameters | GFLOPs (batch 1) | ORT ms (median) | / mnv2_sdd |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        params, flops = sizes.get(name, (None, None))
        ratio = f"{np.median(t) / reference:.2f}x" if reference else "-"
        print(f"| {name} | {f'{params:.2f} M' if params else 'shipped file'} | {f'{flops:.2f}' if flops else '-'} | "
              f"{1000 * np.median(t):.1f} | {ratio} |")


if __name__ == "__main__":
    main()

"""The cost of CCNN variants: parameters, FLOPs, ONNX Runtime time at batch 1 and a training step.

``python -m models.training.ccnn_cost --threads 1``: random weights (the cost does not depend on
them). The ONNX graphs and the shipped mnv2_sdd file are timed in interleaved rounds, so that a
shared machine's load falls on all alike (times also as ratios to mnv2_sdd's); then one training
step at ``--batch`` per variant in float32 and in bf16 autocast + channels-last (process CPU time
beside wall time: with one thread, what the step costs on an idle core).
``--variant NAME=KEY:VALUE,...`` adds a variant (keys of ``models.nets.ccnn.CCNN``).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {
    "paper (256 px, K=4)": {"paper": True},
    "scaled 128 px, K=4 (the default)": {},
    "scaled 128 px, K=4, heatmap cascade only": {"heatmap_only": True},
    "scaled 128 px, K=2": {"steps": 2},
    "scaled 128 px, K=1": {"steps": 1},
    "scaled 160 px, K=4": {"input_size": 160},
    "scaled 192 px, K=4": {"input_size": 192},
}


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition("=")
    options = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        options[key] = {"true": True, "false": False}.get(value.lower(), None)
        if options[key] is None:
            options[key] = int(value)
    return name, options


def train_step_seconds(model, batch: int, bf16: bool, channels_last: bool, steps: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of a training step (one untimed first step)."""
    from models.training.ccnn_task import CCNNTask

    task = CCNNTask(steps=model.steps, heatmap_only=model.heatmap_only, input_size=model.input_size)
    rng = np.random.default_rng(0)
    s = model.input_size
    crops = rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
    points = torch.from_numpy(rng.uniform(0.2 * s, 0.8 * s, (batch, 68, 2)).astype(np.float32))
    mem = torch.channels_last if channels_last else torch.contiguous_format
    model = model.train().to(memory_format=mem)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    wall, cpu = [], []
    for i in range(steps + 1):
        t, c = time.perf_counter(), time.process_time()
        x = task.to_input(crops).contiguous(memory_format=mem)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = task.loss(out, task.make_targets(points))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def main(argv=None) -> None:
    import onnxruntime as ort
    from torch.utils.flop_counter import FlopCounterMode

    from models.nets.ccnn import CCNN
    from models.registry import ASSETS_DIR

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20, help="timed runs per graph per round")
    p.add_argument("--only", default="", help="variant names to keep, separated by | (default all)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY:VALUE,...",
                   help="an extra variant (NAME without '='), e.g. '160 px=input_size:160'")
    p.add_argument("--batch", type=int, default=32, help="training-step batch (0: skip the training step)")
    p.add_argument("--train-steps", type=int, default=1, help="timed training steps per variant and precision")
    p.add_argument("--paper-batch", type=int, default=4,
                   help="training-step batch of the paper-size network (batch 32 needs more memory than a shared "
                        "24 GiB machine has; its time is reported as is and scaled to batch 32)")
    p.add_argument("--paper-runs", type=int, default=2, help="timed ORT runs per round for the paper-size graph")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep = set(args.only.split("|")) if args.only else set(VARIANTS)
    variants = {k: v for k, v in VARIANTS.items() if k in keep}
    variants.update(parse_variant(v) for v in args.variant)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    graphs, sizes, models = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kw) in enumerate(variants.items()):
            model = CCNN(**kw).eval()
            x = torch.zeros(1, 3, model.input_size, model.input_size)
            path = Path(tmp) / f"ccnn_{i}.onnx"
            torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["input"], dynamo=False)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(x)
            graphs[name] = (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]),
                            model.input_size)
            sizes[name] = (sum(q.numel() for q in model.parameters()) / 1e6, counter.get_total_flops() / 1e9)
            models[name] = kw
        if (ASSETS_DIR / "mnv2_sdd.onnx").is_file():
            graphs["mnv2_sdd"] = (ort.InferenceSession(str(ASSETS_DIR / "mnv2_sdd.onnx"), options,
                                                       providers=["CPUExecutionProvider"]), 192)
        times = {name: [] for name in graphs}
        for _ in range(args.rounds):
            for name, (session, size) in graphs.items():
                x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
                session.run(None, {"input": x})
                for _ in range(args.paper_runs if variants.get(name, {}).get("paper") else args.runs):
                    t = time.perf_counter()
                    session.run(None, {"input": x})
                    times[name].append(time.perf_counter() - t)
    reference = np.median(times["mnv2_sdd"]) if "mnv2_sdd" in times else None
    steps = {}
    if args.batch:
        for name, kw in models.items():
            for bf16 in (False, True):
                torch.manual_seed(0)
                batch = args.paper_batch if kw.get("paper") else args.batch
                wall, cpu = train_step_seconds(CCNN(**kw), batch, bf16, bf16, args.train_steps)
                steps[name, bf16] = (wall * args.batch / batch, cpu * args.batch / batch)
                print(f"  step {name} {'bf16+cl' if bf16 else 'fp32'} at batch {batch}: {wall:.2f} s wall, "
                      f"{cpu:.2f} s CPU", flush=True)
    print(f"threads {args.threads}, load average {tuple(round(v, 2) for v in os.getloadavg())}, "
          f"training step batch {args.batch}")
    print("| graph | parameters | GFLOPs (batch 1) | ORT ms (median) | / mnv2_sdd | step fp32 s (CPU s) | "
          "step bf16 + channels-last s (CPU s) |")
    print("|---|---|---|---|---|---|---|")
    for name, t in times.items():
        params, flops = sizes.get(name, (None, None))
        ratio = f"{np.median(t) / reference:.2f}x" if reference else "-"
        step = " | ".join(f"{steps[name, b][0]:.2f} ({steps[name, b][1]:.2f})" if (name, b) in steps else "-"
                          for b in (False, True))
        print(f"| {name} | {f'{params:.2f} M' if params else 'shipped file'} | {f'{flops:.2f}' if flops else '-'} | "
              f"{1000 * np.median(t):.1f} | {ratio} | {step} |")


if __name__ == "__main__":
    main()

"""Seconds per training step with/without bf16 autocast and channels_last.

``python -m models.training.benchmark_step --model sgfa --batch 32 --rounds 5``: the four variants are
interleaved round by round (the machine is shared, so load drifts) and the median per
variant is printed, with the load average. Besides wall time it reports the process CPU
time per step: with one thread that is what the step costs on an idle core, even while
other jobs share the machine.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="mnv2_sdd", help="any network models.tools.train trains")
    p.add_argument("--loss", default=None, help="the task's loss (default: the task's own)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=INT",
                   help="a task option, e.g. --option output_size=64 --option head_channels=128 (sgfa)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from models.training.tasks import build_task

    options = {k: int(v) for k, v in (o.split("=", 1) for o in args.option)}
    if args.loss:
        options["loss_name"] = args.loss
    task = build_task(args.model, **options)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (args.batch, task.input_size, task.input_size, 3), dtype=np.uint8)
    points = torch.from_numpy(rng.uniform(0.1 * task.input_size, 0.9 * task.input_size, (args.batch, 68, 2)).astype(np.float32))
    variants = list(itertools.product((False, True), (False, True)))
    models = {}
    for bf16, cl in variants:
        m = task.build_model().to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        models[(bf16, cl)] = (m, torch.optim.AdamW(m.parameters(), 1e-3))
    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}

    def step(bf16, cl):
        m, opt = models[(bf16, cl)]
        x = task.to_input(crops)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(x)
        loss = task.loss(out, task.make_targets(points))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for v in variants:
        step(*v)  # warm-up
    for _ in range(args.rounds):
        for v in variants:
            for _ in range(args.steps):
                t, c = time.perf_counter(), time.process_time()
                step(*v)
                times[v].append(time.perf_counter() - t)
                cpu[v].append(time.process_time() - c)
    print(f"{args.model} {options}, batch {args.batch}, threads {args.threads}, load average {os.getloadavg()}")
    for (bf16, cl), ts in times.items():
        c = cpu[(bf16, cl)]
        print(f"bf16={bf16!s:5} channels_last={cl!s:5}: wall median {np.median(ts):.3f} s/step (min {np.min(ts):.3f}), "
              f"CPU median {np.median(c):.3f} s/step (min {np.min(c):.3f})")


if __name__ == "__main__":
    main()

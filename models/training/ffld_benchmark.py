"""CPU time per r18_ffld training step (forward, loss, backward, AdamW): the S0 baseline, the full
model (crop first, then select channels on the 8x8 patches) and the full model with the selection
applied to whole maps before cropping.

``python -m models.training.ffld_benchmark --threads 1 --rounds 3`` prints the medians as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from models.nets.r18_ffld import SELECTED_CHANNELS, RefineStage, crop_patches
from models.training.ffld_task import FFLDTask


def _select_then_crop(stage, features: torch.Tensor, shape: torch.Tensor, offsets: torch.Tensor):
    """The costlier order, for the step benchmark only: channel selection over the whole map,
    then every landmark's 4 selected channels cropped from it."""
    k, c = stage.points, SELECTED_CHANNELS
    # the grouped weights (K*4, C_in, 1, 1) as one dense 1x1 convolution C_in -> K*4 over the whole map
    selected = F.conv2d(features, stage.select.weight.to(features.dtype))
    n = selected.shape[0]
    patches = crop_patches(selected, shape, offsets)  # (N, K * K*4, 8, 8): every landmark's crop of all maps
    own = patches.view(n, k, k, c, *offsets.shape[:2])[:, torch.arange(k), torch.arange(k)]
    delta, pooled = stage.cropnet(own.reshape(n, k * c, *offsets.shape[:2]).to(features.dtype))
    side = torch.tensor([float(features.shape[3]), float(features.shape[2])])
    return shape + delta.view(-1, k, 2) / side, pooled


def step_benchmark(batch: int = 32, rounds: int = 3, bf16: bool = True) -> dict:
    """CPU seconds per training step (forward, loss, backward, AdamW) of the S0 baseline, the
    full model (crop first, then select channels on the 8x8 patches) and the full model with
    the selection applied to whole maps before cropping; random crops and points, no data loading."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    points = torch.from_numpy(rng.uniform(50, 170, (batch, 68, 2)).astype(np.float32))
    points[:, 36], points[:, 45] = torch.tensor([70.0, 90.0]), torch.tensor([150.0, 90.0])
    variants = {"s0 baseline": (False, False), "full, crop then select": (True, False),
                "full, select then crop": (True, True)}
    result = {}
    original = RefineStage.forward
    for name, (refine, select_first) in variants.items():
        torch.manual_seed(0)
        task = FFLDTask(refine=refine, negative_fraction=0.0)
        model = task.blank_model().to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
        RefineStage.forward = _select_then_crop if select_first else original
        cpu, wall = [], []
        try:
            for i in range(rounds + 1):
                t, c = time.perf_counter(), time.process_time()
                x = task.to_input(crops).contiguous(memory_format=torch.channels_last)
                target = task.make_targets(points)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    output = model(x)
                loss = task.loss(output, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if i:  # the first step warms up
                    cpu.append(time.process_time() - c)
                    wall.append(time.perf_counter() - t)
        finally:
            RefineStage.forward = original
        result[name] = {"cpu_s_per_step": round(float(np.median(cpu)), 3),
                        "cpu_ms_per_face": round(1e3 * float(np.median(cpu)) / batch, 1),
                        "wall_s_per_step": round(float(np.median(wall)), 3)}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="CPU time per r18_ffld training step (batch --batch): "
                                     "S0 / crop-then-select / select-then-crop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    cli = parser.parse_args(argv)
    torch.set_num_threads(cli.threads)
    print(json.dumps({"batch": cli.batch, "threads": cli.threads, "bf16": True,
                      **step_benchmark(cli.batch, cli.rounds), "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()

"""The generic training loop: epochs, warm-up + cosine/one-cycle schedule, bf16 autocast,
channels_last, an optional weight EMA, validation NME per epoch, JSON-lines log, resumable
last/best checkpoints.

A run lives in ``checkpoint.run_dir(RUN)``: ``last.pt``, ``best.pt``, ``log.jsonl``,
``config.json``. Starting a run whose ``last.pt`` exists resumes it (same command), after
checking that the recorded configuration matches.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from engines.files import atomic_write
from models.training.augment import AugmentConfig, KeypointError
from models.training.checkpoint import load_checkpoint, restore, run_dir, save_checkpoint
from models.training.dataset import TrainingData
from models.training.evaluate import evaluate_crops
from models.training.task import Task


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (oneDNN's AVX-512 kernels). Without it, bf16
    autocast is emulated: on the AVX2-only CPU of 2026-11-30 a mnv2_sdd step took about 55 s
    instead of 5 s in float32 (docs/RESULTS.md, "Training speed")."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass
class TrainConfig:
    run: str
    epochs: int = 60
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # "cosine" (linear warm-up, cosine to min_lr_ratio) or "onecycle"
    min_lr_ratio: float = 0.01
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True
    threads: int = 2  # 0 = auto: 2 when the machine is otherwise idle, else 1 (re-checked each epoch)
    max_steps: int = 0  # cap on steps per epoch (short experiments); 0 = full epochs
    val_fraction: float = 0.05
    split_seed: int = 0
    w300_repeat: int = 2
    ytf_fraction: float = 0.5
    val_identity_fraction: float = 0.0  # > 0: also hold out this share of the ytf68 people for validation
    large_pose_fraction: float = 0.0  # share of each epoch added as large-pose views (models.training.pose_views)
    ema_decay: float = 0.0  # > 0: an exponential moving average of the weights, validated and exported
    label_offset_x: float = 0.0  # image px the labels sit right of the feature; flips keep it (label_offset.py)
    ytf68_teacher: bool = False  # train on the teacher's points for ytf68 (teacher.py); validation keeps labels
    distill: float = 0.0  # > 0: every training target is this share teacher, the rest labels (teacher.py)

    def resume_keys(self) -> dict:
        """What must be identical for a resumed run to continue the same schedule."""
        d = dataclasses.asdict(self)
        for k in ("threads", "bf16", "channels_last"):
            d.pop(k)
        if not d["ema_decay"]:
            d.pop("ema_decay")  # runs from before the option had none
        if not d["val_identity_fraction"]:
            d.pop("val_identity_fraction")
        if not d["large_pose_fraction"]:
            d.pop("large_pose_fraction")
        for key in ("label_offset_x", "ytf68_teacher", "distill"):  # runs from before these options had none
            if not d[key]:
                d.pop(key)
        return d


def _keypoint_error_record(err: KeypointError) -> dict:
    return {"source": err.source, "mean": np.round(err.mean, 6).tolist(), "std": np.round(err.std, 6).tolist()}


def choose_threads(requested: int, current: int) -> int:
    """``requested`` if > 0; else 2 threads on an otherwise idle 2-core machine, 1 when it is shared.

    Measured on the shared 2-core machine (load ~8): a training step took ~4 s with one
    thread but 14-20 s with two (OpenMP barriers stall when a thread is descheduled).
    """
    if requested > 0:
        return requested
    others = os.getloadavg()[0] - current
    return 2 if others < 0.7 else 1


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    if schedule == "onecycle":
        # cosine up from 4% over the warm-up, cosine down to min_ratio (torch's OneCycleLR shape)
        if step < warmup:
            return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * (step + 1) / warmup))
    elif schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}")
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _progress(iterable, **kw):
    from tqdm import tqdm

    return tqdm(iterable, mininterval=2 if sys.stderr.isatty() else 60, **kw)


def train(cfg: TrainConfig, task: Task, augment_cfg: AugmentConfig, restart: bool = False,
          stop_after: int = 0) -> dict:
    """Train (or resume) a run; ``stop_after`` > 0 returns after that many epochs of this call."""
    threads = choose_threads(cfg.threads, 0)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    folder = run_dir(cfg.run)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"train": cfg.resume_keys(), "task": task.config(),
              "augment": {k: v for k, v in dataclasses.asdict(augment_cfg).items()
                          if k != "keypoint_error" and not (k == "occlusion_prob" and not v)}  # runs from before it
              | {"keypoint_error": _keypoint_error_record(augment_cfg.keypoint_error)}}

    data = TrainingData(cfg.val_fraction, cfg.split_seed, cfg.w300_repeat, cfg.ytf_fraction, task.input_size,
                        val_identity_fraction=cfg.val_identity_fraction, large_pose_fraction=cfg.large_pose_fraction,
                        label_offset_x=cfg.label_offset_x, ytf68_teacher=cfg.ytf68_teacher,
                        distill=cfg.distill)
    val = data.plain_batch(data.val_ids)
    epoch_len = len(data.epoch_ids(np.random.default_rng(0)))
    steps = epoch_len // cfg.batch
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    total = steps * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps))

    model = task.build_model()
    mem = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=mem)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, cfg.schedule, cfg.min_lr_ratio))
    ema = None
    if cfg.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

    start_epoch, step, best = 0, 0, float("inf")
    last = folder / "last.pt"
    if last.is_file() and not restart:
        state = load_checkpoint(last)
        stored = state["config"]
        kept = stored["augment"]["keypoint_error"]
        if kept != config["augment"]["keypoint_error"]:
            # the run goes on with the detector error it started with, whatever the file says now
            print(f"note: continuing with the keypoint error the run started with ({kept['source']})", flush=True)
            augment_cfg.keypoint_error = KeypointError(np.array(kept["mean"]), np.array(kept["std"]), kept["source"])
            config["augment"]["keypoint_error"] = kept
        if stored != config:
            raise SystemExit(
                f"run {cfg.run!r} exists with a different configuration ({last}); use the same options, "
                f"another --run name, or --restart.\nstored: {json.dumps(state['config'])}\n"
                f"now:    {json.dumps(config)}")
        restore(state, model, optimizer, scheduler, ema)
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        print(f"resumed {cfg.run} after epoch {start_epoch} (step {step}, best val NME {best:.4f})", flush=True)
    atomic_write(folder / "config.json", json.dumps(config, indent=1))
    views = f" + {len(data.train_views)} large-pose views" if len(data.train_views) else ""
    print(f"run {cfg.run}: {len(data.train_w300)} 300-W + {len(data.train_other)} ytf68 train images{views}, "
          f"{len(data.val_ids)} val; {steps} steps/epoch x {cfg.epochs} epochs; keypoint error: "
          f"{augment_cfg.keypoint_error.source}", flush=True)

    summary = {}
    end_epoch = min(cfg.epochs, start_epoch + stop_after) if stop_after else cfg.epochs
    for epoch in range(start_epoch, end_epoch):
        rng = np.random.default_rng([cfg.seed, epoch])
        threads = choose_threads(cfg.threads, threads)
        torch.set_num_threads(threads)
        ids = data.epoch_ids(rng)
        model.train()
        t0, losses, data_time = time.perf_counter(), [], 0.0
        bar = _progress(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for i in bar:
            td = time.perf_counter()
            batch = data.train_batch(ids[i * cfg.batch : (i + 1) * cfg.batch], augment_cfg, rng)
            x = task.to_input(batch.crops).contiguous(memory_format=mem)
            points = torch.from_numpy(batch.points)
            target = task.make_targets(points) if batch.hidden is None else \
                task.make_targets(points, hidden=torch.from_numpy(batch.hidden))
            data_time += time.perf_counter() - td
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                output = model(x)
            loss = task.loss(output, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"loss became {losses[-1]} at epoch {epoch + 1}, step {i}")
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
        train_s = time.perf_counter() - t0
        validated = model if ema is None else ema.module
        metrics = evaluate_crops(validated, task, val.crops, val.points, cfg.channels_last)
        val_nme = next(iter(metrics.values()))["nme"]
        summary = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
                   "val": metrics, "train_s": round(train_s, 1), "data_s": round(data_time, 1),
                   "s_per_step": round(train_s / steps, 3), "threads": threads,
                   "load_average": round(os.getloadavg()[0], 2), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        improved = val_nme < best
        best = min(best, val_nme)
        save_checkpoint(last, model, optimizer, scheduler, epoch + 1, step, best, config, summary, ema)
        if improved:
            save_checkpoint(folder / "best.pt", model, optimizer, scheduler, epoch + 1, step, best, config, summary,
                            ema)
        with open(folder / "log.jsonl", "a") as f:
            f.write(json.dumps(summary) + "\n")
        print(f"epoch {epoch + 1}/{cfg.epochs}: loss {summary['loss']:.4f}, val NME {100 * val_nme:.2f}% "
              f"(argmax {100 * metrics.get('argmax', {}).get('nme', float('nan')):.2f}%), "
              f"{train_s:.0f} s ({summary['s_per_step']} s/step){' *' if improved else ''}", flush=True)
    return summary

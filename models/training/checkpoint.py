"""Resumable checkpoints: model, optimiser, scheduler, weight EMA, epoch, RNG states, run config.

A run lives in ``run_dir(RUN)``. ``inference_weights`` is what export and evaluation load: the
EMA's weights when the run kept one, else the trained weights; ``load_run_weights`` is where a
continuation starts.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from engines.files import atomic_writer, cache_dir


def run_dir(run: str) -> Path:
    """``cache_dir()/train/RUN``, or ``$FACETRACK_TRAIN_DIR/RUN`` if that is set."""
    base = os.environ.get("FACETRACK_TRAIN_DIR")
    return (Path(base) if base else cache_dir() / "train") / run


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, step: int, best: float, config: dict,
                    metrics: dict | None = None, ema=None) -> None:
    """Atomic write (``engines.files.atomic_writer``), so a cut-off never leaves a broken checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,  # number of completed epochs
        "step": step,
        "best": best,
        "config": config,
        "metrics": metrics or {},
        "rng": rng_state(),
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    with atomic_writer(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: Path) -> dict:
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def inference_weights(state: dict) -> dict:
    """The weights to export or evaluate: the EMA's (``torch.optim.swa_utils.AveragedModel``
    keys, minus its ``module.`` prefix and counter) if the checkpoint has one, else the model's."""
    if "ema" not in state:
        return state["model"]
    prefix = "module."
    return {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}


def restore(state: dict, model, optimizer=None, scheduler=None, ema=None) -> None:
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])


def load_run_weights(model: torch.nn.Module, run: str, network: str) -> torch.nn.Module:
    """``model`` with the trained weights of run ``run``'s ``last.pt`` (a continuation's start)."""
    path = run_dir(run) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{network}: no checkpoint of run {run!r} at {path}")
    model.load_state_dict(load_checkpoint(path)["model"])
    return model

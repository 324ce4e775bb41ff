"""Resumable checkpoints: model, optimiser, scheduler, weight EMA, epoch, RNG states, run config.

A run lives in ``run_dir(RUN)``. ``inference_weights`` is what export and evaluation load: the
EMA's weights when the run kept one, else the trained weights; ``load_run_weights`` is where a
continuation starts.
"""
from __future__ import annotations

import os
import pickle
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
    """torch, numpy and Python RNG states as tensors and plain data (what ``weights_only`` loads)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": str(kind), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": plain(random.getstate())}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    if isinstance(n, dict):
        n = (n["kind"], np.asarray(n["key"], dtype=np.int64).astype(np.uint32), n["pos"], n["has_gauss"],
             n["cached_gaussian"])
    np.random.set_state(n)  # a tuple: a checkpoint written before the states were plain data
    random.setstate(_tuples(state["python"]))


def plain(value):
    """``value`` with numpy scalars and arrays made Python numbers and lists, recursively (tensors
    are kept): what a checkpoint stores beside its tensors, so ``weights_only`` loads it."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _tuples(value):
    """``random.setstate`` wants tuples where a checkpoint may hold lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


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
        "best": float(best),
        "config": plain(config),
        "metrics": plain(metrics or {}),
        "rng": rng_state(),
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    with atomic_writer(path) as handle:
        torch.save(state, handle)


# Checkpoints written before their RNG states were plain data hold one numpy array (the
# MT19937 key); these are the only globals that rebuild it, so those files still load.
_LEGACY_NUMPY = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, loaded with ``weights_only=True``: tensors and plain data only.

    A file that holds anything else (a pickled object, which could run code as it loads) is
    refused with ``SystemExit`` naming the file; nothing in it runs."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        reason = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise SystemExit(f"{path}: refused: this checkpoint holds more than tensors and plain data (a pickled "
                         f"object, which could run code when loaded), so it is not loaded. Use a checkpoint "
                         f"this project wrote. ({reason.strip()})") from None


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

"""Resumable checkpoints: model, optimiser, scheduler, weight EMA, epoch, RNG states, run config.

A run lives in ``run_dir(RUN)``. ``inference_weights`` is what export and evaluation load: the
EMA's weights when the run kept one, else the trained weights; ``load_run_weights`` is where a
continuation starts.
"""
from __future__ import annotations

import os
import random
import zipfile
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


class CheckpointError(SystemExit):
    """A checkpoint that cannot be loaded: a ``SystemExit`` whose message names the file and why
    (no such file, not a checkpoint, damaged, a pickled object). ``models.tools.train`` and
    ``models.tools.export`` print it as ``error: ...`` and exit 2 (bad input, as ``python -m app``)."""


def exit_on_checkpoint_error(main):
    """``main`` of a command-line tool with a ``CheckpointError`` printed as ``error: MESSAGE`` on
    stderr and exit status 2 (bad input; ``app.cli.exit_codes.ERROR``), no traceback."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapped


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, loaded with ``weights_only=True``: tensors and plain data only.

    A file that cannot be loaded is refused with ``CheckpointError`` naming the file and the reason:
    no such file, not a PyTorch checkpoint, damaged (e.g. truncated), or, only where the file really
    is a well-formed pickle naming other globals, a pickled object (which could run code as it
    loads). Nothing in the file runs."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read this checkpoint ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(f"{path}: is empty (0 bytes), not a checkpoint") from None
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes torch raise, one message
        raise CheckpointError(f"{path}: {_why_not_loaded(path, head, e)}") from None
    if not isinstance(state, dict) or "model" not in state:
        held = "no 'model' entry" if isinstance(state, dict) else f"a {type(state).__name__}, not a dictionary"
        raise CheckpointError(f"{path}: not a checkpoint of this project's training ({held}: the network's "
                              f"weights are not in it)")
    return state


def task_config(state: dict, path: Path) -> dict:
    """The network's configuration (``state["config"]["task"]``) that export and evaluation build
    the model from; ``CheckpointError`` naming ``path`` where a checkpoint has none (weights
    saved by other code)."""
    config = state.get("config")
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(task, dict) or "model" not in task:
        raise CheckpointError(f"{path}: holds weights but no run configuration (config.task): not a checkpoint "
                              f"written by this project's training (models.tools.train), so the network "
                              f"cannot be rebuilt")
    return task


# The modules whose globals a checkpoint of tensors and plain data names (torch's tensor
# rebuilding, OrderedDict, the legacy numpy key); any other global is a pickled object.
_PLAIN_MODULES = {"torch", "collections", "numpy", "_codecs"}


def _why_not_loaded(path: Path, head: bytes, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``: the file's format is read (zip
    directory, pickle opcodes via ``pickletools``, which never imports or runs anything) to tell a
    pickled object from a file that is damaged or not a checkpoint at all."""
    detail = _one_line(error)
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            return (f"a damaged checkpoint: it looks truncated (torch.save's zip format, but the zip's "
                    f"directory at the end of the file is missing or broken: a copy or download that "
                    f"stopped before the end?) ({_one_line(e)})")
        try:
            with archive:
                members = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if not members:
                    return "a zip file, but not a PyTorch checkpoint (no data.pkl in it)"
                with archive.open(members[0]) as pickled:
                    globals_ = _pickle_globals(pickled, 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
            return f"a damaged checkpoint: part of it is corrupt ({_one_line(e)})"
    else:  # the legacy format's first pickles, or a bare pickle file
        with open(path, "rb") as pickled:
            globals_ = _pickle_globals(pickled, 4)
        if globals_ is None and head[:1] != b"\x80":
            return "not a PyTorch checkpoint (neither torch.save's zip format nor a pickle)"
    if globals_ is None:
        return f"a damaged checkpoint, or not a checkpoint at all: its pickle cannot be read ({detail})"
    # (a STACK_GLOBAL's name is on the stack, not in the opcode: torch's own message names it)
    foreign = [name for name in globals_
               if name != "STACK_GLOBAL" and name.split(" ")[0].split(".")[0] not in _PLAIN_MODULES]
    if foreign or (globals_ and "GLOBAL" in str(error)):
        named = detail if "GLOBAL" in detail else f"it names {', '.join(n.replace(' ', '.') for n in foreign[:3])}"
        return (f"refused: this checkpoint holds more than tensors and plain data (a pickled object, which "
                f"could run code when loaded), so it is not loaded. Use a checkpoint this project wrote. "
                f"({named})")
    return f"a damaged checkpoint: it cannot be loaded as tensors and plain data ({detail})"


_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}


def _pickle_globals(stream, pickles: int) -> list[str] | None:
    """The globals named by the (up to) ``pickles`` pickles at the start of ``stream``, read with
    ``pickletools.genops`` (opcodes only: nothing imported or run), or None where they are not
    well-formed pickles (random bytes, text, a cut-off file)."""
    import pickletools

    names: list[str] = []
    try:
        for _ in range(pickles):
            stopped = False
            recent: list[str | None] = []  # what the opcodes pushed: strings, None for anything else
            memo: dict[int, str | None] = {}
            for opcode, arg, _pos in pickletools.genops(stream):
                op = opcode.name
                if op in ("GLOBAL", "INST"):
                    names.append(str(arg))
                elif op == "STACK_GLOBAL":  # module and name are the two strings pushed before it
                    pair = recent[-2:]
                    names.append(f"{pair[0]} {pair[1]}" if len(pair) == 2 and None not in pair else op)
                elif op in _STRING_OPS:
                    recent.append(str(arg))
                elif op == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif op in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = recent[-1] if recent else None
                elif op in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(arg))
                elif opcode.stack_after:
                    recent.append(None)
                del recent[:-2]
                stopped = op == "STOP"
            if not stopped:
                return None
            if not stream.peek(1):  # a bare pickle file: one pickle, then the end
                break
    except Exception:  # noqa: BLE001 - not a well-formed pickle
        return None
    return names


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), None)
    return named or (lines[-1] if lines else type(error).__name__)


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

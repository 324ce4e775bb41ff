"""Which ``Task`` trains a network: by model name, or from a run's recorded ``config()``."""
from __future__ import annotations

from models.training.ccnn_task import CCNNTask
from models.training.drr_task import DRRTask
from models.training.ffld_task import FFLDTask
from models.training.heatmap_task import HeatmapTask
from models.training.sgfa_task import SGFATask
from models.training.task import Task


def build_task(model: str, **options) -> Task:
    if model == "mnv2_sdd":
        return HeatmapTask(**options)
    if model == "r18_ffld":
        return FFLDTask(**options)
    if model == "sgfa":
        return SGFATask(**options)
    if model == "drr":
        return DRRTask(**options)
    if model == "ccnn":
        return CCNNTask(**options)
    raise ValueError(f"no training task for model {model!r}")


def task_from_config(t: dict) -> Task:
    """The Task a checkpoint was trained with, from its recorded ``config()``."""
    if t.get("task") == "ffld":
        return FFLDTask.from_config(t)
    if t.get("task") == "sgfa":
        return SGFATask.from_config(t)
    if t.get("task") == "drr":
        return DRRTask.from_config(t)
    if t.get("task") == "ccnn":
        return CCNNTask.from_config(t)
    return HeatmapTask(sigma=t["sigma"], loss_name=t["loss"], foreground_weight=t["foreground_weight"],
                       init_run=t.get("init_run", ""), imagenet_init=t.get("imagenet_init", False),
                       init_onnx=t.get("init_onnx", ""))

"""The model card's prose: what a run trained on, how it was validated, where a fine-tune started,
its schedule and hours. Plain text from a run's configuration (``models.tools.export`` writes it
into the manifest's ``card``)."""
from __future__ import annotations

import json
from pathlib import Path


def training_data_text(train: dict) -> str:
    """The card's data sentence for a run's ``train`` configuration (hold-outs, views, teacher, labels)."""
    held = f"minus a {100 * train.get('val_fraction', 0.05):g}% validation hold-out, seed {train.get('split_seed', 0)}"
    ytf = "ytf68 (YouTube Faces frames"
    if train.get("val_identity_fraction"):
        ytf += f", minus {100 * train['val_identity_fraction']:g}% of its people held out for validation"
    ytf += ")"
    if train.get("ytf68_teacher"):
        ytf += (" with the teacher's points in place of its integer labels (flip-averaged ensemble of the "
                "shipped r18_ffld and mnv2_sdd, models/training/teacher.py)")
    text = f"300-W AFW + HELEN train ({held}) and {ytf}"
    if train.get("large_pose_fraction"):
        text += (f", plus large-pose views of the training faces (Face Mesh profiling, models/training/pose_views.py) "
                 f"adding {train['large_pose_fraction']:g}x each epoch's samples")
    text += "; crops aligned to the template from the five keypoints derived from the ground truth"
    if train.get("label_offset_x"):
        text += (f"; flipped samples keep the labels' +{train['label_offset_x']:g} px horizontal offset "
                 "(models/training/label_offset.py)")
    if train.get("distill"):
        text += f"; every training target {train['distill']:g} teacher, the rest labels (distillation)"
    return text + "; HELEN test and the AFLW2000-3D validation faces never used for training or selection"


def validation_text(train: dict) -> str:
    """What the checkpoint's validation NME was measured on."""
    text = f"{100 * train.get('val_fraction', 0.05):g}% hold-out of 300-W afw+helen_train"
    if train.get("val_identity_fraction"):
        text += f" and {100 * train['val_identity_fraction']:g}% of the ytf68 people"
    return text + ", GT-aligned crops"


def fine_tune_start_text(init_onnx: str, run: str) -> str:
    """Where a fine-tune started: the exported file, by digest (the file at that path may since
    have been replaced), and that file's own recipe (``onnx_init.start_card``)."""
    from models.training.onnx_init import start_card

    kept = start_card(run)
    digest = f"sha256 {kept['sha256'][:12]}" if kept.get("sha256") else "digest not recorded"
    return (f"the weights of {init_onnx} ({digest}; fine-tuned, batch norms frozen; that file's recipe: "
            f"{kept.get('card', {}).get('recipe', 'not recorded')})")


def augment_text(augment: dict) -> str:
    err = augment.get("keypoint_error", {})
    source = err.get("source", err) if isinstance(err, dict) else err
    rest = ", ".join(f"{k} {v}" for k, v in augment.items() if k != "keypoint_error")
    from models.datasets import PROJECT_ROOT

    source = str(source).replace(str(PROJECT_ROOT) + "/", "")
    return f"detector-like keypoint jitter ({source}), {rest}"


def ffld_start_text(task: dict, run: str) -> str:
    """Where an r18_ffld full-model run started: an S0 baseline run, (a continuation) the
    full model of an earlier run, or (a fine-tune) an exported file."""
    init_run = task.get("init_run", "")
    if task.get("init_onnx"):
        return f"the full model from {fine_tune_start_text(task['init_onnx'], run)}"
    if not init_run:
        return "the full model from a random start (no S0 baseline run)"
    if _run_task_config(init_run).get("refine", False):
        return f"the full model, continuing the weights of run {init_run}"
    return f"S0 baseline run {init_run} first, then the full model"


def schedule_text(train: dict) -> str:
    """The learning-rate schedule and weight averaging of a run's configuration, in words."""
    text = (f"{train['schedule']} schedule with {train['warmup_epochs']} warm-up epochs down to "
            f"{train['min_lr_ratio']}x the peak")
    return text + (f", weights averaged by an EMA (decay {train['ema_decay']})" if train.get("ema_decay") else "")


def run_hours(run: str, up_to_epoch: int | None = None) -> tuple[float, int]:
    """Training hours (sum of the logged epochs' ``train_s``; validation and crop caching not
    counted) and epoch count of training run ``run``, up to ``up_to_epoch`` if given."""
    from models.training.checkpoint import run_dir

    path = run_dir(run) / "log.jsonl"
    if not path.is_file():
        return 0.0, 0
    epochs = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            if up_to_epoch is None or entry["epoch"] <= up_to_epoch:
                epochs[entry["epoch"]] = entry["train_s"]
    return sum(epochs.values()) / 3600, len(epochs)


def training_text(state: dict, checkpoint: Path, init_run: str = "") -> str:
    """The model card's machine and training-time sentence, counting the chain of runs each
    continuation started from."""
    import os
    import platform

    run = state["config"]["train"].get("run") or checkpoint.parent.name
    hours, epochs = run_hours(run, state["epoch"])
    parts = [f"run {run}: {epochs} epochs, {hours:.2f} h"]
    for earlier in _starting_runs(init_run):
        init_hours, init_epochs = run_hours(earlier)
        parts.append(f"after its starting run {earlier}: {init_epochs} epochs, {init_hours:.2f} h")
        hours += init_hours
    text = (f"trained with torch on CPU ({platform.machine()}, {os.cpu_count()} cores, no GPU), shared with other "
            f"work; {'; '.join(parts)}; {hours:.2f} h of training steps in total (validation and crop caching "
            f"not counted)")
    from models.training.onnx_init import start_card

    earlier_card = start_card(run)
    if earlier_card:
        text += (f"; fine-tuned from {earlier_card['file']} (sha256 {earlier_card['sha256'][:12]}), whose own "
                 f"training was: {earlier_card['card'].get('training', 'not recorded')}")
    return text


def _starting_runs(init_run: str) -> list[str]:
    """``init_run``, the run it started from, and so on back to a run trained from scratch."""
    chain = []
    while init_run and init_run not in chain:
        chain.append(init_run)
        init_run = _run_task_config(init_run).get("init_run", "")
    return chain


def _run_task_config(run: str) -> dict:
    """The task section of training run ``run``'s ``config.json``; empty if the run is not here."""
    from models.training.checkpoint import run_dir

    config = run_dir(run) / "config.json"
    return json.loads(config.read_text())["task"] if config.is_file() else {}


def occluder_text(prob: float) -> str:
    if not prob:
        return ""
    return (f"; synthetic occluders on {prob:.0%} of the training faces, the points they cover given a zero "
            "score target (models/training/occlusion.py)")

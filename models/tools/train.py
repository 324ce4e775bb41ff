"""Train a landmark network: ``python -m models.tools.train --model mnv2_sdd --run NAME --epochs N ...``.

Runs resume automatically: the same command continues from ``engines.files.cache_dir()/train/NAME/last.pt``.
``--evaluate CHECKPOINT`` scores a checkpoint on a folder (default: the 300-W HELEN test set)
through the run-time alignment path instead of training.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    from models.metrics import NORMALISERS
    from models.training.augment import DETECTOR_ERROR_FILE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, choices=["mnv2_sdd", "r18_ffld", "sgfa", "drr", "ccnn"])
    p.add_argument("--run", help="run name (folder under cache_dir()/train)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--schedule", choices=["cosine", "onecycle"], default="cosine")
    p.add_argument("--min-lr-ratio", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: only where the CPU runs bfloat16 natively)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, default=2, help="torch threads; 0 = auto (1 while the CPU is shared)")
    p.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (short experiments)")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--w300-repeat", type=int, default=2)
    p.add_argument("--ytf-fraction", type=float, default=0.5)
    p.add_argument("--val-identities", type=float, default=0.0,
                   help="also validate on every frame of this share of the ytf68 people (e.g. 0.1: about 420 faces)")
    p.add_argument("--label-offset-x", type=float, default=0.0,
                   help="image pixels the labels sit right of the feature (measured: 1.0 on every training source, "
                        "docs/RESULTS.md 'Label offsets per source'); flipped samples keep the offset")
    p.add_argument("--ytf68-teacher", action="store_true",
                   help="train on the teacher ensemble's points for ytf68 instead of its integer labels "
                        "(models/training/teacher.py; validation keeps the labels)")
    p.add_argument("--distill", type=float, default=0.0, metavar="W",
                   help="train every sample (views too) on W x the teacher ensemble's points + (1 - W) x "
                        "the labels (models/training/teacher.py)")
    p.add_argument("--large-pose-fraction", type=float, default=0.0,
                   help="add this share of each epoch in large-pose views (build them first: "
                        "python -m models.training.pose_views --build --crop-size INPUT)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="keep an EMA of the weights (e.g. 0.998); validation, best.pt and export use it")
    g = p.add_argument_group("heatmap task")
    g.add_argument("--sigma", type=float, default=None,
                   help="target Gaussian sigma, heatmap pixels (default: mnv2_sdd 1.5; sgfa the same share of its map)")
    g.add_argument("--loss", choices=["mse", "wmse", "awing"], default=None,
                   help="heatmap loss (default: mnv2_sdd awing; sgfa mse, the paper's)")
    g.add_argument("--fg-weight", type=float, default=10.0, help="extra weight on the dilated foreground")
    g.add_argument("--init-run", default="", help="start from the last.pt of this run (a continuation with a new schedule)")
    g.add_argument("--init-onnx", default="",
                   help="fine-tune from the weights of this exported ONNX file (e.g. assets/r18_ffld.onnx; batch "
                   "norms stay frozen, models/training/onnx_init.py); r18_ffld: no S0 run, --s0-epochs is ignored")
    g.add_argument("--imagenet-init", action="store_true",
                   help="start the MobileNetV2 backbone from the shared ImageNet weights (TFLite, converted)")
    g = p.add_argument_group("sgfa task (also --sigma, --loss, --fg-weight, --init-run)")
    g.add_argument("--output-size", type=int, choices=[128, 64], default=128,
                   help="map size: 128 (the paper's) or 64 (no upsampling: the CPU departure, docs/DESIGN.md)")
    g.add_argument("--head-channels", type=int, default=128, help="channels of the branches' heads")
    g.add_argument("--score-radius", type=float, default=None,
                   help="score-map radius, heatmap pixels (default 4%% of the map side)")
    g.add_argument("--score-weight", type=float, default=1.0, help="lambda: weight of the score-map MSE")
    g.add_argument("--occlusion-prob", type=float, default=0.0,
                   help="share of samples given a synthetic occluder whose covered points get a zero score target "
                        "(models/training/occlusion.py)")
    g = p.add_argument_group("drr task (also --sigma, --loss, --fg-weight, --init-run, --imagenet-init)")
    g.add_argument("--steps", type=int, default=4, help="recurrent regression steps K (the paper: 8, converged after ~4)")
    g.add_argument("--recurrent", action=argparse.BooleanOptionalAction, default=True,
                   help="the LSTM's recurrent shape feature (--no-recurrent: a plain cascade, the ablation)")
    g.add_argument("--point-weight", type=float, default=1.0, help="weight of the per-step point loss (NME units)")
    g = p.add_argument_group("ccnn task (also --steps, --point-weight, --sigma, --loss, --fg-weight, --init-run, "
                             "--imagenet-init)")
    g.add_argument("--heatmap-only", action="store_true",
                   help="ccnn: no regression cascade, the last heatmap unit's positions (the ablation)")
    g.add_argument("--input-size", type=int, default=0,
                   help="ccnn: crop size, a multiple of 32 (default 128; 160 and 192 cost more, docs/DESIGN.md)")
    g.add_argument("--paper-size", action="store_true", help="ccnn: the paper-size network (256 px; cost studies)")
    g = p.add_argument_group("r18_ffld task (baseline run, then the full model from its weights)")
    g.add_argument("--s0-epochs", type=int, default=30, help="epochs of the S0 baseline run")
    g.add_argument("--s0-run", help="run name of the S0 baseline (default RUN_s0); --epochs is the full model's; "
                   "with --s0-epochs 0 the full model starts from that run's weights without training it")
    g.add_argument("--stage3-loss", choices=["align", "l1"], default="align")
    g.add_argument("--l2-weight", type=float, default=10.0, help="weight of the S0/S1 L2 losses")
    g.add_argument("--l2-cap", type=float, default=0.1,
                   help="point error (inter-ocular units) beyond which the L2 losses grow linearly; 0: plain")
    g.add_argument("--align-weight", type=float, default=1.0)
    g.add_argument("--align-sigma", type=float, default=1.0, help="align-loss blur, feature pixels")
    g.add_argument("--confidence-sigma", type=float, default=0.08, help="inter-ocular units")
    g.add_argument("--confidence-weight", type=float, default=0.1)
    g.add_argument("--negative-fraction", type=float, default=0.1, help="share of non-face crops (full model)")
    g = p.add_argument_group("augmentation")
    g.add_argument("--jitter-scale", type=float, default=1.0, help="multiplies the detector keypoint error")
    g.add_argument("--detector-error", type=Path, default=DETECTOR_ERROR_FILE,
                   help="JSON of per-slot keypoint error (default used if the file is absent)")
    g.add_argument("--detector", default="retinaface",
                   help="whose error in that file to imitate ('max': largest std per slot over all)")
    g.add_argument("--rotation", type=float, default=30.0, help="max rotation, degrees")
    g.add_argument("--scale", type=float, default=0.15, help="max relative scale change")
    g.add_argument("--translation", type=float, default=0.05, help="max shift, crop units")
    p.add_argument("--stop-after", type=int, default=0, help="return after this many epochs (resume later)")
    p.add_argument("--restart", action="store_true", help="start over even if the run has a checkpoint")
    p.add_argument("--evaluate", type=Path, help="checkpoint to evaluate instead of training")
    p.add_argument("--eval-set", default=None, help="annotated folder for --evaluate (default: HELEN test)")
    p.add_argument("--norm", choices=NORMALISERS, default="io",
                   help="with --evaluate: the NME's normaliser (box for AFLW2000-3D, as in the field)")
    p.add_argument("--points", type=int, choices=[68, 51], default=68,
                   help="with --evaluate: 51 scores the points off the jaw line")
    p.add_argument("--no-ema", action="store_true",
                   help="with --evaluate: the trained weights, not the run's weight EMA (an ablation)")
    args = p.parse_args(argv)
    if not args.evaluate and not args.run:
        p.error("--run is required for training")
    if not 0.0 <= args.occlusion_prob <= 1.0:
        p.error(f"--occlusion-prob is a share between 0 and 1, got {args.occlusion_prob}")
    if args.occlusion_prob and args.model != "sgfa":
        p.error("--occlusion-prob trains visibility targets, which only sgfa has")
    if not 0.0 <= args.distill <= 1.0:
        p.error(f"--distill is a share of the target between 0 and 1, got {args.distill}")
    return args


def main(argv=None) -> None:
    from models.training.checkpoint import exit_on_checkpoint_error

    exit_on_checkpoint_error(_main)(argv)


def _main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from models.training.tasks import build_task, task_from_config

    torch.set_num_threads(max(1, args.threads))
    if args.evaluate:
        from models.datasets import TEST_SET
        from models.training.checkpoint import inference_weights, load_checkpoint, task_config
        from models.training.evaluate import evaluate_folder

        state = load_checkpoint(args.evaluate)
        task = task_from_config(task_config(state, args.evaluate))
        model = task.blank_model()
        model.load_state_dict(state["model"] if args.no_ema else inference_weights(state))
        folder = args.eval_set or TEST_SET
        result = evaluate_folder(model, task, folder, methods=("dark", "argmax"), norm=args.norm, points=args.points)
        weights = "trained" if args.no_ema or "ema" not in state else "ema"
        report = {"checkpoint": str(args.evaluate), "epoch": state.get("epoch"), "weights": weights, "set": folder,
                  "norm": args.norm, "points": args.points, **result}
        print(json.dumps(report, indent=1))
        return

    from models.training.augment import AugmentConfig, load_keypoint_error
    from models.training.loop import TrainConfig, native_bf16, train

    if args.bf16 is None:
        args.bf16 = native_bf16()
    elif args.bf16 and not native_bf16():
        print("warning: --bf16 on a CPU without native bfloat16 is emulated and about 10x slower than "
              "float32 here; --no-bf16 (or no option) trains in float32", file=sys.stderr)

    augment_cfg = AugmentConfig(jitter_scale=args.jitter_scale, rotation_deg=args.rotation, scale=args.scale,
                                translation=args.translation,
                                keypoint_error=load_keypoint_error(args.detector_error, args.detector),
                                occlusion_prob=args.occlusion_prob)
    cfg = TrainConfig(run=args.run, epochs=args.epochs, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                      warmup_epochs=args.warmup_epochs, schedule=args.schedule, min_lr_ratio=args.min_lr_ratio,
                      seed=args.seed, bf16=args.bf16, channels_last=args.channels_last, threads=args.threads,
                      max_steps=args.max_steps, val_fraction=args.val_fraction, w300_repeat=args.w300_repeat,
                      ytf_fraction=args.ytf_fraction, val_identity_fraction=args.val_identities,
                      ema_decay=args.ema_decay, large_pose_fraction=args.large_pose_fraction,
                      label_offset_x=args.label_offset_x, ytf68_teacher=args.ytf68_teacher,
                      distill=args.distill)
    if args.model == "r18_ffld":
        train_r18_ffld(args, cfg, augment_cfg)
        return
    options = {"sigma": args.sigma, "loss_name": args.loss}
    options = {k: v for k, v in options.items() if v is not None}
    if args.model == "sgfa":
        task = build_task("sgfa", output_size=args.output_size, head_channels=args.head_channels,
                          score_radius=args.score_radius, score_weight=args.score_weight,
                          foreground_weight=args.fg_weight, init_run=args.init_run, init_onnx=args.init_onnx,
                          **options)
        if args.init_onnx:
            from models.training.onnx_init import keep_start_card

            keep_start_card(args.run, Path(args.init_onnx))
    elif args.model == "drr":
        if args.init_onnx:
            raise SystemExit("--init-onnx is offered for r18_ffld, mnv2_sdd and sgfa, not drr")
        task = build_task("drr", steps=args.steps, recurrent=args.recurrent, point_weight=args.point_weight,
                          foreground_weight=args.fg_weight, init_run=args.init_run,
                          imagenet_init=args.imagenet_init, **options)
    elif args.model == "ccnn":
        if args.init_onnx:
            raise SystemExit("--init-onnx is offered for r18_ffld, mnv2_sdd and sgfa, not ccnn")
        task = build_task("ccnn", steps=args.steps, heatmap_only=args.heatmap_only, input_size=args.input_size,
                          paper=args.paper_size, point_weight=args.point_weight, foreground_weight=args.fg_weight,
                          init_run=args.init_run, imagenet_init=args.imagenet_init, **options)
    else:
        task = build_task(args.model, foreground_weight=args.fg_weight, init_run=args.init_run,
                          imagenet_init=args.imagenet_init, init_onnx=args.init_onnx, **options)
        if args.init_onnx:
            from models.training.onnx_init import keep_start_card

            keep_start_card(args.run, Path(args.init_onnx))
    train(cfg, task, augment_cfg, restart=args.restart, stop_after=args.stop_after)


def train_r18_ffld(args, cfg, augment_cfg) -> None:
    """The paper's schedule in one resumable command: the S0 baseline run (``--s0-epochs``,
    its own learning-rate schedule), then the full model (``--epochs``) from its weights.
    ``--restart`` restarts both; ``--stop-after`` counts the epochs of both runs in this call.
    ``--s0-epochs 0 --s0-run NAME`` starts the full model from run NAME's last weights as they are;
    ``--init-onnx FILE`` from an exported file's weights (a fine-tune of shipped weights)."""
    import dataclasses

    from models.training.ffld_task import FFLDTask
    from models.training.checkpoint import load_checkpoint, run_dir
    from models.training.loop import train

    s0_run = args.s0_run or f"{args.run}_s0"
    stop_after = args.stop_after
    if args.init_onnx:
        if args.s0_run:
            raise SystemExit("--init-onnx and --s0-run are two different starts; give one")
        args.s0_epochs = 0
        from models.training.onnx_init import keep_start_card

        keep_start_card(args.run, Path(args.init_onnx))
    if args.s0_epochs > 0:
        s0_cfg = dataclasses.replace(cfg, run=s0_run, epochs=args.s0_epochs)
        last = run_dir(s0_run) / "last.pt"
        done = 0 if args.restart or not last.is_file() else load_checkpoint(last)["epoch"]
        summary = train(s0_cfg, FFLDTask(refine=False, l2_weight=args.l2_weight, l2_cap=args.l2_cap,
                                                 negative_fraction=0.0),
                        augment_cfg, restart=args.restart, stop_after=stop_after)
        if summary and stop_after:  # --stop-after counts the epochs of both runs in this call
            stop_after -= summary["epoch"] - done
            if stop_after <= 0:
                return
    init_run = s0_run if args.s0_epochs > 0 or args.s0_run else ""
    task = FFLDTask(refine=True, init_run=init_run, init_onnx=args.init_onnx, stage3_loss=args.stage3_loss,
                    l2_weight=args.l2_weight, l2_cap=args.l2_cap, align_weight=args.align_weight,
                    align_sigma=args.align_sigma,
                    confidence_sigma=args.confidence_sigma, confidence_weight=args.confidence_weight,
                    negative_fraction=args.negative_fraction)
    train(cfg, task, augment_cfg, restart=args.restart, stop_after=stop_after)


if __name__ == "__main__":
    main()

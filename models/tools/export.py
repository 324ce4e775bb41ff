"""Export a trained checkpoint to ONNX + manifest for the app.

``python -m models.tools.export --model mnv2_sdd --checkpoint PATH --out assets/``
writes ``OUT/mnv2_sdd.onnx`` (opset 17, dynamic batch) and ``OUT/mnv2_sdd.json``
(``models.manifest`` schema), checks ONNX Runtime against torch on real aligned crops
(prints the largest absolute difference) and, with ``--benchmark``, times batch-1 CPU
inference. ``--in-graph-decode`` appends DARK decoding to the graph instead (outputs
``coords`` in heatmap pixel-centre units and ``confidence``), for comparing with
decoding on the host.

``--model r18_ffld`` exports the regression network as the ``coords`` kind: outputs
``coords`` (N, 68, 2) in normalised crop units and ``confidence`` (N, 68), with the
CropNets' bilinear crops inside the graph (GridSample, opset 17).

``--model sgfa`` exports the heatmap kind with two outputs, ``heatmaps`` and ``scores`` (N, 68,
S, S) each; the manifest names the exemplar shape dictionary (copied beside the ONNX file when
``--out`` is not the folder that holds it) for the run-time repair.

After the FP32 file and manifest, ``models.tools.quantize`` writes the INT8 copy ``OUT/NAME.int8.onnx``
and ``models.tools.quantize_openvino`` OpenVINO's INT8 IR ``OUT/NAME.ov-int8.xml`` (NNCF), both
recorded in the manifest (``--no-int8`` skips them).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.tools.model_card import (  # the model card's prose
    augment_text, ffld_start_text, fine_tune_start_text, occluder_text, schedule_text, training_data_text,
    training_text, validation_text,
)


def _in_graph_decoder(task):
    """torch module: heatmaps -> (coords, confidence), the same DARK step as models.heatmap_decode."""
    from models.nets.heatmap_layers import DarkDecode

    return DarkDecode(task.decode_kernel())


def load_trained(model_name: str, checkpoint: Path):
    from models.training.checkpoint import CheckpointError, inference_weights, load_checkpoint, task_config
    from models.training.tasks import task_from_config

    state = load_checkpoint(checkpoint)
    t = task_config(state, checkpoint)
    if t["model"] != model_name:
        raise CheckpointError(f"{checkpoint} holds a {t['model']!r} network, not {model_name!r}")
    task = task_from_config(t)
    model = task.blank_model()
    model.load_state_dict(inference_weights(state))
    model.eval().requires_grad_(False)
    return task, model, state


def sample_crops(task, count: int = 8) -> np.ndarray:
    """Real aligned crops (first HELEN-train faces, run-time alignment) for the torch/ORT check."""
    import cv2

    from models.align import align_from_landmarks
    from models.datasets import data_root, list_annotated

    items = list_annotated(data_root() / "300w" / "helen_train")[:count]
    return np.stack([align_from_landmarks(cv2.imread(str(i.image_path)), i.load_points(), task.input_size).image
                     for i in items])


def _split_outputs(model, split):
    """torch module: ``model`` with its one output cut into two by ``split`` (output -> (a, b))."""
    import torch

    class Split(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return split(self.net(x))

    return Split()


def _coords_and_confidence(out):
    """r18_ffld's (N, 68, 3) [u_x, u_y, confidence] output as coords and confidence."""
    return out[..., :2], out[..., 2]


def _heatmaps_and_scores(out):
    """SGFA's (N, 136, S, S) output as heatmaps and score maps."""
    from models.landmarks68 import NUM_LANDMARKS

    return out[:, :NUM_LANDMARKS], out[:, NUM_LANDMARKS:]


def export_onnx(model, task, path: Path, in_graph_decode: bool) -> list[str]:
    import torch

    net = model
    outputs = ["heatmaps"]
    if task.name == "sgfa":
        if in_graph_decode:
            raise SystemExit("--in-graph-decode is not offered for sgfa (its score maps are read at the decoded points)")
        net = _split_outputs(model, _heatmaps_and_scores).eval()
        outputs = ["heatmaps", "scores"]
    elif task.name in ("r18_ffld", "drr", "ccnn"):
        net = _split_outputs(model, _coords_and_confidence).eval()
        outputs = ["coords", "confidence"]
    elif in_graph_decode:
        net = torch.nn.Sequential(model, _in_graph_decoder(task)).eval()
        outputs = ["coords", "confidence"]
    dummy = torch.zeros(1, 3, task.input_size, task.input_size)
    # TorchScript-based exporter (dynamo=False): the torch.export-based one needs onnxscript,
    # which is not a dependency here; this one handles these plain conv graphs exactly.
    torch.onnx.export(net, (dummy,), str(path), opset_version=17, input_names=["input"], output_names=outputs,
                      dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}, dynamo=False)
    return outputs


def ort_session(path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def benchmark(session, input_size: int, runs: int = 200, decode=None) -> dict:
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size)).astype(np.float32)
    for _ in range(10):
        session.run(None, {"input": x})
    times, cpu, decode_times = [], [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = session.run(None, {"input": x})
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if decode is not None:
            c = time.process_time()
            decode(out[0])
            decode_times.append(time.process_time() - c)
    # CPU time per run: with one thread, what a run costs on an idle core even on a shared machine
    result = {"median_ms": 1e3 * float(np.median(times)), "p10_ms": 1e3 * float(np.percentile(times, 10)),
              "cpu_median_ms": 1e3 * float(np.median(cpu))}
    if decode_times:
        result["decode_cpu_median_ms"] = 1e3 * float(np.median(decode_times))
    return result


def main(argv=None) -> dict:
    """Run the export; returns the figures it printed (max difference, size, timings). A checkpoint
    that cannot be loaded: ``error: MESSAGE`` naming it, exit status 2."""
    from models.training.checkpoint import exit_on_checkpoint_error

    return exit_on_checkpoint_error(_main)(argv)


def _main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["mnv2_sdd", "r18_ffld", "sgfa", "drr", "ccnn"])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (assets/ for the shipped model)")
    p.add_argument("--in-graph-decode", action="store_true", help="put DARK decoding inside the graph")
    p.add_argument("--benchmark", action="store_true", help="time ORT CPU inference at batch 1")
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads for the check and benchmark")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="mean confidence under which the tracker treats this network's fit as no face")
    p.add_argument("--no-int8", action="store_true", help="skip the INT8 copies (models.tools.quantize, models.tools.quantize_openvino)")
    p.add_argument("--dictionary", type=Path, default=None,
                   help="sgfa: the shape dictionary (default assets/sgfa_dictionary.npz)")
    p.add_argument("--visibility-threshold", type=float, default=0.5,
                   help="sgfa: confidence under which a point is hidden (and repaired)")
    p.add_argument("--no-repair-default", action="store_true",
                   help="sgfa: the model does not repair unless asked (the dictionary is still named)")
    p.add_argument("--test-metrics", action="store_true",
                   help="score the checkpoint on HELEN test (run-time alignment path) for the model card")
    args = p.parse_args(argv)

    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from models.manifest import DecodeOptions

    task, model, state = load_trained(args.model, args.checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{args.model}.onnx"
    outputs = export_onnx(model, task, onnx_path, args.in_graph_decode)
    import onnx

    onnx.checker.check_model(str(onnx_path))

    crops = sample_crops(task)
    x = task.to_input(crops)
    session = ort_session(onnx_path, args.threads)
    ort_out = session.run(None, {"input": x.numpy()})
    if task.name == "sgfa":
        ref = model(x).numpy()
        diff = float(np.abs(np.concatenate(ort_out, axis=1) - ref).max())
        print(f"max |ORT - torch| (heatmaps and score maps) on {len(crops)} real crops: {diff:.2e}")
    elif task.name in ("r18_ffld", "drr", "ccnn"):
        ref = model(x).numpy()
        diff = max(float(np.abs(ort_out[0] - ref[..., :2]).max()), float(np.abs(ort_out[1] - ref[..., 2]).max()))
        print(f"max |ORT - torch| (coords in crop units, confidence) on {len(crops)} real crops: {diff:.2e} "
              f"({diff * task.input_size:.2e} crop pixels)")
    elif args.in_graph_decode:
        from models.heatmap_decode import decode_heatmaps

        coords, conf = decode_heatmaps(model(x).numpy(), "dark", task.decode_kernel())
        diff = max(float(np.abs(ort_out[0] - coords).max()), float(np.abs(ort_out[1] - conf).max()))
        print(f"max |ORT in-graph decode - torch + host decode|: {diff:.2e}")
    else:
        diff = float(np.abs(ort_out[0] - model(x).numpy()).max())
        print(f"max |ORT - torch| on {len(crops)} real crops (batch {len(crops)}): {diff:.2e}")
    size_mb = onnx_path.stat().st_size / 1e6
    print(f"{onnx_path}: {size_mb:.1f} MB")
    result = {"onnx": str(onnx_path), "max_abs_diff": diff, "size_mb": size_mb}

    if args.benchmark:
        from models.heatmap_decode import decode_heatmaps

        decode = None if args.in_graph_decode or task.name in ("r18_ffld", "drr", "ccnn") else (
            lambda h: decode_heatmaps(h, "dark", task.decode_kernel()))
        if task.name == "sgfa":
            decode = _sgfa_decode(task, args)
        result["ort_cpu_batch1"] = benchmark(session, task.input_size, decode=decode)
        print(json.dumps({"ort_cpu_batch1": result["ort_cpu_batch1"], "threads": args.threads,
                          "load_average": os.getloadavg()}))

    if task.name == "r18_ffld":
        return _write_coords_manifest(args, task, model, state, onnx_path, outputs, result)
    if task.name == "sgfa":
        return _write_sgfa_manifest(args, task, model, state, onnx_path, outputs, result)
    if task.name == "drr":
        return _write_drr_manifest(args, task, model, state, onnx_path, outputs, result)
    if task.name == "ccnn":
        return _write_ccnn_manifest(args, task, model, state, onnx_path, outputs, result)
    cfg = state["config"]
    tr, t = cfg["train"], cfg["task"]
    start = "the ImageNet MobileNetV2 1.0 weights (models/training/imagenet_init.py)" if t.get("imagenet_init") else "scratch"
    if t.get("init_onnx"):
        start = fine_tune_start_text(t["init_onnx"], tr.get("run", ""))
    recipe = (f"MobileNetV2 1.0 from {start} + SDD head (1x1 reduce, pixel shuffle x2, two deconvs), 192 px "
              f"input, 68 Gaussian heatmaps 48x48 sigma {t['sigma']}, loss {t['loss']} (foreground weight "
              f"{t['foreground_weight']}); AdamW lr {tr['lr']} wd {tr['weight_decay']}, batch {tr['batch']}, "
              f"{schedule_text(tr)}, {state['epoch']}/{tr['epochs']} epochs"
              f"{', continuing the weights of run ' + t['init_run'] if t.get('init_run') else ''}; "
              f"augmentation: {augment_text(cfg['augment'])}")
    metrics = _metrics_text(args, model, task, state, {"dark": " (DARK)", "argmax": " (argmax)"})
    manifest = _heatmap_manifest(args, task, state, onnx_path, outputs, recipe, metrics,
                                 DecodeOptions(method="dark", kernel=task.decode_kernel(), in_graph=args.in_graph_decode))
    return _save_manifest(manifest, args, onnx_path, result)


def _helen_test_text(model, task, decode: str) -> str:
    """The model card's HELEN-test sentence, measured now with the given decoding."""
    from models.training.evaluate import evaluate_folder

    test = evaluate_folder(model, task, "300w/helen_test")[decode]
    return (f"; 300-W HELEN test (330 faces, crops aligned from the five GT-derived keypoints) NME_io "
            f"{100 * test['nme']:.2f}%, median {100 * test['median']:.2f}%, failures >10% {100 * test['fr10']:.1f}%")


def _metrics_text(args, model, task, state: dict, decodes: dict[str, str]) -> str:
    """The card's metrics: the checkpoint's validation NME per decoding (``decodes``: the
    validation entry's key -> its label), and HELEN test with ``--test-metrics``."""
    val = state.get("metrics", {}).get("val", {})
    found = [f"{100 * val[key]['nme']:.2f}%{label}" for key, label in decodes.items() if key in val]
    text = (f"validation ({validation_text(state['config']['train'])}) NME_io {', '.join(found)} "
            f"after epoch {state['epoch']}" if found else "no validation metrics in the checkpoint")
    if args.test_metrics:
        text += _helen_test_text(model, task, next(iter(decodes)))
    return text


def learnt_label_offset(state: dict) -> float:
    """The labels' horizontal offset the run kept through flips (``--label-offset-x``; 0 when it did not)."""
    return float(state["config"]["train"].get("label_offset_x", 0.0))


def _heatmap_manifest(args, task, state: dict, onnx_path: Path, outputs: list[str], recipe: str, metrics: str,
                      decode, **extra):
    """The manifest of a heatmap network (mnv2_sdd, sgfa): what the run-time needs, and its card."""
    from models.manifest import ModelCard, ModelManifest, template_version

    return ModelManifest(
        name=args.model, onnx=onnx_path.name, kind="heatmap", input_name="input", input_size=task.input_size,
        colour_order=task.colour_order, mean=tuple(task.mean), std=tuple(task.std), outputs=tuple(outputs),
        template_version=template_version(), heatmap_size=task.heatmap_size, min_confidence=args.min_confidence,
        decode=decode, coords_unit="heatmap", label_offset_x=learnt_label_offset(state), **extra,
        card=ModelCard(training_data=training_data_text(state["config"]["train"]), recipe=recipe, metrics=metrics,
                       training=training_text(state, args.checkpoint, state["config"]["task"].get("init_run", ""))),
    )


def _save_manifest(manifest, args, onnx_path: Path, result: dict) -> dict:
    from models.manifest import write_manifest

    path = args.out / f"{args.model}.json"
    write_manifest(manifest, path)
    print(f"wrote {onnx_path} and {path}")
    result["manifest"] = str(path)
    if not args.no_int8:
        from models.tools.quantize import quantize_network

        result["int8"] = quantize_network(path, threads=args.threads, test_metrics=args.test_metrics).int8
        from models.tools.quantize_openvino import quantize_network as quantize_for_openvino

        result["openvino_int8"] = quantize_for_openvino(path, threads=args.threads,
                                                        test_metrics=args.test_metrics).openvino_int8
    return result


def _write_coords_manifest(args, task, model, state, onnx_path: Path, outputs: list[str], result: dict) -> dict:
    """Manifest (``coords`` kind) and model card of r18_ffld."""
    from models.manifest import ModelCard, ModelManifest, template_version

    metric_text = _metrics_text(args, model, task, state, {"default": ""})
    cfg = state["config"]
    tr, t = cfg["train"], cfg["task"]
    stage3 = ("align loss (blurred 112x112 feature patches at the estimate vs the truth)"
              if t["stage3_loss"] == "align" else "L1")
    manifest = ModelManifest(
        name=args.model, onnx=onnx_path.name, kind="coords", input_name="input", input_size=task.input_size,
        colour_order=task.colour_order, mean=tuple(task.mean), std=tuple(task.std), outputs=tuple(outputs),
        template_version=template_version(), coords_unit="normalized", min_confidence=args.min_confidence,
        label_offset_x=learnt_label_offset(state),
        card=ModelCard(
            training_data=training_data_text(tr),
            recipe=(f"quarter-width ResNet18 (16-32-64-128){'' if t.get('init_onnx') else ' from scratch'}, 224 px "
                    f"input, FC regression of 68 points "
                    f"(S0), then three CropNets on 8x8 bilinear patches of the 28, 56 and 112 px maps (per-landmark "
                    f"1x1 channel selection to 4 channels); {ffld_start_text(t, tr.get('run', ''))}: losses S0/S1 L2 / "
                    f"inter-ocular (weight {t['l2_weight']}), S2 L1, S3 {stage3}; "
                    f"confidence = sigmoid of an auxiliary head trained towards exp(-e^2 / (2 * "
                    f"{t['confidence_sigma']}^2)) of the final error e (inter-ocular units) and 0 on synthetic "
                    f"non-face crops ({t['negative_fraction']} of each batch); AdamW lr {tr['lr']} wd "
                    f"{tr['weight_decay']}, batch {tr['batch']}, {schedule_text(tr)}, {state['epoch']}/"
                    f"{tr['epochs']} epochs; augmentation: "
                    f"{augment_text(cfg['augment'])}"),
            metrics=metric_text, training=training_text(state, args.checkpoint, t["init_run"])),
    )
    return _save_manifest(manifest, args, onnx_path, result)


def _save_coords_manifest(args, task, model, state, onnx_path: Path, outputs: list[str], result: dict,
                          recipe: str) -> dict:
    """The ``coords`` manifest of a network that regresses normalised points with a confidence (drr, ccnn)."""
    from models.manifest import ModelCard, ModelManifest, template_version

    tr, t = state["config"]["train"], state["config"]["task"]
    manifest = ModelManifest(
        name=args.model, onnx=onnx_path.name, kind="coords", input_name="input", input_size=task.input_size,
        colour_order=task.colour_order, mean=tuple(task.mean), std=tuple(task.std), outputs=tuple(outputs),
        template_version=template_version(), coords_unit="normalized", min_confidence=args.min_confidence,
        label_offset_x=learnt_label_offset(state),
        card=ModelCard(training_data=training_data_text(tr), recipe=recipe,
                       metrics=_metrics_text(args, model, task, state, {"default": ""}),
                       training=training_text(state, args.checkpoint, t.get("init_run", ""))),
    )
    return _save_manifest(manifest, args, onnx_path, result)


def _write_drr_manifest(args, task, model, state, onnx_path: Path, outputs: list[str], result: dict) -> dict:
    """Manifest (``coords`` kind) and model card of DRR."""
    cfg = state["config"]
    tr, t = cfg["train"], cfg["task"]
    start = "the ImageNet MobileNetV2 1.0 weights" if t.get("imagenet_init") else "scratch"
    recurrent = "an LSTM cell shared by every step (the recurrent shape feature)" if t["recurrent"] else "no recurrent feature"
    recipe = (f"MobileNetV2 1.0 from {start}, conv-deconv to 48x48x64 with skips at strides 16, 8, 4, 192 px "
              f"input; initial heatmaps (sigma {t['sigma']}, loss {t['loss']}, foreground weight "
              f"{t['foreground_weight']}) decoded by DARK to S0; {t['steps']} regression steps of shape-indexed "
              f"max pooling (3x3 samples, 1 feature pixel apart) with {recurrent}, per-step loss = NME "
              f"(weight {t['point_weight']}); confidence = the initial heatmap at the final point; AdamW lr "
              f"{tr['lr']} wd {tr['weight_decay']}, batch {tr['batch']}, {schedule_text(tr)}, "
              f"{state['epoch']}/{tr['epochs']} epochs; augmentation: {augment_text(cfg['augment'])}")
    return _save_coords_manifest(args, task, model, state, onnx_path, outputs, result, recipe)


def _write_ccnn_manifest(args, task, model, state, onnx_path: Path, outputs: list[str], result: dict) -> dict:
    """Manifest (``coords`` kind) and model card of CCNN."""
    cfg = state["config"]
    tr, t = cfg["train"], cfg["task"]
    start = "the ImageNet MobileNetV2 1.0 weights" if t.get("imagenet_init") else "scratch"
    size, maps = t["input_size"], t["heatmap_size"]
    branches = ("two paper-size plain CNNs" if t.get("paper") else
                f"two base branches (MobileNetV2 1.0 from {start} conv-deconv to {maps}x{maps}x64, and a light "
                f"4-layer CNN to {maps}x{maps}x32)")
    cascade = ("no regression cascade: the last heatmap unit's DARK positions (the ablation)" if t["heatmap_only"]
               else f"{t['steps']} regression units (each fed F, its heatmap unit's maps and the baseline maps, "
                    f"chained) regressing the residual of the DARK positions, per-unit loss = NME (weight "
                    f"{t['point_weight']})")
    recipe = (f"CCNN, {size} px input: {branches}; baseline heatmaps and {t['steps']} heatmap units (separable 7x7 "
              f"and dilated 3x3 convolutions), every heatmap set supervised (sigma {t['sigma']}, loss {t['loss']}, "
              f"foreground weight {t['foreground_weight']}); {cascade}; confidence = the last heatmap unit's value "
              f"at the final point; AdamW lr {tr['lr']} wd {tr['weight_decay']}, batch {tr['batch']}, "
              f"{schedule_text(tr)}, {state['epoch']}/{tr['epochs']} epochs; augmentation: "
              f"{augment_text(cfg['augment'])}")
    return _save_coords_manifest(args, task, model, state, onnx_path, outputs, result, recipe)


def _dictionary_file(args) -> Path:
    from models.sgfa_dictionary import DICTIONARY_FILE

    path = args.dictionary or DICTIONARY_FILE
    if not path.is_file():
        raise SystemExit(f"no shape dictionary at {path}: build it with `python -m models.sgfa_dictionary --build`")
    return path


def _sgfa_decode(task, args):
    """The host work after the network at batch 1: DARK, score sampling and the repair (the
    benchmark passes the heatmaps only; score maps of the same shape stand in)."""
    from models.heatmap_decode import decode_heatmaps, sample_maps
    from models.sgfa_repair import ShapeDictionary, repair

    dictionary = ShapeDictionary.load(_dictionary_file(args))

    def decode(heatmaps):
        coords, _ = decode_heatmaps(heatmaps, "dark", task.decode_kernel())
        weights = sample_maps(heatmaps, coords)
        return [repair(p, w, dictionary, threshold=args.visibility_threshold) for p, w in zip(coords, weights)]

    return decode


def _write_sgfa_manifest(args, task, model, state, onnx_path: Path, outputs: list[str], result: dict) -> dict:
    """Manifest (heatmap kind with score maps, repair section) and model card of SGFA."""
    import shutil

    from models.manifest import DecodeOptions, RepairOptions
    from models.sgfa_repair import ShapeDictionary

    source = _dictionary_file(args)
    target = args.out / source.name
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    dictionary = ShapeDictionary.load(target)
    cfg = state["config"]
    tr, t = cfg["train"], cfg["task"]
    start = fine_tune_start_text(t["init_onnx"], tr.get("run", "")) if t.get("init_onnx") else "scratch"
    recipe = (f"SGFA from {start}: 7x7 stride-2 conv, three pre-activation bottleneck residual blocks at 64x64, "
              f"two branches (4-level hourglass, two residual blocks to {t['head_channels']} channels, "
              f"{'nearest upsampling to 128x128, ' if t['heatmap_size'] == 128 else ''}a residual block, 1x1 conv) "
              f"giving 68 Gaussian heatmaps (sigma {t['sigma']} px) and 68 binary score maps (radius "
              f"{t['score_radius']} px), {t['heatmap_size']}x{t['heatmap_size']}, 128 px input; loss "
              f"{t['loss']} on heatmaps{' (foreground weight ' + str(t['foreground_weight']) + ')' if t['loss'] != 'mse' else ''} "
              f"+ {t['score_weight']} x MSE on score maps; confidence = score map at the DARK-decoded point; "
              f"repair: {dictionary.method}; AdamW lr {tr['lr']} wd {tr['weight_decay']}, batch {tr['batch']}, "
              f"{schedule_text(tr)}, {state['epoch']}/{tr['epochs']} epochs"
              f"{', continuing the weights of run ' + t['init_run'] if t.get('init_run') else ''}; "
              f"augmentation: {augment_text(cfg['augment'])}"
              f"{occluder_text(cfg['augment'].get('occlusion_prob', 0.0))}")
    metrics = _metrics_text(args, model, task, state, {"dark": " (DARK)"})
    manifest = _heatmap_manifest(args, task, state, onnx_path, outputs, recipe, metrics,
                                 DecodeOptions(method="dark", kernel=task.decode_kernel()),
                                 repair=RepairOptions(target.name, None, not args.no_repair_default),
                                 visibility_threshold=args.visibility_threshold)
    return _save_manifest(manifest, args, onnx_path, result)


if __name__ == "__main__":
    main()

"""INT8 copies of our ONNX networks: static quantisation with ONNX Runtime, calibrated on training crops.

``python -m models.tools.quantize --model r18_ffld`` reads ``assets/r18_ffld.onnx`` and its manifest,
writes ``assets/r18_ffld.int8.onnx`` beside it and records the INT8 file, the calibration recipe
and the measured figures in the manifest (``int8`` section, ``models.manifest.Int8Variant``).
``python -m models.tools.export`` calls ``quantize_network`` after writing the FP32 file.

Recipe: QDQ format, per-channel int8 weights (7-bit range, ``reduce_range``), uint8 activations,
calibrated on aligned crops of
the 300-W training faces (afw + helen_train) made by the training data path
(``models.training.dataset.TrainingData.plain_batch``: the crop cache's centre window, i.e. the
run-time alignment from the five ground-truth keypoints, no augmentation), excluding the 5%
validation hold-out of training. Each calibration method (MinMax, Entropy, Percentile) is tried
and the one with the lowest NME_io on that hold-out is kept. HELEN test is never used here.

Weights use the reduced 7-bit range: x86 CPUs without AVX-512 VNNI (this AMD EPYC has AVX2
only) multiply uint8 activations by int8 weights with ``vpmaddubsw``, whose 16-bit pair sums
saturate with full-range weights; on the validation hold-out r18_ffld lost 0.03 points with
full range and none with the reduced one (docs/RESULTS.md). ``--full-range`` lifts it for
CPUs with VNNI.

What stays in float: everything between the last convolution or fully connected layer and a
graph output, and every node that computes a sampling grid (``GridSample`` input 1). Those carry
coordinates, confidences or heatmaps, where 8 bits (1/255 of the range) would cost about a pixel,
and they are a sliver of the work. ``Gemm`` (the fully connected heads) is not quantised either:
its output is a coordinate. ``GridSample`` itself has no INT8 kernel in ONNX Runtime and runs in
float on dequantised feature maps. The first convolution on the image stays in float too: with
three input channels ONNX Runtime's INT8 kernel was slower than its FP32 one (r18_ffld's 7x7
stem: 4.2 against 3.8 ms in ONNX Runtime's profile).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from models.manifest import Int8Variant, ModelManifest, load_manifest, write_manifest

CALIBRATION_COUNT = 300
CALIBRATION_SEED = 0
METHODS = ("minmax", "entropy", "percentile")
ACCURACY_BAR = 0.0005  # INT8 may cost at most 0.05 points of NME_io to be the CPU default (docs/DESIGN.md)
# Operators quantised to INT8. Everything else runs in float between DequantizeLinear and
# QuantizeLinear nodes; nodes on coordinate paths are excluded by name (``float_nodes``).
QUANTISED_OPS = ("Conv", "ConvTranspose", "Add", "MaxPool", "Relu", "Clip", "DepthToSpace", "Concat",
                 "BatchNormalization", "Reshape", "Flatten", "Transpose")
_STOP_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # where a walk back from an output ends


def int8_file_name(name: str) -> str:
    return f"{name}.int8.onnx"


@dataclass
class CalibrationData:
    """Aligned training crops (uint8 BGR) and their ground-truth points in crop pixels."""

    calibration: np.ndarray  # (N, S, S, 3)
    validation: np.ndarray  # (M, S, S, 3)
    validation_points: np.ndarray  # (M, 68, 2)


def calibration_data(input_size: int, count: int = CALIBRATION_COUNT, seed: int = CALIBRATION_SEED) -> CalibrationData:
    """``count`` crops drawn from the training part of 300-W afw + helen_train, and the training's
    validation hold-out (5%, split seed 0) for choosing the calibration method."""
    from models.training.dataset import W300_SETS, TrainingData

    data = TrainingData(crop_size=input_size, sets=W300_SETS)
    ids = np.sort(np.random.default_rng(seed).choice(data.train_w300, min(count, len(data.train_w300)), replace=False))
    calib = data.plain_batch(ids)
    val = data.plain_batch(data.val_ids)
    return CalibrationData(calib.crops, val.crops, val.points.astype(np.float64))


def float_nodes(model_path: str | Path) -> list[str]:
    """Names of the nodes kept in float: the first layer on the image (three input channels: ONNX
    Runtime's INT8 kernels are slower there than its FP32 direct convolution), and walking back
    from each graph output and each ``GridSample`` grid, every node up to and including the first
    convolution or fully connected layer met (so the layer producing an output keeps a float
    output)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    starts = [o.name for o in graph.output]
    starts += [node.input[1] for node in graph.node if node.op_type == "GridSample"]
    inputs = {i.name for i in graph.input}
    keep: dict[str, None] = {n.name: None for n in graph.node if n.op_type in _STOP_OPS and n.input[0] in inputs}
    stack = list(starts)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in keep:
            continue
        keep[node.name] = None
        if node.op_type not in _STOP_OPS:
            stack.extend(node.input)
    return list(keep)


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over preprocessed batches of one crop."""

    def __init__(self, input_name: str, batch: np.ndarray):
        self.input_name, self.batch, self.index = input_name, batch, 0

    def get_next(self):
        if self.index >= len(self.batch):
            return None
        self.index += 1
        return {self.input_name: self.batch[self.index - 1 : self.index]}

    def rewind(self) -> None:
        self.index = 0


def _preprocess(manifest: ModelManifest, crops: np.ndarray) -> np.ndarray:
    from models.onnx_landmarks import preprocess_images

    return preprocess_images(crops, manifest)


def crop_nme(model_path: str | Path, manifest: ModelManifest, crops: np.ndarray, points: np.ndarray,
             threads: int = 1) -> float:
    """Mean NME_io (outer eye corners) of ``model_path`` on aligned crops with their ground truth in
    crop pixels, decoded as the app does."""
    session = _session(model_path, threads)
    batch = _preprocess(manifest, crops)
    raw = [session.run(list(manifest.outputs), {manifest.input_name: batch[i : i + 16]})
           for i in range(0, len(batch), 16)]
    outputs = {name: np.concatenate([r[k] for r in raw]) for k, name in enumerate(manifest.outputs)}
    return outputs_nme(outputs, manifest, points)


def outputs_nme(outputs: dict[str, np.ndarray], manifest: ModelManifest, points: np.ndarray) -> float:
    """Mean NME_io of a network's raw outputs on crops whose ground truth is ``points`` (crop pixels)."""
    from models.landmarks68 import OUTER_EYE_CORNERS
    from models.onnx_landmarks import normalised_points

    normalised, _ = normalised_points(outputs, manifest)
    pred = normalised * manifest.input_size - 0.5
    io = np.linalg.norm(points[:, OUTER_EYE_CORNERS[0]] - points[:, OUTER_EYE_CORNERS[1]], axis=-1)
    return float(np.mean(np.linalg.norm(pred - points, axis=-1).mean(axis=1) / io))


def validation_nme(model_path: str | Path, manifest: ModelManifest, data: CalibrationData, threads: int = 1) -> float:
    """Mean NME_io of ``model_path`` on the validation hold-out."""
    return crop_nme(model_path, manifest, data.validation, data.validation_points, threads)


def helen_test_crops(input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """HELEN test faces aligned from their five GT-derived keypoints (as ``models.tools.export
    --test-metrics``) and their ground truth in crop pixels: for model cards, never for a choice."""
    import cv2

    from models.align import align_from_landmarks, transform_points
    from models.datasets import TEST_SET, list_annotated, resolve_dataset

    crops, points = [], []
    for item in list_annotated(resolve_dataset(TEST_SET)):
        truth = item.load_points()
        crop = align_from_landmarks(cv2.imread(str(item.image_path)), truth, input_size)
        crops.append(crop.image)
        points.append(transform_points(truth, crop.matrix))
    return np.stack(crops), np.stack(points)


def helen_test_text(manifest: ModelManifest, int8_path: Path, threads: int = 1) -> str:
    """The model card's HELEN-test sentence for FP32 and INT8. Measured after the choice, never used for it."""
    crops_array, points_array = helen_test_crops(manifest.input_size)
    fp32 = crop_nme(manifest.onnx_path, manifest, crops_array, points_array, threads)
    int8 = crop_nme(int8_path, manifest, crops_array, points_array, threads)
    return (f"; 300-W HELEN test ({len(crops_array)} faces, GT-aligned crops) NME_io FP32 {100 * fp32:.3f}%, "
            f"INT8 {100 * int8:.3f}% ({100 * (int8 - fp32):+.3f} points)")


def _session(path: str | Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_network(path: str | Path, manifest: ModelManifest, crop: np.ndarray, runs: int = 100,
                 threads: int = 1) -> dict[str, float]:
    """Batch-1 wall and CPU milliseconds (medians) of the network alone on one real crop."""
    session = _session(path, threads)
    feed = {manifest.input_name: _preprocess(manifest, crop[None])}
    return time_calls(lambda: session.run(None, feed), runs)


def time_calls(call: Callable[[], object], runs: int = 100) -> dict[str, float]:
    """Wall and CPU milliseconds (medians) of ``call`` over ``runs`` calls after 10 untimed ones."""
    for _ in range(10):
        call()
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall_ms": 1e3 * float(np.median(wall)), "cpu_ms": 1e3 * float(np.median(cpu))}


def quantize_file(fp32_path: str | Path, out_path: str | Path, manifest: ModelManifest, calibration: np.ndarray,
                  method: str, reduce_range: bool = True) -> list[str]:
    """Write the INT8 QDQ model of ``fp32_path`` to ``out_path``; returns the nodes kept in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        excluded = float_nodes(prepared)
        quantize_static(
            str(prepared), str(out_path), _Reader(manifest.input_name, _preprocess(manifest, calibration)),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
            op_types_to_quantize=list(QUANTISED_OPS), nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                           "CalibMovingAverage": method == "minmax"},
        )
    return excluded


def quantize_network(manifest_path: str | Path, methods: Sequence[str] = METHODS, count: int = CALIBRATION_COUNT,
                     reduce_range: bool = True, threads: int = 1, test_metrics: bool = False,
                     say: Callable[[str], None] = print) -> ModelManifest:
    """Quantise the network of ``manifest_path`` with each calibration method, keep the best on the
    validation hold-out as ``<name>.int8.onnx`` beside the FP32 file, and record it in the manifest
    (with ``test_metrics``, also both precisions' HELEN-test NME, measured after the choice)."""
    manifest = load_manifest(manifest_path)
    data = calibration_data(manifest.input_size, count)
    fp32_nme = validation_nme(manifest.onnx_path, manifest, data, threads)
    say(f"{manifest.name}: FP32 validation NME_io {100 * fp32_nme:.3f}% ({len(data.validation)} hold-out faces)")
    out = manifest.onnx_path.with_name(int8_file_name(manifest.name))
    results: dict[str, float] = {}
    excluded: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            candidate = Path(tmp) / f"{method}.onnx"
            excluded = quantize_file(manifest.onnx_path, candidate, manifest, data.calibration, method, reduce_range)
            results[method] = validation_nme(candidate, manifest, data, threads)
            say(f"  {method}: INT8 validation NME_io {100 * results[method]:.3f}%")
        best = min(results, key=results.get)
        os.replace(Path(tmp) / f"{best}.onnx", out)
    crop = data.validation[0]
    fp32_time, int8_time = time_network(manifest.onnx_path, manifest, crop), time_network(out, manifest, crop)
    figures = (
        f"validation hold-out ({len(data.validation)} faces) NME_io FP32 {100 * fp32_nme:.3f}%, INT8 "
        + ", ".join(f"{m} {100 * v:.3f}%" for m, v in results.items())
        + f" (kept: {best}); ORT CPU batch 1, 1 thread, CPU ms median FP32 {fp32_time['cpu_ms']:.2f}, INT8 "
        f"{int8_time['cpu_ms']:.2f} (load {os.getloadavg()[0]:.1f}); size {out.stat().st_size / 1e6:.1f} MB"
    )
    recipe = (
        f"ONNX Runtime static quantisation, QDQ, per-channel symmetric int8 weights "
        f"({'7-bit range' if reduce_range else 'full range'}), asymmetric uint8 activations, calibration {best} "
        f"over {len(data.calibration)} aligned crops of the 300-W training faces (afw + helen_train minus the "
        f"validation hold-out; seed {CALIBRATION_SEED}) from the training data path without augmentation; "
        f"{len(excluded)} nodes kept in float (the first convolution on the image, the layers from the last "
        f"convolution or fully connected layer to each output, and the sampling-grid arithmetic of GridSample)"
    )
    if test_metrics:
        figures += helen_test_text(manifest, out, threads)
    say(f"wrote {out}: {figures}")
    # The default on the CPU only when INT8 stays within the accuracy bar on the hold-out.
    cpu_default = results[best] - fp32_nme <= ACCURACY_BAR
    variant = Int8Variant(onnx=out.name, calibration=best, cpu_default=cpu_default, recipe=recipe, metrics=figures)
    updated = load_manifest(manifest_path).with_int8(variant)
    write_manifest(updated, manifest_path)
    return updated


def main(argv: list[str] | None = None) -> int:
    from models.registry import ASSETS_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="network name: assets/NAME.json and its ONNX file")
    parser.add_argument("--assets", type=Path, default=ASSETS_DIR, help="folder of the manifest (default assets/)")
    parser.add_argument("--methods", default=",".join(METHODS), help="calibration methods to try (comma list)")
    parser.add_argument("--count", type=int, default=CALIBRATION_COUNT, help="calibration crops")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weights (only for CPUs with AVX-512 VNNI: without it products saturate)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for calibration checks")
    parser.add_argument("--test-metrics", action="store_true",
                        help="also score FP32 and INT8 on HELEN test for the model card (after the choice)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"unknown calibration method {unknown[0] if unknown else ''!r}; choose from {', '.join(METHODS)}")
    quantize_network(args.assets / f"{args.model}.json", methods, args.count, not args.full_range, args.threads,
                     args.test_metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

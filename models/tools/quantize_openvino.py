"""OpenVINO INT8 copies of our networks: NNCF post-training quantisation, calibrated on training crops.

``python -m models.tools.quantize_openvino --model r18_ffld`` reads ``assets/r18_ffld.onnx`` and its
manifest, writes the OpenVINO IR ``assets/r18_ffld.ov-int8.xml`` (+ ``.bin``) beside it and records
the file, the recipe and the measured figures in the manifest (``openvino_int8`` section,
``models.manifest.OpenVinoInt8Variant``). ``python -m models.tools.export`` calls
``quantize_network`` after the ONNX Runtime INT8 copy.

Why a file of its own: OpenVINO runs the ONNX Runtime QDQ file (``models.tools.quantize``) more
slowly than the FP32 one (docs/RESULTS.md, "OpenVINO back-end"), so its INT8 needs OpenVINO's own
quantisation. Recipe: NNCF ``quantize`` (symmetric int8 weights per channel, activations as the
preset says, fast bias correction) over the same calibration crops as ``models.tools.quantize``
(300 aligned crops of the 300-W training faces, afw + helen_train minus the validation hold-out,
seed 0, no augmentation), keeping in float the same nodes it keeps in float (the first
convolution on the image, the layers from the last convolution or fully connected layer to
each output, the sampling-grid arithmetic). Both presets ("performance": symmetric activations;
"mixed": asymmetric ones) are tried and the one with the lower NME_io on the training's
validation hold-out is kept. HELEN test is never used to choose.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.manifest import ModelManifest, OpenVinoInt8Variant, load_manifest, write_manifest
from models.tools.quantize import (ACCURACY_BAR, CALIBRATION_COUNT, CALIBRATION_SEED, CalibrationData,
                                   calibration_data, float_nodes, outputs_nme, time_calls)

PRESETS = ("performance", "mixed")


def openvino_int8_file_name(name: str) -> str:
    return f"{name}.ov-int8.xml"


def _runner(path: str | Path, threads: int):
    from engines.openvino import OpenVinoRunner

    return OpenVinoRunner(path, threads=threads)


def crop_nme(model_path: str | Path, manifest: ModelManifest, crops: np.ndarray, points: np.ndarray,
             threads: int = 1) -> float:
    """Mean NME_io (outer eye corners) of ``model_path`` run by OpenVINO on aligned crops with their
    ground truth in crop pixels, decoded as the app does."""
    from models.onnx_landmarks import preprocess_images

    batch = preprocess_images(crops, manifest)
    with _runner(model_path, threads) as runner:  # batch 1: the IR keeps the file's batch dimension
        raw = [runner.infer({manifest.input_name: batch[i : i + 1]}) for i in range(len(batch))]
    return outputs_nme({name: np.concatenate([r[name] for r in raw]) for name in manifest.outputs}, manifest, points)


def time_network(path: str | Path, manifest: ModelManifest, crop: np.ndarray, runs: int = 100,
                 threads: int = 1) -> dict[str, float]:
    """Batch-1 wall and CPU milliseconds (medians) of the network alone in OpenVINO on one real crop."""
    from models.onnx_landmarks import preprocess_images

    feed = {manifest.input_name: preprocess_images(crop[None], manifest)}
    with _runner(path, threads) as runner:
        return time_calls(lambda: runner.infer(feed), runs)


def quantize_file(fp32_path: str | Path, out_xml: str | Path, manifest: ModelManifest, calibration: np.ndarray,
                  preset: str) -> list[str]:
    """Write the NNCF INT8 IR of ``fp32_path`` to ``out_xml`` (+ .bin); returns the nodes kept in float."""
    import nncf
    import openvino as ov

    from models.onnx_landmarks import preprocess_images

    model = ov.Core().read_model(str(fp32_path))
    present = {op.get_friendly_name() for op in model.get_ops()}
    kept = [name for name in float_nodes(fp32_path) if name in present]
    batch = preprocess_images(calibration, manifest)
    dataset = nncf.Dataset([batch[i : i + 1] for i in range(len(batch))])
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    quantised = nncf.quantize(model, dataset, preset=presets[preset], subset_size=len(batch),
                              ignored_scope=nncf.IgnoredScope(names=kept, validate=False))
    ov.save_model(quantised, str(out_xml), compress_to_fp16=False)
    return kept


def quantize_network(manifest_path: str | Path, presets: Sequence[str] = PRESETS, count: int = CALIBRATION_COUNT,
                     threads: int = 1, test_metrics: bool = False, data: CalibrationData | None = None,
                     say: Callable[[str], None] = print) -> ModelManifest:
    """Quantise the network of ``manifest_path`` with NNCF under each preset, keep the best on the
    validation hold-out as ``<name>.ov-int8.xml`` beside the FP32 file, and record it in the manifest
    (with ``test_metrics``, also both precisions' HELEN-test NME in OpenVINO, measured after the choice)."""
    manifest = load_manifest(manifest_path)
    data = data or calibration_data(manifest.input_size, count)
    fp32_nme = crop_nme(manifest.onnx_path, manifest, data.validation, data.validation_points, threads)
    say(f"{manifest.name}: OpenVINO FP32 validation NME_io {100 * fp32_nme:.3f}% ({len(data.validation)} hold-out faces)")
    out = manifest.onnx_path.with_name(openvino_int8_file_name(manifest.name))
    results: dict[str, float] = {}
    kept: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            candidate = Path(tmp) / f"{preset}.xml"
            kept = quantize_file(manifest.onnx_path, candidate, manifest, data.calibration, preset)
            results[preset] = crop_nme(candidate, manifest, data.validation, data.validation_points, threads)
            say(f"  {preset}: OpenVINO INT8 validation NME_io {100 * results[preset]:.3f}%")
        best = min(results, key=results.get)
        for suffix in (".bin", ".xml"):  # the .xml last: a reader never finds an IR without its weights
            shutil.copyfile(Path(tmp) / f"{best}{suffix}", out.with_suffix(suffix).with_name(out.stem + ".tmp" + suffix))
            os.replace(out.with_name(out.stem + ".tmp" + suffix), out.with_suffix(suffix))
    crop = data.validation[0]
    fp32_time, int8_time = time_network(manifest.onnx_path, manifest, crop, threads=threads), time_network(
        out, manifest, crop, threads=threads)
    size = (out.stat().st_size + out.with_suffix(".bin").stat().st_size) / 1e6
    figures = (
        f"validation hold-out ({len(data.validation)} faces) NME_io OpenVINO FP32 {100 * fp32_nme:.3f}%, INT8 "
        + ", ".join(f"{p} {100 * v:.3f}%" for p, v in results.items())
        + f" (kept: {best}); OpenVINO CPU batch 1, {threads} thread(s), wall ms median FP32 "
        f"{fp32_time['wall_ms']:.2f}, INT8 {int8_time['wall_ms']:.2f} (load {os.getloadavg()[0]:.1f}); "
        f"size {size:.1f} MB"
    )
    import nncf

    recipe = (
        f"NNCF {nncf.__version__} post-training quantisation for OpenVINO, preset {best}, fast bias correction, "
        f"{len(data.calibration)} aligned crops of the 300-W training faces (afw + helen_train minus the "
        f"validation hold-out; seed {CALIBRATION_SEED}) from the training data path without augmentation; "
        f"{len(kept)} nodes kept in float (those models.tools.quantize keeps in float)"
    )
    if test_metrics:
        figures += helen_test_text(manifest, out, threads)
    say(f"wrote {out}: {figures}")
    cpu_default = results[best] - fp32_nme <= ACCURACY_BAR
    variant = OpenVinoInt8Variant(xml=out.name, preset=best, cpu_default=cpu_default, recipe=recipe, metrics=figures)
    updated = load_manifest(manifest_path).with_openvino_int8(variant)
    write_manifest(updated, manifest_path)
    return updated


def helen_test_text(manifest: ModelManifest, xml_path: Path, threads: int = 1) -> str:
    """The model card's HELEN-test sentence for OpenVINO FP32 and INT8 (GT-aligned crops)."""
    from models.tools.quantize import helen_test_crops

    crops, points = helen_test_crops(manifest.input_size)
    fp32 = crop_nme(manifest.onnx_path, manifest, crops, points, threads)
    int8 = crop_nme(xml_path, manifest, crops, points, threads)
    return (f"; 300-W HELEN test ({len(crops)} faces, GT-aligned crops) NME_io OpenVINO FP32 {100 * fp32:.3f}%, "
            f"INT8 {100 * int8:.3f}% ({100 * (int8 - fp32):+.3f} points)")


def main(argv: list[str] | None = None) -> int:
    from models.registry import ASSETS_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="network name: assets/NAME.json and its ONNX file")
    parser.add_argument("--assets", type=Path, default=ASSETS_DIR, help="folder of the manifest (default assets/)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="NNCF presets to try (comma list)")
    parser.add_argument("--count", type=int, default=CALIBRATION_COUNT, help="calibration crops")
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO threads for the checks")
    parser.add_argument("--test-metrics", action="store_true",
                        help="also score FP32 and INT8 on HELEN test for the model card (after the choice)")
    args = parser.parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown or not presets:
        parser.error(f"unknown preset {unknown[0] if unknown else ''!r}; choose from {', '.join(PRESETS)}")
    manifest_path = args.assets / f"{args.model}.json"
    if not manifest_path.is_file():
        parser.error(f"no manifest {manifest_path}")
    quantize_network(manifest_path, presets, args.count, args.threads, args.test_metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

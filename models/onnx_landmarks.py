"""Our trained landmark networks (ONNX) as ``LandmarkModel``s, described by a manifest.

``OnnxLandmarkModel`` preprocesses a batch of aligned crops as the manifest says
(resize to the input size if needed, BGR->RGB if asked, ``(x - mean) / std``, NCHW
float32), runs them through ``engines.open_runner`` in one inference (chunked when the
graph has a fixed batch size), and decodes:

- ``heatmap``: (N, 68, H, W) heatmaps, decoded by ``models.heatmap_decode.decode_heatmaps``
  into heatmap pixel-centre coordinates and confidences (unless the graph decodes itself);
  with a second output of score maps (SGFA) each point's confidence is its score map's value
  at the decoded point, and with ``repair`` (default: the manifest's) the points whose
  confidence is under the manifest's ``visibility_threshold`` are replaced by the exemplar
  dictionary's reconstruction (``models.sgfa_repair``, in normalised crop units, after flip
  averaging);
- ``coords``: (N, 68, 2) coordinates and optionally (N, 68) confidences.

Every coordinate is first turned into normalised crop units u ((0, 0) = top-left corner
of the crop, (1, 1) = bottom-right): from a heatmap pixel centre h of a W-wide heatmap,
u = (h + 0.5) / W; then crop pixels x = u * size - 0.5, then the frame through
``crop.inverse``. Normalised units do not depend on the crop's pixel size, so a crop of
another size than the network's input is resized and still maps back exactly.

Precision: "auto" runs the back-end's default (on ONNX Runtime CPU the INT8 copy named by the
manifest's ``int8`` section when it met its accuracy bar, ``cpu_default``); "int8" runs the INT8
copy, "fp16" a TensorRT FP16 engine, "fp32" the FP32 file. A precision the back-end cannot run
(or a missing INT8 file) raises, or with ``strict_precision=False`` (the window) falls back to the
default with a message.

Flip test (manifest ``flip_test`` or the ``flip_test`` argument): the mirrored crops go
through the same inference; their points are mirrored back (u_x -> 1 - u_x, order
``landmarks68.MIRROR``) and averaged with the direct ones, confidences too. A network that learnt
the labels' horizontal offset from the feature (manifest ``label_offset_x``, image pixels) puts it
on the other side in the mirrored pass, so twice that offset (along the image's x axis in the
crop) is added back to the mirrored points before averaging.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from engines.base import Backend, ModelFileError, ProgressCallback
from models.align import transform_points
from models.landmark_model import LandmarkModel
from models.landmarks68 import MIRROR, NUM_LANDMARKS
from models.manifest import ModelManifest, check_template, load_manifest
from models.types import AlignedCrop, Landmarks


class OnnxLandmarkModel(LandmarkModel):
    """A manifest-described ONNX landmark network.

    ``manifest``: a ``ModelManifest`` or the path of its JSON file. ``backend``: passed to
    ``engines.open_runner`` ("auto", "tensorrt", "ort-cuda", "ort-cpu"). ``precision``: "auto",
    "fp32", "fp16" or "int8" (see the module docstring). ``flip_test``: None follows the manifest.
    ``infer`` returns the runner's output dictionary (the flipped crops' rows after the direct
    ones when flipping).
    """

    def __init__(
        self,
        manifest: ModelManifest | str | Path,
        backend: str = "auto",
        flip_test: bool | None = None,
        on_message: Callable[[str], None] | None = None,
        on_progress: ProgressCallback | None = None,
        precision: str | None = "auto",
        strict_precision: bool = True,
        repair: bool | None = None,
    ) -> None:
        self._runner = None
        self.manifest = manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        check_template(self.manifest)
        if not self.manifest.onnx_path.is_file():
            raise ModelFileError(f"ONNX file of model {self.manifest.name!r} not found: {self.manifest.onnx_path}")
        self.name = self.manifest.name
        self.input_size = self.manifest.input_size
        self.flip_test = self.manifest.flip_test if flip_test is None else bool(flip_test)
        self.min_confidence = self.manifest.min_confidence
        self._dictionary = self._load_dictionary(repair)
        self._runner = self._open(backend, precision, strict_precision, on_message, on_progress)
        try:
            self.backend = Backend(self._runner.backend).value
            self.precision = self._runner.precision
            self._input_dtype, self._fixed_batch = self._check_io()
        except BaseException:
            self.close()
            raise

    def _load_dictionary(self, repair: bool | None):
        """The shape dictionary when this model repairs (``repair``, else the manifest's default)."""
        m = self.manifest
        wanted = (m.repair is not None and m.repair.default) if repair is None else repair
        if not wanted:
            return None
        if m.repair is None:
            raise ModelFileError(f"model {self.name!r} has no shape dictionary to repair with (no 'repair' in {m.path})")
        from models.sgfa_repair import DictionaryError, ShapeDictionary

        try:
            return ShapeDictionary.load(m.dictionary_path)
        except DictionaryError as error:
            raise ModelFileError(str(error)) from None

    @property
    def repairs(self) -> bool:
        """Whether low-confidence points are replaced by the dictionary's reconstruction."""
        return self._dictionary is not None

    def _open(self, backend, precision, strict, on_message, on_progress):
        from engines.precision import Precision, PrecisionUnavailable, resolve_precision
        from engines.select import open_runner

        m = self.manifest
        wanted = resolve_precision(precision)
        int8_path = m.int8_path if m.int8_path is not None and m.int8_path.is_file() else None
        ov_int8 = m.installed_openvino_int8
        if wanted is Precision.INT8 and int8_path is None and ov_int8 is None:
            where = m.int8_path or f"no 'int8' section in {m.path}"
            problem = (f"model {self.name!r} has no INT8 file ({where}); make it with "
                       f"`python -m models.tools.quantize --model {self.name}`")
            if strict:
                raise ModelFileError(problem)
            _tell(on_message, f"{problem}. Running the default precision instead.")
            wanted = None
        options = dict(on_message=on_message, on_progress=on_progress, int8_path=int8_path,
                       int8_default=m.int8 is not None and m.int8.cpu_default, openvino_int8_path=ov_int8,
                       openvino_int8_default=m.openvino_int8 is not None and m.openvino_int8.cpu_default,
                       choose_cpu=True)
        try:
            return open_runner(m.onnx_path, backend=backend, precision=wanted or "auto", **options)
        except PrecisionUnavailable as error:
            if strict:
                raise
            _tell(on_message, f"{error}. Running {self.name} at the back-end's default precision instead.")
            return open_runner(m.onnx_path, backend=backend, precision="auto", **options)

    def _check_io(self) -> tuple[np.dtype, int | None]:
        """Check the graph against the manifest; return the input dtype and the fixed batch size (or None)."""
        m, path = self.manifest, self.manifest.onnx_path
        inputs = {spec.name: spec for spec in self._runner.inputs}
        if m.input_name not in inputs:
            raise ModelFileError(
                f"{path} has no input {m.input_name!r} (named in {m.path}); its inputs: {', '.join(inputs)}"
            )
        spec = inputs[m.input_name]
        wanted = (None, 3, m.input_size, m.input_size)
        static = [d if isinstance(d, (int, np.integer)) and d > 0 else None for d in spec.shape]
        if len(static) != 4 or any(s is not None and w is not None and s != w for s, w in zip(static, wanted)):
            raise ModelFileError(
                f"{path}: input {m.input_name!r} has shape {tuple(spec.shape)}, the manifest {m.path} says "
                f"(N, 3, {m.input_size}, {m.input_size})"
            )
        outputs = {o.name for o in self._runner.outputs}
        missing = [name for name in m.outputs if name not in outputs]
        if missing:
            raise ModelFileError(
                f"{path} has no output {missing[0]!r} (named in {m.path}); its outputs: {', '.join(sorted(outputs))}"
            )
        return np.dtype(spec.dtype), static[0]

    # --- preprocessing and inference ---------------------------------------------------------------

    def preprocess(self, crops: Sequence[AlignedCrop]) -> np.ndarray:
        """Crops -> (N, 3, S, S) network input (flipped copies appended when flip-testing)."""
        size = self.input_size
        images = []
        for crop in crops:
            image = crop.image
            if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1] or image.dtype != np.uint8:
                raise ValueError(
                    f"{self.name}: crops must be square (S, S, 3) uint8 BGR images, got {image.shape} {image.dtype}"
                )
            if image.shape[:2] != (size, size):
                shrink = image.shape[0] > size
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            images.append(image)
        batch = np.stack(images)
        if self.flip_test:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        return preprocess_images(batch, self.manifest, self._input_dtype)

    def infer(self, crops: Sequence[AlignedCrop]) -> dict[str, np.ndarray]:
        if self._runner is None:
            raise RuntimeError(f"{self.name} is closed")
        batch = self.preprocess(crops)
        # A graph with a fixed batch size takes exactly that many (the last chunk is padded);
        # a TensorRT engine takes at most its profile's maximum.
        step = self._fixed_batch or getattr(self._runner, "max_batch", None) or len(batch)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            count = len(chunk)
            if self._fixed_batch and count < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - count, axis=0)])
            out = self._runner.infer({self.manifest.input_name: chunk})
            parts.append({name: np.asarray(out[name])[:count] for name in self.manifest.outputs})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.manifest.outputs}

    # --- decoding -------------------------------------------------------------------------------

    def normalised_points(self, raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs -> (rows, 68, 2) points in normalised crop units and (rows, 68) confidences."""
        return normalised_points(raw, self.manifest)

    def decode(self, raw: dict[str, np.ndarray], crops: Sequence[AlignedCrop]) -> list[Landmarks]:
        points, confidence = normalised_points(raw, self.manifest)
        count = len(crops)
        if self.flip_test:
            mirrored = points[count:, MIRROR].copy()
            mirrored[..., 0] = 1.0 - mirrored[..., 0]
            if self.manifest.label_offset_x:  # the mirrored pass put the learnt offset on the other side
                offset = 2.0 * self.manifest.label_offset_x
                mirrored += np.stack([offset * crop.matrix[:, 0] / crop.size for crop in crops])[:, None, :]
            points = (points[:count] + mirrored) / 2
            confidence = (confidence[:count] + confidence[count:, MIRROR]) / 2
        confidence = np.clip(np.nan_to_num(confidence, nan=0.0), 0.0, 1.0)
        if self._dictionary is not None:
            from models.sgfa_repair import repair

            k, threshold = self.manifest.repair.k, self.manifest.visibility_threshold
            points = np.stack([repair(p, c, self._dictionary, k, threshold).points
                               for p, c in zip(points, confidence)])
        results = []
        for crop, pts, conf in zip(crops, points, confidence):
            conf = np.where(np.all(np.isfinite(pts), axis=1), conf, 0.0)
            frame_points = transform_points(pts * crop.size - 0.5, crop.inverse)
            visible = conf >= self.manifest.visibility_threshold if self.manifest.has_score_maps else None
            results.append(Landmarks(points=frame_points, confidence=conf, visible=visible))
        return results

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


def _tell(on_message: Callable[[str], None] | None, text: str) -> None:
    if on_message is not None:
        on_message(text)


def preprocess_images(batch: np.ndarray, manifest: ModelManifest, dtype: np.dtype = np.float32) -> np.ndarray:
    """(N, S, S, 3) uint8 BGR crops at the input size -> (N, 3, S, S) C-contiguous network input:
    channels in the manifest's order, ``(x - mean) / std``. One pass in OpenCV's blob maker: the
    numpy equivalent (transpose, cast, subtract, scale) costs about ten times more per frame."""
    std = np.asarray(manifest.std, dtype=np.float32)
    same_std = bool(np.all(std == std[0]))
    blob = cv2.dnn.blobFromImages(
        list(batch), 1.0 / float(std[0]) if same_std else 1.0, None, tuple(float(v) for v in manifest.mean),
        swapRB=manifest.colour_order == "rgb", crop=False, ddepth=cv2.CV_32F,
    )
    if not same_std:
        blob *= (1.0 / std).reshape(1, 3, 1, 1)
    return blob.astype(dtype, copy=False)


def normalised_points(raw: dict[str, np.ndarray], manifest: ModelManifest) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs -> (rows, 68, 2) points in normalised crop units and (rows, 68) confidences."""
    m = manifest
    if m.decodes_heatmaps:
        first = np.asarray(raw[m.outputs[0]], dtype=np.float32)  # DARK in float32: 3x faster than float64
        if first.ndim != 4 or first.shape[1] != NUM_LANDMARKS:
            raise ValueError(f"{m.name}: expected heatmaps (N, 68, H, W), got {first.shape}")
        from models.heatmap_decode import decode_heatmaps

        options = {} if m.decode.kernel is None else {"kernel": m.decode.kernel}
        coords, confidence = decode_heatmaps(first, method=m.decode.method, **options)
        if m.has_score_maps:
            from models.heatmap_decode import sample_maps

            scores = np.asarray(raw[m.outputs[1]], dtype=np.float32)
            if scores.shape != first.shape:
                raise ValueError(f"{m.name}: score maps {scores.shape} do not match the heatmaps {first.shape}")
            confidence = sample_maps(scores, coords)
        height, width = first.shape[2:]
        points = (np.asarray(coords, dtype=np.float64) + 0.5) / np.array([width, height])
        return points, np.asarray(confidence, dtype=np.float64)
    first = np.asarray(raw[m.outputs[0]], dtype=np.float64)
    if first.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"{m.name}: expected coordinates (N, 68, 2), got {first.shape}")
    if len(m.outputs) > 1:
        confidence = np.asarray(raw[m.outputs[1]], dtype=np.float64).reshape(len(first), NUM_LANDMARKS)
    else:
        confidence = np.ones(first.shape[:2])
    if m.coords_unit == "heatmap":
        first = (first + 0.5) / float(m.heatmap_size)
    return first, confidence

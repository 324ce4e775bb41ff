"""The manifest of a trained landmark network: ``assets/<name>.json`` beside ``<onnx file>``.

It says everything the app needs to run the ONNX file without torch: input tensor,
preprocessing, output kind and decoding, the alignment template it was trained with,
and the model-card text. Example::

    {
      "name": "mnv2_sdd",
      "onnx": "mnv2_sdd.onnx",
      "kind": "heatmap",
      "input": {"name": "input", "size": 192, "colour_order": "rgb",
                "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
      "outputs": ["heatmaps"],
      "heatmap_size": 48,
      "decode": {"method": "dark", "kernel": 9, "in_graph": false},
      "flip_test": false,
      "template_version": "tpl-1a2b3c4d",
      "card": {"training_data": "...", "recipe": "...", "metrics": "...", "training": "..."},
      "int8": {"onnx": "mnv2_sdd.int8.onnx", "calibration": "entropy", "cpu_default": true,
               "recipe": "...", "metrics": "..."}
    }

``kind``: ``heatmap`` (one output (N, 68, H, W), decoded here unless ``decode.in_graph``; or two,
``[heatmaps, scores]``: SGFA's score maps, each point's confidence the score map at its decoded
point) or ``coords`` (outputs (N, 68, 2) coordinates and optionally (N, 68) confidence).
``outputs`` lists the output tensor names: ``[heatmaps]``, or ``[coords]`` /
``[coords, confidence]`` for ``coords`` and in-graph decoding. ``coords_unit`` (optional)
says what the coordinates are: ``normalized`` (crop units, (0, 0) top-left corner, (1, 1)
bottom-right; default for ``coords``) or ``heatmap`` (heatmap pixel centres; default for
in-graph heatmap decoding). ``decode.kernel`` may be left out (the decoder's default).
``int8`` (optional) names the INT8 copy of the network made by ``models.tools.quantize`` (same inputs
and outputs), with its calibration recipe and measured figures; ``cpu_default`` says whether
it passed the accuracy bar and so is what ONNX Runtime CPU runs when no precision is asked for.
``openvino_int8`` (optional) names OpenVINO's INT8 copy (an IR ``.xml`` with its ``.bin``, made by
``models.tools.quantize_openvino`` with NNCF), likewise with ``cpu_default``, recipe and figures.
``repair`` (optional, networks with score maps) names the exemplar shape dictionary beside the
manifest (``models.sgfa_repair``), ``k`` (exemplars combined; absent: the dictionary's own) and
whether the repair runs by default; points whose confidence is under ``visibility_threshold``
(optional, default 0.5) are reported hidden and, with the repair, replaced.
``mean``/``std`` are in 0-255 units and in the network's
channel order. ``template_version`` must equal ``template_version()`` of this code: a
network trained on crops of another template would run but place every point wrongly.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import ModelFileError
from engines.files import atomic_write

KINDS = ("heatmap", "coords")
COLOUR_ORDERS = ("rgb", "bgr")
COORDS_UNITS = ("normalized", "heatmap")
DECODE_METHODS = ("dark", "argmax")  # models.heatmap_decode


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or invalid. The message names the file and the field."""


def template_version() -> str:
    """A short fingerprint of ``models.align.TEMPLATE``: changes whenever the template does."""
    from models.align import TEMPLATE

    digest = hashlib.sha1(np.round(np.asarray(TEMPLATE, dtype=np.float64), 5).tobytes()).hexdigest()
    return f"tpl-{digest[:8]}"


@dataclass(frozen=True)
class DecodeOptions:
    method: str = "dark"  # one of DECODE_METHODS
    kernel: int | None = None  # Gaussian kernel for DARK's smoothing (odd); None: the decoder's default
    in_graph: bool = False  # the graph decodes itself: outputs are coordinates and confidence


@dataclass(frozen=True)
class ModelCard:
    training_data: str = ""
    recipe: str = ""
    metrics: str = ""
    training: str = ""  # machine and training time of these weights


@dataclass(frozen=True)
class Int8Variant:
    """The INT8 copy of a network (``models.tools.quantize``): file beside the manifest, and its card."""

    onnx: str
    calibration: str = ""  # calibration method kept (minmax, entropy, percentile)
    cpu_default: bool = False  # within the accuracy bar: the default precision on ONNX Runtime CPU
    recipe: str = ""
    metrics: str = ""


@dataclass(frozen=True)
class OpenVinoInt8Variant:
    """OpenVINO's INT8 copy (``models.tools.quantize_openvino``): an IR beside the manifest, and its card."""

    xml: str  # the .bin has the same stem
    preset: str = ""  # NNCF preset kept (performance, mixed)
    cpu_default: bool = False  # within the accuracy bar: OpenVINO's default precision, and a candidate of auto
    recipe: str = ""
    metrics: str = ""


@dataclass(frozen=True)
class RepairOptions:
    """SGFA's dictionary repair of low-confidence points (``models.sgfa_repair``)."""

    dictionary: str  # file name beside the manifest
    k: int | None = None  # exemplars combined; None: the dictionary's own choice
    default: bool = True  # whether the model repairs unless told otherwise


@dataclass(frozen=True)
class ModelManifest:
    name: str
    onnx: str  # file name, relative to the manifest's folder
    kind: str
    input_name: str
    input_size: int
    colour_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    outputs: tuple[str, ...]
    template_version: str
    heatmap_size: int | None = None
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    coords_unit: str = "normalized"
    flip_test: bool = False
    # image px the network's points sit right of the feature (learnt from the labels' convention,
    # models/training/label_offset.py); the flip test adds it back to the mirrored pass
    label_offset_x: float = 0.0
    min_confidence: float = 0.0  # mean confidence under which this network's fit is not a face
    card: ModelCard = field(default_factory=ModelCard)
    int8: Int8Variant | None = None
    openvino_int8: OpenVinoInt8Variant | None = None
    repair: RepairOptions | None = None
    visibility_threshold: float = 0.5  # confidence under which a point is reported hidden
    path: Path | None = None  # the JSON file this came from

    @property
    def has_score_maps(self) -> bool:
        """Heatmaps decoded here with a second output of score maps (SGFA)."""
        return self.decodes_heatmaps and len(self.outputs) == 2

    @property
    def dictionary_path(self) -> Path | None:
        if self.repair is None:
            return None
        return self.onnx_path.with_name(self.repair.dictionary)

    @property
    def onnx_path(self) -> Path:
        base = self.path.parent if self.path is not None else Path(".")
        return base / self.onnx

    @property
    def int8_path(self) -> Path | None:
        """The INT8 file named by the manifest (it may be missing on disk), or None."""
        if self.int8 is None:
            return None
        return self.onnx_path.with_name(self.int8.onnx)

    def with_int8(self, variant: Int8Variant | None) -> "ModelManifest":
        return replace(self, int8=variant)

    @property
    def openvino_int8_path(self) -> Path | None:
        """OpenVINO's INT8 IR named by the manifest (it may be missing on disk), or None."""
        if self.openvino_int8 is None:
            return None
        return self.onnx_path.with_name(self.openvino_int8.xml)

    @property
    def installed_openvino_int8(self) -> Path | None:
        """OpenVINO's INT8 IR when both its .xml and .bin are on disk, else None."""
        xml = self.openvino_int8_path
        return xml if xml is not None and xml.is_file() and xml.with_suffix(".bin").is_file() else None

    def with_openvino_int8(self, variant: OpenVinoInt8Variant | None) -> "ModelManifest":
        return replace(self, openvino_int8=variant)

    @property
    def decodes_heatmaps(self) -> bool:
        """Whether this code decodes heatmaps (heatmap kind, not decoded in the graph)."""
        return self.kind == "heatmap" and not self.decode.in_graph

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``load_manifest`` reads back (for the exporter)."""
        data: dict[str, Any] = {
            "name": self.name,
            "onnx": self.onnx,
            "kind": self.kind,
            "input": {
                "name": self.input_name,
                "size": self.input_size,
                "colour_order": self.colour_order,
                "mean": list(self.mean),
                "std": list(self.std),
            },
            "outputs": list(self.outputs),
            "decode": {"method": self.decode.method, "in_graph": self.decode.in_graph},
            "coords_unit": self.coords_unit,
            "flip_test": self.flip_test,
            "label_offset_x": self.label_offset_x,
            "min_confidence": self.min_confidence,
            "template_version": self.template_version,
            "card": {
                "training_data": self.card.training_data,
                "recipe": self.card.recipe,
                "metrics": self.card.metrics,
                "training": self.card.training,
            },
        }
        if self.int8 is not None:
            data["int8"] = asdict(self.int8)
        if self.openvino_int8 is not None:
            data["openvino_int8"] = asdict(self.openvino_int8)
        if self.repair is not None:
            data["repair"] = {"dictionary": self.repair.dictionary, "default": self.repair.default}
            if self.repair.k is not None:
                data["repair"]["k"] = self.repair.k
        if self.has_score_maps:
            data["visibility_threshold"] = self.visibility_threshold
        if self.decode.kernel is not None:
            data["decode"]["kernel"] = self.decode.kernel
        if self.heatmap_size is not None:
            data["heatmap_size"] = self.heatmap_size
        return data


def write_manifest(manifest: ModelManifest, path: str | Path) -> Path:
    return atomic_write(path, json.dumps(manifest.to_json(), indent=2) + "\n")


class _Reader:
    """Typed field access that names the file and the field in every error."""

    def __init__(self, path: Path, data: Any, prefix: str = ""):
        if not isinstance(data, dict):
            where = f"field {prefix.rstrip('.')!r}" if prefix else "the top level"
            raise ManifestError(f"{path}: {where} must be a JSON object")
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.path}: field {self.prefix + key!r} {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., choices: tuple = ()) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"must be {_kind_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"must be {_kind_names(kinds)}, got {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if isinstance(value, str) and not value.strip() and default is ...:
            raise self.fail(key, "is empty")
        return value

    def positive_int(self, key: str, default: Any = ...) -> Any:
        value = self.get(key, int, default)
        if value is not None and value <= 0:
            raise self.fail(key, f"must be a positive integer, got {value}")
        return value

    def triple(self, key: str, positive: bool = False) -> tuple[float, float, float]:
        value = self.get(key, list)
        if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.fail(key, f"must be a list of three numbers, got {value!r}")
        if positive and min(value) <= 0:
            raise self.fail(key, f"must be positive, got {value!r}")
        return tuple(float(v) for v in value)

    def child(self, key: str, required: bool = True) -> "_Reader":
        if key not in self.data and not required:
            return _Reader(self.path, {}, self.prefix + key + ".")
        return _Reader(self.path, self.get(key, dict), self.prefix + key + ".")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "an object"
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_manifest(data: Any, path: str | Path) -> ModelManifest:
    """Validate a decoded JSON object; ``path`` is only used in messages and for ``onnx_path``."""
    path = Path(path)
    top = _Reader(path, data)
    inp = top.child("input")
    dec = top.child("decode", required=False)
    card = top.child("card", required=False)
    kind = top.get("kind", str, choices=KINDS)
    in_graph = dec.get("in_graph", bool, False)
    outputs = top.get("outputs", list)
    if not outputs or not all(isinstance(o, str) and o for o in outputs):
        raise top.fail("outputs", f"must be a non-empty list of output tensor names, got {outputs!r}")
    if kind == "heatmap" and not in_graph and len(outputs) not in (1, 2):
        raise top.fail("outputs", f"must name the heatmap tensor (and optionally the score maps), got {outputs!r}")
    if (kind == "coords" or in_graph) and len(outputs) > 2:
        raise top.fail("outputs", f"must be [coords] or [coords, confidence], got {outputs!r}")
    heatmap_size = top.positive_int("heatmap_size", None)
    if kind == "heatmap" and heatmap_size is None:
        raise top.fail("heatmap_size", "is missing (needed for the heatmap kind)")
    kernel = dec.positive_int("kernel", None)
    if kernel is not None and kernel % 2 == 0:
        raise dec.fail("kernel", f"must be odd, got {kernel}")
    default_unit = "heatmap" if kind == "heatmap" else "normalized"
    coords_unit = top.get("coords_unit", str, default_unit, choices=COORDS_UNITS)
    if coords_unit == "heatmap" and heatmap_size is None:
        raise top.fail("heatmap_size", "is missing (needed for coords_unit 'heatmap')")
    onnx = top.get("onnx", str)
    if Path(onnx).name != onnx:
        raise top.fail("onnx", f"must be a file name beside the manifest, got {onnx!r}")
    int8 = None
    if "int8" in top.data:
        section = top.child("int8")
        int8_onnx = section.get("onnx", str)
        if Path(int8_onnx).name != int8_onnx or int8_onnx == onnx:
            raise section.fail("onnx", f"must be another file name beside the manifest, got {int8_onnx!r}")
        int8 = Int8Variant(
            onnx=int8_onnx,
            calibration=section.get("calibration", str, ""),
            cpu_default=section.get("cpu_default", bool, False),
            recipe=section.get("recipe", str, ""),
            metrics=section.get("metrics", str, ""),
        )
    openvino_int8 = None
    if "openvino_int8" in top.data:
        section = top.child("openvino_int8")
        xml = section.get("xml", str)
        if Path(xml).name != xml or not xml.endswith(".xml"):
            raise section.fail("xml", f"must be an .xml file name beside the manifest, got {xml!r}")
        openvino_int8 = OpenVinoInt8Variant(
            xml=xml,
            preset=section.get("preset", str, ""),
            cpu_default=section.get("cpu_default", bool, False),
            recipe=section.get("recipe", str, ""),
            metrics=section.get("metrics", str, ""),
        )
    repair = None
    if "repair" in top.data:
        section = top.child("repair")
        if kind != "heatmap" or in_graph or len(outputs) != 2:
            raise section.fail("dictionary", "needs a heatmap network with score maps (outputs [heatmaps, scores])")
        dictionary = section.get("dictionary", str)
        if Path(dictionary).name != dictionary:
            raise section.fail("dictionary", f"must be a file name beside the manifest, got {dictionary!r}")
        repair = RepairOptions(dictionary, section.positive_int("k", None), section.get("default", bool, True))
    return ModelManifest(
        name=top.get("name", str),
        onnx=onnx,
        kind=kind,
        input_name=inp.get("name", str),
        input_size=inp.positive_int("size"),
        colour_order=inp.get("colour_order", str, choices=COLOUR_ORDERS),
        mean=inp.triple("mean"),
        std=inp.triple("std", positive=True),
        outputs=tuple(outputs),
        template_version=top.get("template_version", str),
        heatmap_size=heatmap_size,
        decode=DecodeOptions(
            method=dec.get("method", str, DecodeOptions.method, choices=DECODE_METHODS),
            kernel=kernel,
            in_graph=in_graph,
        ),
        coords_unit=coords_unit,
        flip_test=top.get("flip_test", bool, False),
        label_offset_x=float(top.get("label_offset_x", (int, float), 0.0)),
        min_confidence=_unit_interval(top, "min_confidence"),
        card=ModelCard(
            training_data=card.get("training_data", str, ""),
            recipe=card.get("recipe", str, ""),
            metrics=card.get("metrics", str, ""),
            training=card.get("training", str, ""),
        ),
        int8=int8,
        openvino_int8=openvino_int8,
        repair=repair,
        visibility_threshold=_unit_interval(top, "visibility_threshold", 0.5),
        path=path,
    )


def _unit_interval(reader: "_Reader", key: str, default: float = 0.0) -> float:
    value = float(reader.get(key, (int, float), default))
    if not 0.0 <= value <= 1.0:
        raise reader.fail(key, f"must be between 0 and 1, got {value}")
    return value


def load_manifest(path: str | Path, check_onnx: bool = True) -> ModelManifest:
    """Read and validate ``path``.

    Raises ``ManifestError`` (file and field named) for a missing, unreadable or invalid
    manifest, and ``engines.base.ModelFileError`` naming the ONNX file when ``check_onnx``
    and it is not beside the manifest.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"model manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read model manifest {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    manifest = parse_manifest(data, path)
    if check_onnx and not manifest.onnx_path.is_file():
        raise ModelFileError(f"ONNX file of model {manifest.name!r} not found: {manifest.onnx_path} (named in {path})")
    if check_onnx and manifest.dictionary_path is not None and not manifest.dictionary_path.is_file():
        raise ModelFileError(f"shape dictionary of model {manifest.name!r} not found: {manifest.dictionary_path} "
                             f"(named in {path}; made by `python -m models.sgfa_dictionary --build`)")
    return manifest


def check_template(manifest: ModelManifest) -> None:
    """Raise ``ManifestError`` if the network was trained on another alignment template."""
    current = template_version()
    if manifest.template_version != current:
        raise ManifestError(
            f"{manifest.path}: field 'template_version' is {manifest.template_version!r} but this code aligns faces "
            f"with template {current!r}: the network was trained on differently aligned crops; re-export it"
        )

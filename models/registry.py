"""The landmark models the app can run, by name.

- ``mediapipe68``: MediaPipe Face Mesh mapped to 68 points (``models.mediapipe68``),
  available when mediapipe imports.
- ``dlib68``: dlib's 68-point shape predictor, the peer we compare with, available when
  the ``peers`` extra (dlib, face_recognition_models) is installed.
- Our networks (``mnv2_sdd``, ``r18_ffld``, or any other ``assets/<name>.json``): available
  when the manifest and the ONNX file it names are in ``assets/``.

Nothing here imports torch: the networks run from their ONNX files.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

from engines.base import ModelFileError, ProgressCallback
from models.datasets import PROJECT_ROOT
from models.landmark_model import LandmarkModel
from models.manifest import ManifestError, load_manifest

ASSETS_DIR = PROJECT_ROOT / "assets"
MEDIAPIPE68 = "mediapipe68"
DLIB68 = "dlib68"
# Trained here; shipped once exported into assets/. Most accurate first (HELEN test, docs/RESULTS.md):
# the first installed one is the default model.
NETWORK_NAMES = ("r18_ffld", "mnv2_sdd")
FLIP_SUFFIX = "+flip"  # "mnv2_sdd+flip": the network with flip test-time averaging switched on
PRECISION_MARK = "@"  # "r18_ffld@int8", "r18_ffld+flip@int8": the network at that precision
NO_REPAIR_SUFFIX = "+norepair"  # "sgfa+norepair": SGFA without its dictionary repair (an ablation)


def split_model_name(name: str) -> tuple[str, bool, str | None]:
    """``NAME[+flip][@PRECISION]`` -> (NAME, flip, precision or None). An unknown precision raises
    ``ValueError``; a name without ``@`` leaves the precision to the caller's default."""
    precision = None
    if PRECISION_MARK in name:
        from engines.precision import resolve_precision

        name, _, text = name.rpartition(PRECISION_MARK)
        precision = text.lower()
        resolve_precision(precision)
    flip = name.endswith(FLIP_SUFFIX)
    return (name[: -len(FLIP_SUFFIX)] if flip else name), flip, precision


class UnknownModelError(ValueError):
    """A landmark model name the registry does not know. The message lists the available ones."""


@lru_cache(maxsize=1)
def _mediapipe_available() -> bool:
    from models.mediapipe68 import mediapipe_available

    return mediapipe_available()


@lru_cache(maxsize=1)
def _dlib_available() -> bool:
    import importlib.util

    from models.dlib68 import default_weights

    if importlib.util.find_spec("dlib") is None:
        return False
    try:
        return default_weights().is_file()
    except ModelFileError:
        return False


def _manifest_paths(assets_dir: Path) -> dict[str, Path]:
    if not assets_dir.is_dir():
        return {}
    return {path.stem: path for path in sorted(assets_dir.glob("*.json"))}


def _installed(path: Path) -> bool:
    try:
        load_manifest(path)
    except (ManifestError, ModelFileError):
        return False
    return True


def _installed_networks(assets_dir: str | Path | None) -> list[str]:
    """Networks whose manifest and ONNX file are in ``assets_dir``: ``NETWORK_NAMES`` order first, then by name."""
    assets = Path(assets_dir) if assets_dir is not None else ASSETS_DIR
    rank = {name: i for i, name in enumerate(NETWORK_NAMES)}
    names = [name for name, path in _manifest_paths(assets).items() if _installed(path)]
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def available_models(assets_dir: str | Path | None = None) -> list[str]:
    """Names ``load_landmark_model`` can load here: our networks whose manifest and ONNX file
    are in ``assets_dir`` (by name; a network that repairs hidden points also as
    ``NAME+norepair``), then mediapipe68 and dlib68 where their packages import."""
    assets = Path(assets_dir) if assets_dir is not None else ASSETS_DIR
    names = []
    for name in _installed_networks(assets):
        names.append(name)
        if load_manifest(assets / f"{name}.json").repair is not None:
            names.append(name + NO_REPAIR_SUFFIX)
    names += [MEDIAPIPE68] if _mediapipe_available() else []
    return names + ([DLIB68] if _dlib_available() else [])


def default_model(assets_dir: str | Path | None = None) -> str:
    """The model used when none is named: the first installed network of ``NETWORK_NAMES``, else
    mediapipe68 (without importing mediapipe: the CLI asks this while building its parser)."""
    networks = _installed_networks(assets_dir)
    return networks[0] if networks and networks[0] in NETWORK_NAMES else MEDIAPIPE68


def load_landmark_model(
    name: str,
    backend: str = "auto",
    on_message: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
    assets_dir: str | Path | None = None,
    flip_test: bool | None = None,
    precision: str | None = "auto",
    strict_precision: bool = False,
) -> LandmarkModel:
    """Load a landmark model by name.

    ``backend`` selects the engine of ONNX networks (``engines.open_runner``); mediapipe68
    always runs on MediaPipe's own CPU engine and says so through ``on_message`` when
    another backend was asked for. ``flip_test``: None follows the manifest; a name ending in
    ``+flip`` (``mnv2_sdd+flip``) switches it on and keeps the suffix in the model's name, so
    that reports tell the two apart. A name ending in ``.json`` is the path of a manifest
    outside the assets (an export to compare before shipping it). ``precision`` ("auto", fp32,
    fp16, int8; a name's ``@PRECISION`` suffix overrides it) picks the file and engine precision of our networks
    (``models.onnx_landmarks``); with ``strict_precision`` one that the back-end cannot run
    raises ``engines.precision.PrecisionUnavailable`` (the command line), else the model falls
    back to the back-end's default precision with a message (the window).

    Raises ``UnknownModelError`` (listing the available names) for an unknown name,
    ``ModelFileError`` when a known network is not installed or its ONNX file is missing,
    ``ManifestError`` for an invalid manifest, ``engines.base.BackendUnavailable`` when the
    runtime is missing.
    """
    assets = Path(assets_dir) if assets_dir is not None else ASSETS_DIR
    full_name = name
    repair = False if NO_REPAIR_SUFFIX in name else None
    name, flip, named_precision = split_model_name(name.replace(NO_REPAIR_SUFFIX, ""))
    precision = named_precision or precision or "auto"
    if name in (MEDIAPIPE68, DLIB68) and not flip:
        if precision != "auto" and on_message is not None:
            on_message(f"{name} runs its own float model; precision {precision!r} does not apply")
        if name == DLIB68:
            from models.dlib68 import Dlib68Model

            return Dlib68Model()
        from models.mediapipe68 import MediaPipe68

        if backend not in ("auto", None, "mediapipe") and on_message is not None:
            on_message(f"{MEDIAPIPE68} runs on MediaPipe's own CPU engine; backend {backend!r} does not apply")
        return MediaPipe68()
    by_path = name.endswith(".json")  # a manifest outside the assets (a candidate export): loaded as it is
    if by_path and not Path(name).is_file():
        raise ModelFileError(f"no model manifest at {name}")
    manifests = {name: Path(name)} if by_path else _manifest_paths(assets)
    if name in manifests:
        from models.onnx_landmarks import OnnxLandmarkModel

        manifest = load_manifest(manifests[name])
        if manifest.name != name and not by_path:
            raise ManifestError(
                f"{manifest.path}: field 'name' is {manifest.name!r}, expected {name!r} (the file name)"
            )
        model = OnnxLandmarkModel(
            manifest, backend=backend, flip_test=True if flip else flip_test, on_message=on_message,
            on_progress=on_progress, precision=precision, strict_precision=strict_precision, repair=repair,
        )
        model.name = full_name
        return model
    available = ", ".join(available_models(assets)) or "none"
    name = full_name
    if name in NETWORK_NAMES:
        raise ModelFileError(
            f"landmark model {name!r} is not installed: {assets / (name + '.json')} not found "
            f"(export the trained network into {assets}); available: {available}"
        )
    raise UnknownModelError(f"unknown landmark model {name!r}; available: {available}")


def precision_files(name: str, assets_dir: str | Path | None = None) -> dict[str, str | None]:
    """For each precision (``engines.precision.Precision`` value): None when model ``name`` has
    the file it needs here, else why not (for the window's tooltips). mediapipe68 and dlib68 run
    their own float models and offer none."""
    from engines.precision import Precision

    base, _, _ = split_model_name(name)
    path = _manifest_paths(Path(assets_dir) if assets_dir is not None else ASSETS_DIR).get(base)
    if path is None:
        return {p.value: f"{base} runs its own float model" for p in Precision}
    try:
        manifest = load_manifest(path)
    except (ManifestError, ModelFileError) as error:
        return {p.value: str(error) for p in Precision}
    int8 = None
    has_ort = manifest.int8_path is not None and manifest.int8_path.is_file()
    if not (has_ort or manifest.installed_openvino_int8 is not None):
        int8 = f"{base} has no INT8 file here (make it with `python -m models.tools.quantize --model {base}`)"
    return {Precision.FP32.value: None, Precision.FP16.value: None, Precision.INT8.value: int8}

"""MediaPipe Face Mesh as a 68-point ``LandmarkModel`` (``mediapipe68``).

Face Mesh (mediapipe 0.10.21, legacy ``mediapipe.solutions.face_mesh`` with its bundled
models) runs on our aligned crops and its 468 mesh vertices are turned into the iBUG
68-point layout by ``models.mediapipe68_map.MESH_TO_68``: each iBUG point is a fixed
convex combination of a few mesh vertices. The map is derived, not guessed
(``python -m models.mediapipe68 --fit``): on the training images only (``FIT_SETS``),
each face is aligned from its ground-truth five points, Face Mesh runs on the crop, and
for every iBUG point the ``FIT_CANDIDATES`` vertices with the lowest mean
inter-ocular-normalised distance to the ground truth get convex weights by non-negative
least squares (weights under ``FIT_MIN_WEIGHT`` dropped). ``--eval`` measures NME on
``300w/helen_test`` the same way.

Settings, chosen by measurement on the training images (one-vertex map fitted on a
random half, NME_io on the other half): ``static_image_mode=True`` (Face Mesh's own face
detector runs on every crop: 0.0468; tracking mode 0.0481 is faster but carries the
previous crop's face region into the next, which belongs to another face when several
are tracked), ``refine_landmarks=True`` (the attention model refines eyes and lips;
without it 0.0497), crop size 256 (192: 0.0500, 320: 0.0495, both without refinement).
The map is fitted for exactly these settings.

Confidence: Face Mesh has no per-point confidence. A crop where a face is found gets
confidence 1.0 for every point. A crop where Face Mesh finds no face gets confidence 0.0
for every point and, as points, the template mean shape (``MEAN_SHAPE``, the mean
aligned training shape) mapped to the frame: finite, in the right place, and below any
tracker's confidence threshold, so the track is dropped.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from engines.base import BackendUnavailable
from models.align import align_from_landmarks, transform_points
from models.landmark_model import LandmarkModel
from models.landmarks68 import NUM_LANDMARKS
from models.metrics import nme_per_face, normalising_distances
from models.mediapipe68_map import MEAN_SHAPE, MESH_TO_68
from models.native_logs import quiet_native_logs
from models.types import AlignedCrop, Landmarks

INPUT_SIZE = 256
MESH_VERTICES = 468  # the face mesh proper; refine_landmarks adds 10 iris points after these
STATIC_IMAGE_MODE = True
REFINE_LANDMARKS = True
MIN_DETECTION_CONFIDENCE = 0.5

FIT_SETS = ("300w/afw", "300w/helen_train")
EVAL_SET = "300w/helen_test"
FIT_CANDIDATES = 8
FIT_MIN_WEIGHT = 0.01
MAP_MODULE = Path(__file__).with_name("mediapipe68_map.py")


def _face_mesh_module():
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as exc:
        raise BackendUnavailable(
            f"mediapipe68 needs mediapipe 0.10.21, which the core install leaves out: install the 'peers' "
            f"extra (pip install -e '.[peers]'): {exc}"
        ) from exc
    return face_mesh


def mediapipe_available() -> bool:
    """Whether mediapipe and its Face Mesh solution import here."""
    try:
        _face_mesh_module()
    except BackendUnavailable:
        return False
    return True


def table_weights(table) -> np.ndarray:
    """A map table (rows of (vertex indices, weights)) as a dense (68, 468) matrix."""
    weights = np.zeros((NUM_LANDMARKS, MESH_VERTICES))
    for row, (indices, values) in enumerate(table):
        weights[row, list(indices)] = values
    return weights


_MAP_WEIGHTS = table_weights(MESH_TO_68)


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """Mesh vertices (..., >=468, 2) -> iBUG points (..., 68, 2) through ``MESH_TO_68``."""
    mesh = np.asarray(mesh, dtype=np.float64)[..., :MESH_VERTICES, :]
    return np.einsum("kv,...vd->...kd", _MAP_WEIGHTS, mesh)


def no_face_landmarks(crop: AlignedCrop) -> Landmarks:
    """The "no face" result: the template mean shape in the frame, confidence 0 everywhere."""
    points = transform_points(np.asarray(MEAN_SHAPE) * crop.size - 0.5, crop.inverse)
    return Landmarks(points=points, confidence=np.zeros(NUM_LANDMARKS))


class MediaPipe68(LandmarkModel):
    """Face Mesh on aligned crops, mapped to 68 iBUG points (see the module docstring).

    ``infer`` returns the mesh of each crop in normalised crop units, shape (N, 478, 2)
    ((0, 0) = top-left corner, (1, 1) = bottom-right), NaN for a crop without a face.
    Crops of any size work; the map was fitted on ``INPUT_SIZE`` crops.
    """

    name = "mediapipe68"
    input_size = INPUT_SIZE
    backend = "mediapipe"

    def __init__(
        self,
        static_image_mode: bool = STATIC_IMAGE_MODE,
        min_detection_confidence: float = MIN_DETECTION_CONFIDENCE,
    ) -> None:
        face_mesh = _face_mesh_module()
        self._vertices = MESH_VERTICES + (10 if REFINE_LANDMARKS else 0)
        with quiet_native_logs():  # the graph starts (and logs) on its first frame: give it one here
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                max_num_faces=1,
                refine_landmarks=REFINE_LANDMARKS,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=0.5,
            )
            self._mesh.process(np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8))
        self._first_face_seen = False  # the graph logs once more when it first projects a face

    def _process(self, image_rgb: np.ndarray):
        if self._first_face_seen:
            return self._mesh.process(image_rgb)
        with quiet_native_logs():
            result = self._mesh.process(image_rgb)
        self._first_face_seen = bool(result.multi_face_landmarks)
        return result

    def infer(self, crops: Sequence[AlignedCrop]) -> np.ndarray:
        if self._mesh is None:
            raise RuntimeError("mediapipe68 is closed")
        out = np.full((len(crops), self._vertices, 2), np.nan)
        for i, crop in enumerate(crops):
            result = self._process(cv2.cvtColor(crop.image, cv2.COLOR_BGR2RGB))
            if result.multi_face_landmarks:
                landmarks = result.multi_face_landmarks[0].landmark
                out[i] = [(p.x, p.y) for p in landmarks]
        return out

    def infer_3d(self, crop: AlignedCrop) -> np.ndarray | None:
        """The mesh of one crop with depth, (478, 3) in normalised crop units (z on the scale of
        x, growing away from the camera), or None when Face Mesh finds no face."""
        if self._mesh is None:
            raise RuntimeError("mediapipe68 is closed")
        result = self._process(cv2.cvtColor(crop.image, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        return np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark])

    def decode(self, raw: np.ndarray, crops: Sequence[AlignedCrop]) -> list[Landmarks]:
        results = []
        for mesh, crop in zip(raw, crops):
            if not np.all(np.isfinite(mesh[:MESH_VERTICES])):
                results.append(no_face_landmarks(crop))
                continue
            points = transform_points(mesh_to_68(mesh * crop.size - 0.5), crop.inverse)
            results.append(Landmarks(points=points, confidence=np.ones(NUM_LANDMARKS)))
        return results

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


# --- fitting the map and measuring it (training / evaluation tools) -------------------------------


@dataclass
class MeshSamples:
    """Ground truth and Face Mesh output of aligned crops, both in crop pixels."""

    names: list[str]
    truth: np.ndarray  # (N, 68, 2)
    mesh: np.ndarray  # (N, 478, 2), NaN where no face was found

    @property
    def found(self) -> np.ndarray:
        return np.all(np.isfinite(self.mesh[:, :MESH_VERTICES]), axis=(1, 2))


def collect_samples(sets: Sequence[str], size: int = INPUT_SIZE, progress: bool = True) -> MeshSamples:
    """Align every annotated image of ``sets`` from its ground truth and run Face Mesh on it."""
    from tqdm import tqdm

    from models.datasets import data_root, list_annotated

    items = [item for name in sets for item in list_annotated(data_root() / name)]
    names, truth, mesh = [], [], []
    with MediaPipe68() as model:
        for item in tqdm(items, desc="face mesh", disable=not progress):
            image = cv2.imread(str(item.image_path))
            if image is None:
                raise OSError(f"cannot read image {item.image_path}")
            points = item.load_points()
            crop = align_from_landmarks(image, points, size)
            names.append(item.image_path.name)
            truth.append(transform_points(points, crop.matrix))
            mesh.append(model.infer([crop])[0] * size - 0.5)
    return MeshSamples(names, np.array(truth), np.array(mesh))


def fit_map(
    truth: np.ndarray, mesh: np.ndarray, candidates: int = FIT_CANDIDATES, min_weight: float = FIT_MIN_WEIGHT
) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
    """For each iBUG point, convex weights over its best ``candidates`` mesh vertices.

    Candidates: the vertices with the lowest mean inter-ocular-normalised distance to the
    point. Weights: non-negative least squares of the normalised residuals with a
    heavily weighted sum-to-one row, weights under ``min_weight`` dropped, renormalised,
    rounded to 4 decimals.
    """
    from scipy.optimize import nnls

    mesh = mesh[:, :MESH_VERTICES]
    scale = normalising_distances(truth, "io")[:, None, None]
    mesh_n, truth_n = mesh / scale, truth / scale
    table = []
    for point in range(NUM_LANDMARKS):
        cost = np.linalg.norm(mesh_n - truth_n[:, point : point + 1], axis=2).mean(axis=0)
        cand = np.argsort(cost, kind="stable")[:candidates]
        design = np.concatenate([mesh_n[:, cand, 0], mesh_n[:, cand, 1]]) / np.sqrt(2 * len(mesh))
        target = np.concatenate([truth_n[:, point, 0], truth_n[:, point, 1]]) / np.sqrt(2 * len(mesh))
        penalty = 100.0
        weights, _ = nnls(np.vstack([design, penalty * np.ones(len(cand))]), np.append(target, penalty))
        weights /= weights.sum()
        keep = weights >= min_weight
        kept, values = cand[keep], weights[keep] / weights[keep].sum()
        order = np.argsort(-values, kind="stable")
        values = np.round(values[order], 4)
        values[0] += 1.0 - values.sum()  # exact sum of one after rounding
        table.append((tuple(int(v) for v in kept[order]), tuple(round(float(v), 4) for v in values)))
    return table


def mean_shape(truth: np.ndarray, size: int) -> np.ndarray:
    """Mean aligned shape in crop units ((0, 0) top-left corner, (1, 1) bottom-right)."""
    return (truth.mean(axis=0) + 0.5) / size


def apply_map(mesh: np.ndarray, table) -> np.ndarray:
    return np.einsum("kv,nvd->nkd", table_weights(table), mesh[:, :MESH_VERTICES])


def render_map_module(table, shape: np.ndarray, summary: str) -> str:
    rows = "\n".join(f"    ({idx!r}, {w!r}),  # {i}" for i, (idx, w) in enumerate(table))
    shape_rows = "\n".join(f"    ({x:.5f}, {y:.5f}),  # {i}" for i, (x, y) in enumerate(shape))
    return f'''"""The Face Mesh -> iBUG 68-point map of ``models.mediapipe68`` (generated: do not edit).

Made by ``python -m models.mediapipe68 --fit``: on {", ".join(FIT_SETS)} (training images
only), every face aligned from its ground-truth five points into a {INPUT_SIZE}-pixel crop, Face
Mesh run on it (static_image_mode={STATIC_IMAGE_MODE}, refine_landmarks={REFINE_LANDMARKS}); for each iBUG
point the {FIT_CANDIDATES} mesh vertices with the lowest mean inter-ocular-normalised distance to it
got convex weights by non-negative least squares, weights under {FIT_MIN_WEIGHT} dropped.
{summary}
"""

# Row i: (mesh vertex indices, weights summing to 1) for iBUG point i (0-based).
MESH_TO_68 = (
{rows}
)

# Mean ground-truth shape of the aligned training faces, in crop units ((0, 0) = top-left
# corner of the crop, (1, 1) = bottom-right): the points of a "no face" result.
MEAN_SHAPE = (
{shape_rows}
)
'''


def run_fit(progress: bool = True) -> str:
    samples = collect_samples(FIT_SETS, progress=progress)
    found = samples.found
    truth, mesh = samples.truth[found], samples.mesh[found]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(truth))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    held_out = fit_map(truth[half_a], mesh[half_a])
    single = fit_map(truth[half_a], mesh[half_a], candidates=1)
    nme_single = nme_per_face(apply_map(mesh[half_b], single), truth[half_b]).mean()
    nme_held = nme_per_face(apply_map(mesh[half_b], held_out), truth[half_b]).mean()
    table = fit_map(truth, mesh)
    nme_fit = nme_per_face(apply_map(mesh, table), truth).mean()
    summary = (
        f"Face Mesh found {found.sum()} of {len(found)} training faces. Mean NME (inter-ocular) on the fitting\n"
        f"images: {nme_fit:.4f}. Fitted on a random half and measured on the other: {nme_held:.4f}\n"
        f"(one vertex per point instead: {nme_single:.4f})."
    )
    MAP_MODULE.write_text(render_map_module(table, mean_shape(truth, INPUT_SIZE), summary))
    return f"wrote {MAP_MODULE}\n{summary}"


def evaluate(
    dataset: str = EVAL_SET, size: int = INPUT_SIZE, static_image_mode: bool = STATIC_IMAGE_MODE, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image NME_io of ``MediaPipe68.predict`` (frame coordinates) on ``dataset``, faces
    aligned from their ground-truth five points (gt5), and whether Face Mesh found each face.

    A face Face Mesh misses counts with its "no face" points (the mean shape).
    """
    from tqdm import tqdm

    from models.datasets import list_annotated, resolve_dataset

    errors, found = [], []
    with MediaPipe68(static_image_mode=static_image_mode) as model:
        for item in tqdm(list_annotated(resolve_dataset(dataset)), desc=dataset, disable=not progress):
            image = cv2.imread(str(item.image_path))
            if image is None:
                raise OSError(f"cannot read image {item.image_path}")
            truth = item.load_points()
            (landmarks,) = model.predict([align_from_landmarks(image, truth, size)])
            errors.append(nme_per_face(landmarks.points[None], truth[None])[0])
            found.append(landmarks.mean_confidence > 0)
    return np.array(errors), np.array(found)


def run_eval(dataset: str = EVAL_SET, static_image_mode: bool = STATIC_IMAGE_MODE, progress: bool = True) -> str:
    nme, found = evaluate(dataset, static_image_mode=static_image_mode, progress=progress)
    return (
        f"mediapipe68 on {dataset} (gt5 alignment, crop {INPUT_SIZE}, static_image_mode={static_image_mode}): "
        f"{len(nme)} faces, Face Mesh found {found.sum()}; "
        f"NME_io mean {nme.mean():.4f}, median {np.median(nme):.4f}, "
        f"failure rate (NME_io > 0.08) {np.mean(nme > 0.08):.4f}"
    )


def run_bench(
    dataset: str = EVAL_SET, count: int = 100, repeats: int = 3, static_image_mode: bool = STATIC_IMAGE_MODE
) -> str:
    """Wall and CPU milliseconds per crop of ``predict`` on ``count`` real crops, one crop per call.

    Each figure is the median over ``repeats`` passes; CPU time counts all threads of the process.
    """
    from models.datasets import list_annotated, resolve_dataset

    crops = []
    for item in list_annotated(resolve_dataset(dataset))[:count]:
        crops.append(align_from_landmarks(cv2.imread(str(item.image_path)), item.load_points(), INPUT_SIZE))
    with MediaPipe68(static_image_mode=static_image_mode) as model:
        model.predict(crops[:5])  # warm-up
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            for crop in crops:
                model.predict([crop])
            wall.append((time.perf_counter() - start) * 1000 / len(crops))
            cpu.append((time.process_time() - start_cpu) * 1000 / len(crops))
    return (
        f"mediapipe68 predict, {len(crops)} crops of {INPUT_SIZE} px from {dataset}, "
        f"static_image_mode={static_image_mode}: "
        f"{np.median(wall):.2f} ms/crop wall, {np.median(cpu):.2f} ms/crop CPU "
        f"(wall per pass: {', '.join(f'{p:.2f}' for p in wall)})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.mediapipe68", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fit", action="store_true", help=f"refit the map on {', '.join(FIT_SETS)}; rewrites {MAP_MODULE.name}"
    )
    parser.add_argument(
        "--eval", nargs="?", const=EVAL_SET, metavar="DATASET", help=f"NME (gt5) on DATASET (default {EVAL_SET})"
    )
    parser.add_argument("--bench", action="store_true", help="milliseconds per crop on this machine")
    parser.add_argument(
        "--tracking-mode", action="store_true", help="--eval/--bench with static_image_mode=False (Face Mesh tracking)"
    )
    args = parser.parse_args(argv)
    if not (args.fit or args.eval or args.bench):
        parser.error("choose --fit, --eval or --bench")
    if args.eval in FIT_SETS:
        print(f"note: {args.eval} is one of the sets the map was fitted on", file=sys.stderr)
    if args.fit:
        print(run_fit())
    if args.eval:
        print(run_eval(args.eval, static_image_mode=not args.tracking_mode))
    if args.bench:
        print(run_bench(static_image_mode=not args.tracking_mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())

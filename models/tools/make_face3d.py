"""Derive the 3D 68-point mean face (``models/face3d_68.json``) that head pose is solved against.

``python -m models.tools.make_face3d`` rewrites the asset. Source: the Face Mesh model inside
the mediapipe 0.10.21 wheel (``face_landmark_with_attention.tflite``, run through the
legacy ``solutions.face_mesh`` exactly as ``models.mediapipe68`` runs it). The wheel does
not ship MediaPipe's canonical face model (``canonical_face_model.obj`` /
``geometry_pipeline_metadata*.binarypb`` are absent from it), so the mean face is built
from what the wheel does give: Face Mesh's 3D vertices (x, y in the crop, z = depth on
the same scale as x) on the training faces.

Steps: every face of ``FIT_SETS`` (training images only) is aligned from its ground-truth
points into a 256-pixel crop; Face Mesh's 468 vertices (x, y, z) go through the documented
468 -> 68 map (``models.mediapipe68_map.MESH_TO_68``, the same convex weights in 3D); the
68-point shapes get a generalised Procrustes mean (rotation, translation, scale). The mean
is then put in the head frame: x from the mirror pairs (image right of a frontal face),
y down (the mean face's own up-down, i.e. the average head pitch of the training photos
is pitch 0), z = x cross y (into the head, away from the camera); mirror-averaged so it
is exactly symmetric; origin at the nose tip (point 30); scaled so the outer eye corners
(36, 45) are ``EYE_CORNER_DISTANCE_MM`` apart (a typical adult ex-ex width; anthropometric
tables give about 87-92 mm), so translations come out in millimetres, approximately.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from models.face3d import FACE3D_PATH
from models.landmarks68 import MIRROR, NOSE_TIP, NUM_LANDMARKS, OUTER_EYE_CORNERS

EYE_CORNER_DISTANCE_MM = 90.0
CROP_SIZE = 256


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotation R (3, 3), det +1, minimising |source @ R.T - target| for centred point sets."""
    u, _, vt = np.linalg.svd(target.T @ source)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _normalise(shape: np.ndarray) -> np.ndarray:
    centred = shape - shape.mean(axis=0)
    return centred / np.linalg.norm(centred)


def procrustes_mean_3d(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean of (N, K, 3) shapes; starts from the unrotated mean so the
    result keeps the average orientation of the inputs (the camera's view of them)."""
    normalised = np.stack([_normalise(s) for s in shapes])
    mean = _normalise(normalised.mean(axis=0))
    for _ in range(iterations):
        aligned = np.stack([s @ _kabsch(s, mean).T for s in normalised])
        scales = np.einsum("nkd,kd->n", aligned, mean)  # optimal scale of each aligned shape
        mean = _normalise((aligned * scales[:, None, None]).mean(axis=0))
    return mean


def head_frame(mean: np.ndarray) -> np.ndarray:
    """``mean`` (68, 3) in the head frame, mirror-symmetric, nose tip at the origin, in mm."""
    pairs = np.flatnonzero(MIRROR != np.arange(NUM_LANDMARKS))
    right = pairs[mean[pairs, 0] > mean[MIRROR[pairs], 0]]  # the image-right member of each pair
    x = (mean[right] - mean[MIRROR[right]]).sum(axis=0)
    x /= np.linalg.norm(x)
    y = np.array([0.0, 1.0, 0.0]) - x[1] * x
    y /= np.linalg.norm(y)
    frame = np.stack([x, y, np.cross(x, y)])
    head = (mean - mean.mean(axis=0)) @ frame.T
    mirrored = head[MIRROR] * np.array([-1.0, 1.0, 1.0])
    head = (head + mirrored) / 2
    head -= head[NOSE_TIP]
    eyes = np.linalg.norm(head[OUTER_EYE_CORNERS[0]] - head[OUTER_EYE_CORNERS[1]])
    return head * (EYE_CORNER_DISTANCE_MM / eyes)


def collect_meshes(sets, progress: bool = True) -> tuple[np.ndarray, int]:
    """Face Mesh 3D vertices mapped to 68 points, (N, 68, 3) in crop pixels, and the number of faces tried."""
    from tqdm import tqdm

    from models.align import align_from_landmarks
    from models.datasets import data_root, list_annotated
    from models.mediapipe68 import MESH_VERTICES, REFINE_LANDMARKS, STATIC_IMAGE_MODE, _face_mesh_module, mesh_to_68

    items = [item for name in sets for item in list_annotated(data_root() / name)]
    shapes = []
    with _face_mesh_module().FaceMesh(
        static_image_mode=STATIC_IMAGE_MODE, max_num_faces=1, refine_landmarks=REFINE_LANDMARKS
    ) as mesh_model:
        for item in tqdm(items, desc="face mesh 3D", disable=not progress):
            image = cv2.imread(str(item.image_path))
            if image is None:
                raise OSError(f"cannot read image {item.image_path}")
            crop = align_from_landmarks(image, item.load_points(), CROP_SIZE)
            result = mesh_model.process(cv2.cvtColor(crop.image, cv2.COLOR_BGR2RGB))
            if not result.multi_face_landmarks:
                continue
            vertices = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark[:MESH_VERTICES]])
            shapes.append(mesh_to_68(vertices * CROP_SIZE))
    return np.array(shapes), len(items)


def make(progress: bool = True) -> dict:
    from models.mediapipe68 import FIT_SETS

    import mediapipe

    shapes, tried = collect_meshes(FIT_SETS, progress)
    points = head_frame(procrustes_mean_3d(shapes))
    return {
        "what": "3D mean face in the iBUG 68-point order, head frame: x image-right of a frontal face, "
        "y down, z into the head; origin at the nose tip (point 30); millimetres (approximate scale)",
        "made_by": "python -m models.tools.make_face3d",
        "source": f"Face Mesh 3D vertices (mediapipe {mediapipe.__version__} wheel, legacy solutions.face_mesh, "
        f"static_image_mode, refine_landmarks) on {', '.join(FIT_SETS)}, mapped to 68 points by "
        "models.mediapipe68_map.MESH_TO_68, generalised Procrustes mean, mirror-averaged",
        "faces": int(len(shapes)),
        "faces_tried": int(tried),
        "eye_corner_distance_mm": EYE_CORNER_DISTANCE_MM,
        "points": [[round(float(v), 3) for v in p] for p in points],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.tools.make_face3d", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FACE3D_PATH, help="where to write (default %(default)s)")
    args = parser.parse_args(argv)
    asset = make()
    args.out.write_text(json.dumps(asset, indent=1) + "\n")
    print(f"wrote {args.out}: {asset['faces']} of {asset['faces_tried']} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())

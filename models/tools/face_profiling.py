"""Face profiling: turn an annotated face further in yaw (and pitch), landmarks kept right.

In the spirit of 300W-LP's face profiling (Zhu et al., 3DDFA), on what this project has:

1. **Fit** (``fit_face``): MediaPipe Face Mesh (mediapipe 0.10.21, as ``models.mediapipe68``
   runs it) on the face aligned from its ground truth gives 468 vertices with depth (z on the
   scale of x, away from the camera), mapped back to image pixels. A fit whose mesh, mapped
   to 68 points, misses the ground truth by more than ``MAX_FIT_NME`` (inter-ocular) is
   rejected (``FitError``): Face Mesh found another face, or none.
2. **Attach**: every ground-truth point gets the barycentric coordinates of the visible
   projected mesh triangle that holds it, and so a depth on that triangle's plane; a point off
   the mesh keeps its own x, y and takes the depth of the nearest mesh point: 68 3D points that
   move rigidly with the mesh. At zero
   rotation they project exactly onto the ground truth.
3. **Rotate** about the mesh centroid, about the face's own vertical axis (the in-plane
   roll of the face is taken out first, from the alignment of its five keypoints), orthographic
   projection. The source's own yaw and pitch (``FaceFit.yaw`` / ``pitch``, a 3D Kabsch fit of
   the attached ground truth's 51 inner points to ``models.face3d``, same angle conventions as
   ``app.geometry.pose``) let a caller ask for an absolute target yaw.
4. **Render** (``render_view``): a piecewise-affine warp over the mesh (Face Mesh's own
   triangles, ``mesh_topology``, with the eye and mouth holes filled by fans) and bands of
   background anchors around it (``scaffold``): two rings that turn with the head (hair, ears
   and neck follow) and a ring on the image border that stays (the far surroundings stay).
   Painter's algorithm: background bands first, then face triangles far to near (by mean
   rotated depth); face triangles that turn their back to the camera are dropped. One inverse
   map is built per pixel from its triangle and applied by one ``cv2.remap``. The side that
   turns towards the camera is stretched from what the photo saw of it, as in 300W-LP.

Jaw points (the choice this module makes): 300-W marks the *visible* outline of the jaw and
cheek, not the projection of fixed 3D points. Each jaw point except the chin (8) has an
"iso-line": the mesh vertices at its height (within ``ISO_BAND`` of the inter-ocular
distance, in the roll-free source frame) on its side of the face, between ``ISO_INNER`` of its
distance from the face's midline and the point itself. After the rotation, the point slides
along its iso-line to the candidate that lies outermost in image x (away from the midline);
its y stays its own rotated y. On the far side this is the silhouette of the cheek, where the
outline then is; on the near side and at zero rotation the point itself is outermost and stays.
The nose (within ``ISO_INNER`` of the midline) is never a candidate, so a profile's contour
follows the cheek, not the nose tip. All other points are the rotated 3D points, also where
they are hidden (as 300-W marks hidden points).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np

from models.align import align_from_landmarks, transform_points
from models.face3d import face3d_points
from models.landmarks68 import INNER_51, JAW, inter_ocular
from models.mediapipe68 import INPUT_SIZE, MESH_VERTICES, MediaPipe68, mesh_to_68

MAX_FIT_NME = 0.15  # Face Mesh's 68 points vs the ground truth, inter-ocular: above this the fit is rejected
ISO_BAND = 0.08  # iso-line half-height, inter-ocular distances
ISO_INNER = 0.4  # iso-line starts this share of the jaw point's distance from the midline
RING_SCALES = (1.35, 1.9)  # background anchor rings, in mesh half-extents
CHIN = 8
_JAW_SIDE = np.array([j for j in JAW if j != CHIN])


class FitError(ValueError):
    """Face Mesh found no face, or a face that does not match the ground truth."""


@dataclass(frozen=True, eq=False)
class FaceFit:
    """A face's dense 3D fit in image pixels (x right, y down, z away from the camera)."""

    vertices: np.ndarray  # (468, 3)
    points: np.ndarray  # (68, 3) the ground truth attached to the mesh
    roll: np.ndarray  # (3, 3) image frame -> roll-free face frame (a rotation about z)
    yaw: float  # degrees, the source face's own yaw (app.geometry.pose conventions)
    pitch: float
    fit_nme: float  # Face Mesh's 68 points vs the ground truth, inter-ocular

    @property
    def centre(self) -> np.ndarray:
        return self.vertices.mean(axis=0)


@dataclass(frozen=True, eq=False)
class View:
    image: np.ndarray  # uint8 BGR, the size of the source image
    points: np.ndarray  # (68, 2) 0-based pixel centres, jaw on the visible outline
    projected: np.ndarray  # (68, 2) the rotated 3D points before the jaw rule
    yaw_delta: float
    pitch_delta: float


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Ry(-yaw) @ Rx(-pitch): the rotation that adds ``yaw`` and ``pitch`` in app.geometry.pose's terms."""
    y, p = math.radians(-yaw_deg), math.radians(-pitch_deg)
    ry = np.array([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    return ry @ rx


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotation R minimising |R @ source_i - target_i| for centred (N, 3) sets."""
    u, _, vt = np.linalg.svd(target.T @ source)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def head_angles(points3d: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees of 68 3D points (roll-free frame) against the mean face, inner 51 points."""
    inner = list(INNER_51)
    model = face3d_points()[inner]
    model = model - model.mean(axis=0)
    target = points3d[inner] - points3d[inner].mean(axis=0)
    r = _kabsch(model, target)
    yaw = math.degrees(math.asin(float(np.clip(r[2, 0], -1.0, 1.0))))
    pitch = -math.degrees(math.atan2(r[2, 1], r[2, 2]))
    return yaw, pitch


@lru_cache(maxsize=1)
def mesh_topology() -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Face Mesh's surface: (T, 3) triangles from ``FACEMESH_TESSELATION``'s edges (every 3-clique),
    and its holes (eyes, mouth) as ordered vertex loops; the outer outline is not among them."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    neighbours = defaultdict(set)
    for a, b in FACEMESH_TESSELATION:
        neighbours[a].add(b)
        neighbours[b].add(a)
    triangles = sorted({tuple(sorted((a, b, c)))
                        for a, b in FACEMESH_TESSELATION for c in neighbours[a] & neighbours[b]})
    edge_count = defaultdict(int)
    for a, b, c in triangles:
        for e in ((a, b), (b, c), (a, c)):
            edge_count[e] += 1
    boundary = defaultdict(list)
    for (a, b), n in edge_count.items():
        if n == 1:
            boundary[a].append(b)
            boundary[b].append(a)
    loops, seen = [], set()
    for start in sorted(boundary):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [v for v in boundary[cur] if v != prev and (v not in seen or (v == start and len(loop) > 2))]
            if not nxt or nxt[0] == start:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(np.array(loop))
    loops.sort(key=len)
    return np.array(triangles), tuple(loops[:-1])


def surface(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices with one added per hole at its loop's centroid, triangles with the holes filled by fans),
    every triangle wound so its normal points away from a point one face width behind the face."""
    triangles, holes = mesh_topology()
    verts = [vertices]
    fans = []
    for i, loop in enumerate(holes):
        centre = len(vertices) + i
        verts.append(vertices[loop].mean(axis=0, keepdims=True))
        fans.append(np.column_stack([np.full(len(loop), centre), loop, np.roll(loop, -1)]))
    verts = np.concatenate(verts)
    tris = np.concatenate([triangles, *fans])
    t = verts[tris]
    normal = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    behind = vertices.mean(axis=0) + np.array([0.0, 0.0, np.ptp(vertices[:, 0])])
    flip = np.einsum("ij,ij->i", normal, t.mean(axis=1) - behind) < 0
    tris[flip] = tris[flip][:, ::-1]
    return verts, tris


def attach(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """68 image points -> 3D points on the mesh: barycentric in the (nearest) projected triangle."""
    out = np.zeros((len(points), 3))
    tri2 = vertices[triangles][:, :, :2]  # (T, 3, 2)
    a, b, c = tri2[:, 0], tri2[:, 1], tri2[:, 2]
    v0, v1 = b - a, c - a
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    ok = np.abs(det) > 1e-9
    for i, p in enumerate(points):
        d = p - a
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (d[:, 0] * v1[:, 1] - d[:, 1] * v1[:, 0]) / det
            v = (v0[:, 0] * d[:, 1] - v0[:, 1] * d[:, 0]) / det
        bary = np.stack([1 - u - v, u, v], axis=1)
        outside = np.where(ok, np.clip(-bary, 0, None).sum(axis=1), np.inf)  # 0 inside
        centroid_dist = np.linalg.norm(tri2.mean(axis=1) - p, axis=1)
        k = int(np.lexsort((centroid_dist, outside))[0])
        if outside[k] == 0:
            out[i] = bary[k] @ vertices[triangles[k]]
        else:  # off the mesh: the depth of the nearest mesh point, the point's own x, y
            b = np.clip(bary[k], 0, None)
            out[i] = np.append(p, (b / b.sum()) @ vertices[triangles[k], 2])
    return out


def _roll_matrix(points: np.ndarray) -> np.ndarray:
    """3D rotation about z taking the image frame to the face's upright (roll-free) frame."""
    m = align_from_landmarks(np.zeros((2, 2, 3), np.uint8), points, INPUT_SIZE).matrix
    a = math.atan2(m[1, 0], m[0, 0])
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def mesh_from_crop(mesh_norm: np.ndarray, crop_inverse: np.ndarray, crop_size: int) -> np.ndarray:
    """Face Mesh output (normalised crop units, z on the scale of x) -> (468, 3) image pixels."""
    mesh = np.asarray(mesh_norm, dtype=np.float64)[:MESH_VERTICES]
    xy = transform_points(mesh[:, :2] * crop_size - 0.5, crop_inverse)
    scale = math.hypot(crop_inverse[0, 0], crop_inverse[1, 0])  # image px per crop px
    return np.column_stack([xy, mesh[:, 2] * crop_size * scale])


class FaceMesh3D:
    """Face Mesh with depth on ground-truth-aligned crops (static image mode, refined landmarks)."""

    def __init__(self) -> None:
        self._model = MediaPipe68()

    def __enter__(self) -> "FaceMesh3D":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._model.close()

    def vertices(self, image: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """(468, 3) image-pixel vertices of the face at ``points``, or None when no face is found."""
        crop = align_from_landmarks(image, points, INPUT_SIZE)
        mesh = self._model.infer_3d(crop)
        return None if mesh is None else mesh_from_crop(mesh, crop.inverse, INPUT_SIZE)

    def fit(self, image: np.ndarray, points: np.ndarray) -> FaceFit:
        vertices = self.vertices(image, points)
        if vertices is None:
            raise FitError("Face Mesh found no face")
        return fit_face(vertices, points)


def fit_face(vertices: np.ndarray, points: np.ndarray) -> FaceFit:
    """Attach the ground truth ``points`` (68, 2) to mesh ``vertices`` (468, 3) in image pixels."""
    points = np.asarray(points, dtype=np.float64)
    mapped = mesh_to_68(vertices[:, :2])
    nme = float(np.linalg.norm(mapped - points, axis=1).mean() / inter_ocular(points))
    if not nme <= MAX_FIT_NME:
        raise FitError(f"Face Mesh's face is {nme:.3f} inter-ocular from the ground truth (limit {MAX_FIT_NME})")
    verts, tris = surface(vertices)
    points3d = attach(points, verts, tris[_signed_area(verts[:, :2], tris) < 0])  # the visible surface
    roll = _roll_matrix(points)
    yaw, pitch = head_angles(points3d @ roll.T)
    return FaceFit(vertices, points3d, roll, yaw, pitch, nme)


def _turn(fit: FaceFit, yaw_delta: float, pitch_delta: float) -> Callable[[np.ndarray], np.ndarray]:
    """The turn as a function of (N, 3) image-frame points: about the mesh centroid, about the
    face's own (roll-free) axes."""
    r = fit.roll.T @ _rotation(yaw_delta, pitch_delta) @ fit.roll
    centre = fit.centre

    def rotate(p: np.ndarray) -> np.ndarray:
        return (np.asarray(p) - centre) @ r.T + centre

    return rotate


def jaw_on_outline(fit: FaceFit, rotate: Callable[[np.ndarray], np.ndarray], projected: np.ndarray) -> np.ndarray:
    """The jaw rule of the module docstring: far-side jaw points slide to the cheek's silhouette."""
    upright = (fit.points - fit.centre) @ fit.roll.T  # roll-free source frame
    verts_up = (fit.vertices - fit.centre) @ fit.roll.T
    verts_rot = rotate(fit.vertices) - fit.centre
    verts_rot_x = (verts_rot @ fit.roll.T)[:, 0]
    mid = upright[[27, 28, 29, 30, 33, 51, 57, 8], 0].mean()
    band = ISO_BAND * inter_ocular(fit.points[:, :2])
    points = projected.copy()
    rotated_up = (rotate(fit.points) - fit.centre) @ fit.roll.T
    for j in _JAW_SIDE:
        side = math.copysign(1.0, upright[j, 0] - mid)
        reach = abs(upright[j, 0] - mid)
        off = side * (verts_up[:, 0] - mid)
        iso = (np.abs(verts_up[:, 1] - upright[j, 1]) <= band) & (off >= ISO_INNER * reach) & (off <= reach)
        if not iso.any():
            continue
        best = verts_rot_x[iso][np.argmax(side * verts_rot_x[iso])]
        if side * best > side * rotated_up[j, 0]:
            moved = rotated_up[j].copy()
            moved[0] = best
            points[j] = (moved @ fit.roll)[:2] + fit.centre[:2]
    return points


def _hull(points: np.ndarray) -> np.ndarray:
    """Indices of the convex hull of (N, 2) points, in order around it."""
    return cv2.convexHull(points.astype(np.float32), returnPoints=False).reshape(-1)


def _ray_exit(centre: np.ndarray, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """For rays from ``centre`` through ``points``: the factor at which each leaves the image rectangle."""
    d = points - centre
    lo, hi = np.array([-0.5, -0.5]), np.array([width - 0.5, height - 0.5])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d > 0, (hi - centre) / d, np.where(d < 0, (lo - centre) / d, np.inf))
    return t.min(axis=1)


@dataclass(frozen=True, eq=False)
class Scaffold:
    """What the warp is built on: points (N, 3) in the source image and triangles (in draw order groups)."""

    points: np.ndarray  # (N, 3): mesh vertices, then ring 1, ring 2 (turn with the head), then border (fixed)
    moving: int  # the first ``moving`` points turn with the head; the rest are fixed border anchors
    face: np.ndarray  # (F, 3) triangles of the mesh
    band: np.ndarray  # (B, 3) triangles of the background bands


def scaffold(fit: FaceFit, width: int, height: int) -> Scaffold:
    """The mesh surface and three bands around its projected convex hull, quad by quad.

    Ring 1 and ring 2 are the mesh outline scaled by ``RING_SCALES`` about the outline's centre
    (less where the image ends), at the depth of their outline vertex (ring 2: halfway to the
    mesh centroid's depth), so the surroundings turn with the head without folding onto it; the
    border ring lies on the image rectangle and stays fixed. Outside it the image is unchanged.
    """
    v = fit.vertices
    hull = _hull(v[:, :2])
    outline = v[hull]
    centre = outline[:, :2].mean(axis=0)
    exit_factor = _ray_exit(centre, outline[:, :2], width, height)
    room = np.maximum(exit_factor - 1.0, 0.0)
    f1 = np.minimum(RING_SCALES[0], 1 + 0.4 * room)
    f2 = np.minimum(RING_SCALES[1], 1 + 0.8 * room)
    offset = outline[:, :2] - centre
    ring1 = np.column_stack([centre + f1[:, None] * offset, outline[:, 2]])
    ring2 = np.column_stack([centre + f2[:, None] * offset, (outline[:, 2] + fit.centre[2]) / 2])
    border = np.column_stack([centre + np.maximum(exit_factor, f2)[:, None] * offset, np.zeros(len(hull))])
    h = len(hull)
    verts, face = surface(v)
    n = len(verts)
    points = np.concatenate([verts, ring1, ring2, border])
    rings = [hull, n + np.arange(h), n + h + np.arange(h), n + 2 * h + np.arange(h)]
    band = []
    for inner, outer in zip(rings[:-1], rings[1:]):
        nxt = np.roll(np.arange(h), -1)
        band.append(np.column_stack([inner, outer, outer[nxt]]))
        band.append(np.column_stack([inner, outer[nxt], inner[nxt]]))
    fan = np.column_stack([np.full(h - 2, hull[0]), hull[1:-1], hull[2:]])  # under the face: covers the hull
    return Scaffold(points, n + 2 * h, face, np.concatenate([*band, fan]))


def warp_triangles(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray,
                   order: np.ndarray) -> np.ndarray:
    """Piecewise-affine warp: triangles drawn in ``order`` (later ones cover earlier ones)."""
    height, width = image.shape[:2]
    owner = np.full((height, width), -1, np.int32)
    shift = 4
    inverse = np.zeros((len(triangles), 2, 3))
    for k in order:
        d = dst[triangles[k]].astype(np.float32)
        area = (d[1, 0] - d[0, 0]) * (d[2, 1] - d[0, 1]) - (d[1, 1] - d[0, 1]) * (d[2, 0] - d[0, 0])
        if abs(area) < 1e-6:
            continue
        inverse[k] = cv2.getAffineTransform(d, src[triangles[k]].astype(np.float32))
        poly = np.round(d * (1 << shift)).astype(np.int32)
        cv2.fillConvexPoly(owner, poly, int(k), cv2.LINE_8, shift)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    a = inverse[np.maximum(owner, 0)].astype(np.float32)
    map_x = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
    map_y = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
    map_x[owner < 0] = xs[owner < 0]
    map_y[owner < 0] = ys[owner < 0]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _signed_area(p: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    t = p[triangles]
    return (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 1, 1] - t[:, 0, 1]) * (t[:, 2, 0] - t[:, 0, 0])


def render_view(image: np.ndarray, fit: FaceFit, yaw_delta: float, pitch_delta: float = 0.0) -> View:
    """The face of ``fit`` turned by ``yaw_delta`` / ``pitch_delta`` degrees, with its 68 points."""
    height, width = image.shape[:2]
    rotate = _turn(fit, yaw_delta, pitch_delta)
    frame = scaffold(fit, width, height)
    dst3 = np.concatenate([rotate(frame.points[: frame.moving]), frame.points[frame.moving :]])
    src, dst = frame.points[:, :2], dst3[:, :2]
    face = frame.face[_signed_area(dst, frame.face) < 0]  # wound away from the head: negative in image y-down
    depth = dst3[face, 2].mean(axis=1)
    triangles = np.concatenate([frame.band, face[np.argsort(-depth, kind="stable")]])
    rendered = warp_triangles(image, src, dst, triangles, np.arange(len(triangles)))
    projected = rotate(fit.points)[:, :2]
    points = jaw_on_outline(fit, rotate, projected)
    return View(rendered, points, projected, float(yaw_delta), float(pitch_delta))


def target_deltas(fit: FaceFit, yaw: float, pitch: float | None = None) -> tuple[float, float]:
    """(yaw, pitch) deltas that turn the face to an absolute ``yaw`` (and ``pitch``, default unchanged)."""
    return yaw - fit.yaw, (0.0 if pitch is None else pitch - fit.pitch)

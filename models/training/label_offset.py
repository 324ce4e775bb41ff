"""The training labels' horizontal offset from the image feature, kept through horizontal flips.

Measured (docs/RESULTS.md, "Label offsets per source", mirror check): on every training source
(helen_train, afw, ytf68) the labels sit about +1 image pixel right of the feature both
networks find, whatever the face size, while neither network is biased under mirroring. A
horizontal flip turns a label offset of +e into -e, so a flip-trained network sees both signs,
learns neither and predicts the feature; scored against labels of the same convention (300-W
test) it then pays about 0.05 points of NME_io on HELEN test (r18_ffld 3.355% -> 3.306%,
mnv2_sdd 3.493% -> 3.432% with its points moved +1 px, measured once to size the effect, not
used to choose anything).

Keeping the convention: a flipped sample's labels get the offset an annotator would have given
the mirrored image, i.e. ``-2 A v`` is added to them, where ``v`` is the offset in the canonical
crop (``offset_x`` image pixels along the source image's x axis, through the source-to-canonical
matrix) and ``A`` the linear part of the sample's warp (flip included): the flipped labels then
sit ``+offset_x`` along the mirrored image's x axis, as unflipped ones do along theirs, and the
network learns the labels' convention instead of averaging it away. ``offset_x`` comes from
training sources only (``models.tools.train --label-offset-x``; HELEN test is never used).

Large-pose views use the vector of the image they were rendered from (the same image pixels,
re-warped). Export records the offset in the manifest (``label_offset_x``), so the run-time flip
test (``+flip``) adds it back to the mirrored pass instead of averaging it away.
"""
from __future__ import annotations

import numpy as np

from models.datasets import list_annotated, resolve_dataset
from models.training.crop_cache import CropSet, canonical_matrix


def offset_vectors(crop_set: CropSet, offset_x: float, canon_size: int, crop_size: int) -> np.ndarray:
    """(N, 2) float32: each cached image's label offset in canonical-crop pixels (``offset_x``
    image pixels along the source image's x axis, mapped by the image's canonical matrix)."""
    items = list_annotated(resolve_dataset(crop_set.name))
    by_name = {item.image_path.name: item for item in items}
    missing = [name for name in crop_set.sources if name not in by_name]
    if missing:
        raise FileNotFoundError(f"{crop_set.name}: {len(missing)} cached images no longer annotated, e.g. {missing[0]}")
    out = np.empty((len(crop_set), 2), np.float32)
    for i, name in enumerate(crop_set.sources):
        out[i] = offset_x * canonical_matrix(by_name[name].load_points(), canon_size, crop_size)[:, 0]
    return out


def view_offset_vectors(view_sources: list[str], base: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 2) vectors of large-pose views from ``base`` (``SET/FILE`` -> the source image's vector)."""
    return np.array([base[source] for source in view_sources], np.float32).reshape(len(view_sources), 2)


def flipped_label_correction(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """What to add to a flipped sample's warped labels so their offset keeps its sign: ``-2 A v``."""
    return -2.0 * (np.asarray(matrix, dtype=np.float64)[:, :2] @ np.asarray(vector, dtype=np.float64))

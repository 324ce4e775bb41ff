"""Training/validation samples drawn from the cached canonical crops.

Validation is a fixed-seed hold-out of the 300-W training folders (afw + helen_train) and,
with ``val_identity_fraction`` > 0, every frame of a fixed-seed share of the ytf68 people
(``identity_of``: frames of one person never straddle the split, so validation faces are
people the network has not seen); helen_test is never used here. An epoch draws every kept 300-W image ``w300_repeat``
times plus a random ``ytf_fraction`` of the (low-resolution, integer-labelled) ytf68
frames, plus (``large_pose_fraction`` > 0) that share of the epoch again in large-pose views
(``models.training.pose_views``), drawn from the views of training images only (never of a
validation image). With ``label_offset_x`` flipped samples keep the labels' horizontal offset
from the feature (``models.training.label_offset``); with ``ytf68_teacher`` training samples of
ytf68 take the teacher's points instead of the labels (``models.training.teacher``), and with
``distill`` = w every training sample's points are w x the teacher's + (1 - w) x the labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.datasets import TRAIN_SETS
from models.training.augment import AugmentConfig, augment
from models.training.crop_cache import CROP_SIZE, CropSet, cache_geometry, canonical_offset, load_crop_set
from models.training.label_offset import offset_vectors, view_offset_vectors

W300_SETS = tuple(s for s in TRAIN_SETS if s.startswith("300w/"))


def identity_of(source_name: str) -> str:
    """The person of a ytf68 frame: ``test_Abdullah_Gul_11.jpg`` -> ``Abdullah_Gul`` (the source's
    ``training_`` and ``test_`` splits share people, so the prefix is not part of the identity)."""
    stem = source_name.rsplit(".", 1)[0]
    for prefix in ("training_", "test_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
    return stem.rsplit("_", 1)[0]


@dataclass
class Sample:
    crops: np.ndarray  # (B, S, S, 3) uint8 BGR
    points: np.ndarray  # (B, 68, 2) float32 crop coordinates
    hidden: np.ndarray | None = None  # (B, 68) bool: points a synthetic occluder covers (AugmentConfig.occlusion_prob)


class TrainingData:
    def __init__(self, val_fraction: float = 0.05, split_seed: int = 0, w300_repeat: int = 2,
                 ytf_fraction: float = 0.5, crop_size: int = CROP_SIZE, sets: tuple[str, ...] = TRAIN_SETS,
                 val_identity_fraction: float = 0.0, large_pose_fraction: float = 0.0,
                 label_offset_x: float = 0.0, ytf68_teacher: bool = False, distill: float = 0.0):
        self.crop_size = crop_size
        self.sets: list[CropSet] = [load_crop_set(name, *cache_geometry(crop_size)) for name in sets]
        # (set index, item index) for every image
        self.refs = np.concatenate(
            [np.stack([np.full(len(s), i), np.arange(len(s))], 1) for i, s in enumerate(self.sets)]
        )
        is_w300 = np.concatenate([np.full(len(s), s.name in W300_SETS) for s in self.sets])
        w300 = np.flatnonzero(is_w300)
        perm = np.random.default_rng(split_seed).permutation(w300)
        n_val = int(round(val_fraction * len(w300)))
        other = np.flatnonzero(~is_w300)
        held = self._held_identities(other, val_identity_fraction, split_seed)
        self.val_ids = np.sort(np.concatenate([perm[:n_val], other[held]]))
        self.train_w300 = np.sort(perm[n_val:])
        self.train_other = other[~held]
        self.w300_repeat = w300_repeat
        self.ytf_fraction = ytf_fraction
        self.large_pose_fraction = large_pose_fraction
        self.train_views = np.zeros(0, np.int64)
        # per set: each image's label offset in canonical pixels (None: labels taken as they are)
        self.label_offsets: list[np.ndarray | None] = [None] * len(self.sets)
        if label_offset_x:
            geometry = cache_geometry(crop_size)
            self.label_offsets = [offset_vectors(s, label_offset_x, *geometry) for s in self.sets]
        # per set: points that replace the labels in training samples (validation keeps the labels)
        self.train_points: list[np.ndarray | None] = [None] * len(self.sets)
        self.distill = distill
        for s, crop_set in enumerate(self.sets):
            weight = 1.0 if ytf68_teacher and crop_set.name == "ytf68" else distill
            if weight:
                self.train_points[s] = self._taught(s, weight)
        if large_pose_fraction > 0:
            self._add_views()

    def _taught(self, s: int, weight: float) -> np.ndarray:
        """Set ``s``'s training points: ``weight`` x the teacher's + (1 - ``weight``) x the labels."""
        from models.training.teacher import teacher_points

        labels = self.sets[s].points
        points = teacher_points(self.sets[s])
        offsets = self.label_offsets[s]
        if offsets is not None:  # the labels' convention: shift along the offsets until it matches on average
            share = float(np.sum((labels - points) * offsets[:, None, :]) / (68 * np.sum(offsets**2)))
            points = points + share * offsets[:, None, :]
        return (weight * points + (1.0 - weight) * labels).astype(np.float32)

    def _add_views(self) -> None:
        from models.training.pose_views import load_views

        views = load_views(*cache_geometry(self.crop_size))
        held_out = {f"{self.sets[s].name}/{self.sets[s].sources[i]}" for s, i in self.refs[self.val_ids]}
        keep = np.array([source not in held_out for source in views.sources], bool)
        first = len(self.refs)
        if any(v is not None for v in self.label_offsets):
            base = {f"{s.name}/{name}": v
                    for s, vs in zip(self.sets, self.label_offsets) for name, v in zip(s.sources, vs)}
            self.label_offsets.append(view_offset_vectors(views.sources, base))
        else:
            self.label_offsets.append(None)
        self.sets.append(views)
        self.train_points.append(self._taught(len(self.sets) - 1, self.distill) if self.distill else None)
        self.refs = np.concatenate([self.refs, np.stack([np.full(len(views), len(self.sets) - 1),
                                                         np.arange(len(views))], 1)])
        self.train_views = first + np.flatnonzero(keep)

    def _held_identities(self, ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
        """Mask over ``ids``: the frames of a ``fraction`` of the people, drawn with ``seed``."""
        if fraction <= 0:
            return np.zeros(len(ids), bool)
        people = np.array([identity_of(self._source(gid)) for gid in ids])
        names = np.unique(people)
        chosen = np.random.default_rng(seed + 1).choice(names, int(round(fraction * len(names))), replace=False)
        return np.isin(people, chosen)

    def _source(self, gid: int) -> str:
        s, i = self.refs[gid]
        return self.sets[s].sources[i]

    def epoch_ids(self, rng: np.random.Generator) -> np.ndarray:
        other = rng.choice(self.train_other, int(round(self.ytf_fraction * len(self.train_other))), replace=False)
        ids = np.concatenate([np.tile(self.train_w300, self.w300_repeat), other])
        if len(self.train_views):
            n = int(round(self.large_pose_fraction * len(ids)))
            ids = np.concatenate([ids, rng.choice(self.train_views, n, replace=n > len(self.train_views))])
        return rng.permutation(ids)

    def _item(self, gid: int) -> tuple[np.ndarray, np.ndarray]:
        s, i = self.refs[gid]
        return self.sets[s].images[i], self.sets[s].points[i]

    def train_batch(self, ids: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> Sample:
        crops, points = [], []
        for gid in ids:
            image, pts = self._item(gid)
            s, i = self.refs[gid]
            if self.train_points[s] is not None:
                pts = self.train_points[s][i]
            offsets = self.label_offsets[s]
            crop, p = augment(np.asarray(image), pts, self.crop_size, cfg, rng, None if offsets is None else offsets[i])
            crops.append(crop)
            points.append(p)
        if not cfg.occlusion_prob:
            return Sample(np.stack(crops), np.stack(points).astype(np.float32))
        from models.training.occlusion import occlude

        hidden = np.zeros((len(crops), len(points[0])), bool)
        for j in np.flatnonzero(rng.random(len(crops)) < cfg.occlusion_prob):  # textures from the batch's other crops
            crops[j], hidden[j] = occlude(crops[j], points[j], rng, donor=crops[(j + 1) % len(crops)])
        return Sample(np.stack(crops), np.stack(points).astype(np.float32), hidden)

    def plain_batch(self, ids: np.ndarray) -> Sample:
        """Un-augmented crops: the centre window of the canonical crop, i.e. the run-time aligned crop."""
        crops, points = [], []
        for gid in ids:
            image, pts = self._item(gid)
            o = int(canonical_offset(image.shape[0], self.crop_size))
            crops.append(np.asarray(image[o : o + self.crop_size, o : o + self.crop_size]))
            points.append(pts - o)
        return Sample(np.stack(crops), np.stack(points).astype(np.float32))

"""SGFA's exemplar shape dictionary: build it from the training shapes, choose its size, test it.

``python -m models.sgfa_dictionary --build`` writes ``assets/sgfa_dictionary.npz``;
``python -m models.sgfa_dictionary --test`` scores the repair on HELEN test shapes with a
region deliberately corrupted and given weight 0 (testing only: nothing is chosen there).

Method: generalised Procrustes analysis normalises every training shape (300-W AFW + HELEN
train, ytf68, each also mirrored, as training flips faces) for similarity, then k-means
(``scipy.cluster.vq.kmeans2``, k-means++ start, fixed seed) on the aligned shapes; the
exemplars are the K centroids. Why k-means and not the paper's K-SVD: K-SVD learns atoms for
sparse codes; with one atom per shape and a unit coefficient it is exactly k-means (Aharon et
al. 2006 present it as k-means' generalisation), and the sparse combination the paper solves
per shape is done here at run time anyway (``models.sgfa_repair``: the k nearest exemplars
combined by weighted least squares). k-means' centroids are the K shapes that minimise the
squared Procrustes distance of the training shapes to their nearest exemplar, which is what
the nearest-exemplar search needs, with a well-kept implementation and no sparsity parameter.

K (dictionary size) and k (exemplars per repair) are chosen on training shapes only: the
dictionary is fitted without a 10% hold-out of the 300-W training shapes, and the pair with
the smallest repair error on the hold-out's corrupted regions wins; the shipped dictionary is
then fitted on all training shapes with that K.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.datasets import PROJECT_ROOT, TEST_SET, TRAIN_SETS, list_annotated, resolve_dataset
from models.landmarks68 import MIRROR, OUTER_EYE_CORNERS
from models.sgfa_repair import ShapeDictionary, repair

DICTIONARY_FILE = PROJECT_ROOT / "assets" / "sgfa_dictionary.npz"
SIZES = (64, 128, 256, 512)
NEIGHBOURS = (5, 10, 20, 40)
SEED = 0
# Regions a real occluder hides (0-based 68-point indices): mouth, one eye and brow, the other,
# nose, the lower jaw with the chin, one cheek's jaw half.
REGIONS = {
    "mouth": tuple(range(48, 68)),
    "left eye + brow": tuple(range(17, 22)) + tuple(range(36, 42)),
    "right eye + brow": tuple(range(22, 27)) + tuple(range(42, 48)),
    "both eyes": tuple(range(36, 48)),
    "nose": tuple(range(27, 36)),
    "chin": tuple(range(5, 12)) + tuple(range(55, 60)),
    "left jaw": tuple(range(0, 9)),
}


def load_shapes(sets: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """All (N, 68, 2) shapes of the named annotated folders and each shape's set name."""
    shapes, names = [], []
    for name in sets:
        if name == TEST_SET:
            raise ValueError("HELEN test is for testing only: it never builds the dictionary")
        for item in list_annotated(resolve_dataset(name)):
            shapes.append(item.load_points())
            names.append(name)
    return np.stack(shapes).astype(np.float64), names


def normalise(shapes: np.ndarray) -> np.ndarray:
    """Each shape centred, unit RMS distance from its centre."""
    centred = shapes - shapes.mean(axis=1, keepdims=True)
    return centred / np.sqrt((centred**2).sum(axis=(1, 2)) / shapes.shape[1])[:, None, None]


def mirrored(shapes: np.ndarray) -> np.ndarray:
    out = shapes[:, MIRROR].copy()
    out[..., 0] *= -1
    return out


def procrustes(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes analysis: every shape similarity-aligned to the common mean."""
    x = normalise(shapes)
    z = x[..., 0] + 1j * x[..., 1]
    mean = z[0]
    for _ in range(iterations):
        rotation = (np.conj(z) * mean).sum(axis=1)  # centred shapes: the optimal similarity's factor
        aligned = z * (rotation / np.maximum((np.abs(z) ** 2).sum(axis=1), 1e-12))[:, None]
        mean = aligned.mean(axis=0)
        mean = (mean - mean.mean()) / np.sqrt((np.abs(mean - mean.mean()) ** 2).mean())
    return normalise(np.stack([aligned.real, aligned.imag], axis=-1))


def fit_dictionary(shapes: np.ndarray, size: int, seed: int = SEED) -> np.ndarray:
    """K exemplars: k-means centroids of the Procrustes-aligned shapes (and their mirror images)."""
    from scipy.cluster.vq import kmeans2

    aligned = procrustes(np.concatenate([shapes, mirrored(shapes)]))
    flat = aligned.reshape(len(aligned), -1)
    centroids, labels = kmeans2(flat, size, minit="++", seed=seed, iter=30)
    used = np.unique(labels)  # an empty cluster keeps its start: drop it
    return normalise(centroids[used].reshape(-1, 68, 2))


def corrupt(shape: np.ndarray, region: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The shape with ``region``'s points moved as a wrong fit under an occluder would: a common
    shift of 0.2-0.5 inter-ocular distances and 0.1 of scatter per point."""
    iod = float(np.linalg.norm(shape[OUTER_EYE_CORNERS[0]] - shape[OUTER_EYE_CORNERS[1]]))
    out = shape.copy()
    angle = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(0.2, 0.5) * iod * np.array([np.cos(angle), np.sin(angle)])
    out[list(region)] += shift + rng.normal(0, 0.1 * iod, (len(region), 2))
    return out


def repair_errors(shapes: np.ndarray, dictionary: ShapeDictionary, k: int, seed: int = SEED) -> dict:
    """Mean error of the corrupted points (inter-ocular units) before and after repair, with the
    corrupted points at weight 0, each shape corrupted in every region once."""
    rng = np.random.default_rng(seed)
    before, after, rest = [], [], []
    for shape in shapes:
        iod = float(np.linalg.norm(shape[OUTER_EYE_CORNERS[0]] - shape[OUTER_EYE_CORNERS[1]]))
        for region in REGIONS.values():
            bad = corrupt(shape, region, rng)
            weights = np.ones(68)
            weights[list(region)] = 0.0
            fixed = repair(bad, weights, dictionary, k=k).points
            idx = list(region)
            before.append(np.linalg.norm(bad[idx] - shape[idx], axis=1).mean() / iod)
            after.append(np.linalg.norm(fixed[idx] - shape[idx], axis=1).mean() / iod)
            keep = np.setdiff1d(np.arange(68), idx)
            rest.append(np.abs(fixed[keep] - shape[keep]).max() / iod)
    return {"corrupted": float(np.mean(before)), "repaired": float(np.mean(after)),
            "repaired_median": float(np.median(after)), "repaired_p90": float(np.percentile(after, 90)),
            "others_moved": float(np.max(rest)), "cases": len(after)}


def choose_size(shapes: np.ndarray, names: list[str]) -> tuple[int, int, list[dict]]:
    """(K, k) with the smallest repair error on a 10% hold-out of the 300-W training shapes."""
    rng = np.random.default_rng(SEED)
    w300 = np.flatnonzero([n.startswith("300w/") for n in names])
    held = rng.choice(w300, int(round(0.1 * len(w300))), replace=False)
    train = np.setdiff1d(np.arange(len(shapes)), held)
    rows = []
    for size in SIZES:
        exemplars = fit_dictionary(shapes[train], size)
        for k in NEIGHBOURS:
            scores = repair_errors(shapes[held], ShapeDictionary(exemplars, k), k)
            rows.append({"K": size, "k": k, **scores})
            print(json.dumps(rows[-1]), flush=True)
    best = min(rows, key=lambda r: r["repaired"])
    return best["K"], best["k"], rows


def build(out: Path) -> dict:
    shapes, names = load_shapes(TRAIN_SETS)
    size, k, rows = choose_size(shapes, names)
    exemplars = fit_dictionary(shapes, size)
    method = (f"k-means (scipy kmeans2, k-means++, seed {SEED}) of {2 * len(shapes)} Procrustes-aligned training "
              f"shapes ({', '.join(TRAIN_SETS)}, each also mirrored); K={size} and k={k} chosen on a 10% "
              f"hold-out of the 300-W training shapes")
    out.parent.mkdir(parents=True, exist_ok=True)
    from engines.files import atomic_writer

    with atomic_writer(out, "wb") as f:
        np.savez_compressed(f, exemplars=exemplars.astype(np.float32), k=np.int64(k), method=np.str_(method))
    print(f"wrote {out}: {len(exemplars)} exemplars, k={k}")
    return {"K": len(exemplars), "k": k, "selection": rows}


def test(path: Path) -> dict:
    """Repair error on HELEN test shapes (testing only)."""
    dictionary = ShapeDictionary.load(path)
    shapes = np.stack([item.load_points() for item in list_annotated(resolve_dataset(TEST_SET))])
    result = repair_errors(shapes, dictionary, dictionary.k)
    print(json.dumps({"dictionary": str(path), "K": len(dictionary.exemplars), "k": dictionary.k, **result}))
    return result


def bench(path: Path, runs: int = 2000) -> float:
    """Median CPU milliseconds of one repair (one face, a corrupted mouth at weight 0)."""
    import time

    dictionary = ShapeDictionary.load(path)
    shape = list_annotated(resolve_dataset(TEST_SET))[0].load_points()
    bad = corrupt(shape, REGIONS["mouth"], np.random.default_rng(SEED))
    weights = np.ones(68)
    weights[list(REGIONS["mouth"])] = 0.0
    times = []
    for _ in range(runs):
        t = time.process_time()
        repair(bad, weights, dictionary)
        times.append(time.process_time() - t)
    ms = 1e3 * float(np.median(times))
    print(f"repair: median {ms:.3f} ms CPU per face (K={len(dictionary.exemplars)}, k={dictionary.k})")
    return ms


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", action="store_true", help="choose K and k, fit and write the dictionary")
    p.add_argument("--test", action="store_true", help="repair error on corrupted HELEN test shapes")
    p.add_argument("--bench", action="store_true", help="CPU time of one repair")
    p.add_argument("--out", type=Path, default=DICTIONARY_FILE)
    args = p.parse_args(argv)
    if not (args.build or args.test or args.bench):
        p.error("give --build, --test and/or --bench")
    if args.build:
        build(args.out)
    if args.test:
        test(args.out)
    if args.bench:
        bench(args.out)


if __name__ == "__main__":
    main()

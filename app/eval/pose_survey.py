"""The head-pose (yaw) distribution of a set of annotated faces, by ``app.geometry.pose``'s solver.

``python -m app.eval.pose_survey SOURCE [SOURCE ...] [--limit N]``: a SOURCE is an
annotated folder (``300w/afw``, or a path: every ``.pts`` with its image) or a crop-cache
folder holding ``points.npy`` and ``meta.json`` (e.g. the large-pose views of
``models.training.pose_views``, whose folder ``--build`` prints). Each face's 68 points get a
pose from ``PoseSolver`` (default options, camera of the image's size with the default field of
view); the table gives the share of faces per |yaw| band and how many got no pose.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.geometry.pose import PoseSolver, camera_matrix
from models.datasets import list_annotated, resolve_dataset

BANDS = (0, 15, 30, 45, 60, 75, 90)


@dataclass
class Survey:
    name: str
    yaw: np.ndarray  # degrees, NaN where no pose
    intended: np.ndarray | None = None  # views: the yaw the view was rendered for (Face Mesh's source yaw + change)

    def row(self) -> str:
        found = self.yaw[np.isfinite(self.yaw)]
        a = np.abs(found)
        shares = [np.mean((a >= lo) & (a < hi)) if len(a) else 0.0 for lo, hi in zip(BANDS, BANDS[1:])]
        cells = " | ".join(f"{100 * s:.1f}%" for s in shares)
        return (f"| {self.name} | {len(self.yaw)} | {len(self.yaw) - len(found)} | {cells} | "
                f"{100 * np.mean(a >= 45) if len(a) else 0:.1f}% | {np.median(a) if len(a) else float('nan'):.1f} |")

    def agreement(self) -> str | None:
        """Views only: how far the solver's yaw is from the yaw each view was rendered for."""
        if self.intended is None:
            return None
        ok = np.isfinite(self.yaw)
        diff = self.yaw[ok] - self.intended[ok]
        return (f"{self.name}: solver yaw minus intended yaw over {ok.sum()} views: mean {diff.mean():+.1f}°, "
                f"mean absolute {np.abs(diff).mean():.1f}°, "
                f"correlation {np.corrcoef(self.yaw[ok], self.intended[ok])[0, 1]:.3f}")


def header() -> str:
    bands = " | ".join(f"{lo}-{hi}°" for lo, hi in zip(BANDS, BANDS[1:]))
    return (f"| set | faces | no pose | {bands} | ≥45° | median abs yaw |\n"
            f"|---|---|---|{'---|' * (len(BANDS) - 1)}---|---|")


def _solve(points: np.ndarray, width: int, height: int, solvers: dict) -> float:
    solver = solvers.setdefault((width, height), PoseSolver(camera_matrix(width, height), size=(width, height)))
    pose = solver.solve(points)
    return float(pose.yaw) if pose is not None else float("nan")


def survey(source: str, limit: int = 0) -> Survey:
    folder = Path(source)
    solvers: dict = {}
    if (folder / "points.npy").is_file():
        meta = json.loads((folder / "meta.json").read_text())
        points = np.load(folder / "points.npy")[: limit or None]
        size = int(meta["canon_size"])
        intended = None
        if "source_yaw" in meta and "deltas" in meta:
            intended = (np.array(meta["source_yaw"]) + np.array(meta["deltas"])[:, 0])[: len(points)]
        yaw = np.array([_solve(p, size, size, solvers) for p in points])
        return Survey(meta.get("dataset", folder.name), yaw, intended)
    yaws = []
    for item in list_annotated(resolve_dataset(source))[: limit or None]:
        image = cv2.imread(str(item.image_path), cv2.IMREAD_REDUCED_COLOR_2)  # only the size is needed
        if image is None:
            raise OSError(f"cannot read image {item.image_path}")
        height, width = (2 * image.shape[0], 2 * image.shape[1])
        yaws.append(_solve(item.load_points(), width, height, solvers))
    return Survey(source, np.array(yaws))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.eval.pose_survey", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="annotated folders or crop-cache folders")
    parser.add_argument("--limit", type=int, default=0, help="only the first N faces of each source")
    args = parser.parse_args(argv)
    print(header())
    notes = []
    for source in args.sources:
        try:
            result = survey(source, args.limit)
        except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
            print(f"pose_survey: {source}: {exc}", file=sys.stderr)
            return 1
        print(result.row())
        notes.append(result.agreement())
    for note in filter(None, notes):
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Errors on turning clips by how far the head is turned (``synth-clips --motion turn``).

``python -m app.eval.turn_report OUT [OUT ...]``: OUT is an ``eval300vw`` output folder of turning
clips (it holds ``clips/*.npz`` with the shown points and the ground truth of every frame, and
each clip's ``.json`` names the clip folder, whose ``synth.json`` gives the head's yaw on every
frame). Prints, per |yaw| band (the still's Face Mesh yaw plus the frame's turn), the frames,
misses, and the box-normalised NME (68 and the 51 inner points, the measure large-pose work
uses: the inter-ocular distance shrinks as the head turns) with FR@0.08 (box, 68; a miss is a
failure).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from app.eval.vw300.records import MISS, OK
from models.landmarks68 import INNER_51
from models.metrics import nme_per_face

BANDS = ((0, 20), (20, 40), (40, 90))


def frames_of(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(|yaw| per scored frame, NME68 box, NME51 box, missed) over every clip of an eval300vw output."""
    yaw, e68, e51, missed = [], [], [], []
    for npz in sorted((out / "clips").glob("*.npz")):
        record = json.loads(npz.with_suffix(".json").read_text())
        synth = json.loads((Path(record["folder"]) / "synth.json").read_text())
        if "yaw" not in synth["per_frame"]:
            raise ValueError(f"{record['folder']} is not a turning clip (synth-clips --motion turn)")
        data = np.load(npz)
        frame_yaw = np.abs(np.asarray(synth["per_frame"]["yaw"]))[data["frame"] - 1]
        scored = np.isin(data["status"], (OK, MISS))
        ok = data["status"] == OK
        gt, shown = data["gt"][scored], data["shown"][scored]
        err68 = np.full(len(gt), np.inf)
        err51 = np.full(len(gt), np.inf)
        found = ok[scored]
        if found.any():
            err68[found] = nme_per_face(shown[found], gt[found], "box")
            err51[found] = nme_per_face(shown[found], gt[found], "box", INNER_51)
        yaw.append(frame_yaw[scored])
        e68.append(err68)
        e51.append(err51)
        missed.append(~found)
    if not yaw:
        raise FileNotFoundError(f"no clip results (clips/*.npz) in {out}")
    return tuple(np.concatenate(a) for a in (yaw, e68, e51, missed))


def report(out: Path) -> list[str]:
    yaw, e68, e51, missed = frames_of(out)
    rows = []
    for lo, hi in BANDS + ((0, 90),):
        k = (yaw >= lo) & (yaw < hi) if (lo, hi) != (0, 90) else np.ones(len(yaw), bool)
        found = k & ~missed
        band = "all" if (lo, hi) == (0, 90) else f"{lo}-{hi}°"
        rows.append(f"| {out.name} | {band} | {k.sum()} | {missed[k].sum()} | {100 * e68[found].mean():.2f}% | "
                    f"{100 * e51[found].mean():.2f}% | {100 * np.mean(e68[k] > 0.08):.1f}% |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.eval.turn_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", nargs="+", type=Path, help="eval300vw output folders of turning clips")
    args = parser.parse_args(argv)
    print("| run | abs yaw | frames | misses | NME68 box | NME51 box | FR@0.08 box (68) |")
    print("|---|---|---|---|---|---|---|")
    for out in args.outputs:
        try:
            print("\n".join(report(out)))
        except (OSError, ValueError, KeyError) as exc:
            print(f"turn_report: {out}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

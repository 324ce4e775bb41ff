"""``python -m app.batch.cost [VIDEO]``: CPU time per frame of each part of a batch run.

Prints the CPU milliseconds per frame of decoding, of the pipeline (detect, align, infer,
decode, smooth), of encoding the rows in the worker (CSV + Arrow), and of the driver's
share per face (renaming ids, writing the parts, then the final files),
the bytes per face per frame of each output, and what they imply: frames per core-second
and hours of 30 fps video per node-hour for a node of ``--cores``. CPU time (not wall
time) is what is measured, so the figures hold on a loaded machine better than speeds do.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from app.batch.inputs import VIDEO, InputItem
from app.batch.parts import ChunkState, InputParts
from app.batch.probe import open_input
from app.batch.rows import ChunkRows
from app.batch.schema import FrameRecord, parquet_schema
from app.cli.pipeline_args import add_pipeline_arguments, pipeline_from_args
from models.datasets import data_root


def _cpu_ms_per(count: int, start: float) -> float:
    return (time.process_time() - start) * 1000.0 / max(count, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.batch.cost", description=__doc__)
    parser.add_argument("video", nargs="?", default=str(data_root() / "videos" / "talking_d19.mp4"))
    parser.add_argument("--max-frames", type=int, default=250)
    parser.add_argument("--cores", type=int, default=16, help="cores of the node to extrapolate to")
    add_pipeline_arguments(parser)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    item = InputItem(Path(args.video), Path(args.video).stem, VIDEO)

    start = time.process_time()
    with open_input(item) as source:
        frames = [frame for frame, _ in zip(source, range(args.max_frames))]
    decode = _cpu_ms_per(len(frames), start)

    with pipeline_from_args(args) as pipeline:
        pipeline.process(frames[0])  # warm-up
        pipeline.reset()
        start = time.process_time()
        records = [FrameRecord(f.index, f.timestamp, pipeline.process(f).faces) for f in frames]
        infer = _cpu_ms_per(len(frames), start)
    faces = sum(len(r.faces) for r in records)

    ChunkRows.from_records(records[:1])  # pyarrow's first use costs ~0.5 s
    start = time.process_time()
    rows = ChunkRows.from_records(records)
    encode = _cpu_ms_per(len(frames), start)
    identity = {i: i for i in rows.table.column("face_id").to_pylist()}
    with tempfile.TemporaryDirectory() as out:
        parts = InputParts(Path(out), item.key, parquet_schema({"source": str(item.path)}))
        start = time.process_time()
        parts.write_chunk(ChunkState(0, len(records), faces, records[-1].index, 2), rows.renamed(identity))
        parts.finalize(1)
        write = _cpu_ms_per(faces, start)
        csv_bytes, parquet_bytes = parts.csv_path.stat().st_size, parts.parquet_path.stat().st_size

    per_frame = decode + infer + encode
    height, width = frames[0].image.shape[:2]
    print(f"{item.path.name}: {len(frames)} frames, {faces} faces, {width}x{height}")
    print(f"worker CPU ms per frame: decode {decode:.2f}, pipeline {infer:.2f} ({pipeline.model.name}), "
          f"encoding rows {encode:.2f}; total {per_frame:.2f}")
    print(f"driver CPU ms per face per frame (renaming ids, writing parts and final files): {write:.3f} "
          f"=> one driver core keeps up with {1000.0 / write:.0f} faces per second")
    per_face = max(faces, 1)
    print(f"output bytes per face per frame: CSV {csv_bytes / per_face:.0f}, Parquet {parquet_bytes / per_face:.0f}")
    fps_core = 1000.0 / per_frame
    print(f"=> {fps_core:.0f} frames per worker core-second; a {args.cores}-core node: "
          f"{fps_core * args.cores * 3600 / 30 / 3600:.1f} hours of 30 fps video per node-hour")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

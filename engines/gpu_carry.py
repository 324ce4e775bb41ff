"""Carry a large wheel (onnxruntime-gpu, 256 MB) to a lent GPU machine in parts, then run the GPU checks.

The device tool copies at most 64 MiB per call, so the wheel travels as parts under 60 MiB,
one (or a few) per call, each stashed in an ignored folder that survives between calls on the
warm machine; the last call joins them, checks every sha256 and installs the wheel into a
target folder put first on ``PYTHONPATH``. Steps (README, "GPU back-ends"):

    python -m engines.gpu_carry split WHEEL --parts out/gpu_carry          # here
    python -m engines.gpu_carry stash out/gpu_carry/PART --stage build/gpu_carry   # device, per part
    python -m engines.gpu_carry join --stage build/gpu_carry --out build/gpu_carry/WHEEL   # device
    python -m engines.gpu_carry check --wheel build/gpu_carry/WHEEL --target build/ort_gpu --report $OUT  # device
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MiB = 1 << 20
MAX_PART = 60 * MiB  # the device tool carries 64 MiB per call in all
DEFAULT_PART = 50 * MiB
MANIFEST = "manifest.json"


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def split(path: str | Path, parts_dir: str | Path, part_size: int = DEFAULT_PART) -> list[Path]:
    """Cut ``path`` into ``NAME.partNN`` files under ``parts_dir`` plus a manifest of sha256s."""
    if not 0 < part_size < MAX_PART:
        raise ValueError(f"part size must be between 1 byte and {MAX_PART // MiB} MiB, got {part_size}")
    path, parts_dir = Path(path), Path(parts_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no file to split: {path}")
    parts_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(path, "rb") as handle:
        for index, block in enumerate(iter(lambda: handle.read(part_size), b"")):
            part = parts_dir / f"{path.name}.part{index:02d}"
            part.write_bytes(block)
            parts.append(part)
    manifest = {
        "name": path.name,
        "size": path.stat().st_size,
        "sha256": sha256(path),
        "parts": [{"file": p.name, "size": p.stat().st_size, "sha256": sha256(p)} for p in parts],
    }
    (parts_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return parts


def stash(files: list[str | Path], stage: str | Path) -> None:
    """Copy carried parts (and the manifest) into ``stage``, which outlives the call."""
    stage = Path(stage)
    stage.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(file, stage / Path(file).name)


def join(stage: str | Path, out: str | Path) -> Path:
    """Join the parts listed in ``stage``'s manifest into ``out``; raise ``ValueError`` on any
    missing part or sha256 mismatch (naming it), leaving no joined file behind."""
    stage, out = Path(stage), Path(out)
    manifest = json.loads((stage / MANIFEST).read_text())
    missing = [p["file"] for p in manifest["parts"] if not (stage / p["file"]).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} part(s) not carried yet: {', '.join(missing)}")
    for part in manifest["parts"]:
        if sha256(stage / part["file"]) != part["sha256"]:
            raise ValueError(f"part {part['file']} is damaged (sha256 differs); carry it again")
    partial = out.with_name(out.name + ".joining")
    with open(partial, "wb") as handle:
        for part in manifest["parts"]:
            handle.write((stage / part["file"]).read_bytes())
    if sha256(partial) != manifest["sha256"]:
        partial.unlink()
        raise ValueError(f"joined {manifest['name']} has the wrong sha256")
    os.replace(partial, out)
    return out


def check(wheel: Path, target: Path, report: Path) -> int:
    """Install ``wheel`` into ``target`` and run the gpu-marked tests and ort-cuda benches into ``report``."""
    report.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target.resolve()), os.getcwd()]))
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    steps = [
        ("install", [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)]),
        ("providers", [sys.executable, "-c", "import onnxruntime as o; print(o.__file__, o.get_available_providers())"]),
        ("gpu_tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/test_engines.py"]),
    ]
    clip = os.environ.get("FACETRACK_CLIP", "../shared/data/videos/talking_d3.mp4")
    for model in ("r18_ffld", "mnv2_sdd"):
        for precision in ("fp32", "fp16"):
            steps.append((f"bench_{model}_{precision}", [
                sys.executable, "-m", "app", "bench", clip, "--model", model,
                "--backend", "ort-cuda", "--precision", precision,
            ]))
    worst = 0
    for name, command in steps:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        (report / f"{name}.txt").write_text(f"$ {' '.join(command)}\nrc={done.returncode}\n{done.stdout}\n{done.stderr}")
        print(f"{name}: rc={done.returncode}")
        worst = worst or done.returncode
        if name == "install" and done.returncode:
            break
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.gpu_carry", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("split", help="cut a wheel into parts under 60 MiB (here)")
    p.add_argument("file")
    p.add_argument("--parts", required=True)
    p.add_argument("--part-mib", type=int, default=DEFAULT_PART // MiB)
    p = sub.add_parser("stash", help="keep carried parts in the stage folder (device)")
    p.add_argument("files", nargs="+")
    p.add_argument("--stage", required=True)
    p = sub.add_parser("join", help="join and verify the parts (device)")
    p.add_argument("--stage", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("check", help="install the wheel and run the GPU checks (device)")
    p.add_argument("--wheel", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    try:
        if args.step == "split":
            for part in split(args.file, args.parts, args.part_mib * MiB):
                print(part)
        elif args.step == "stash":
            stash(args.files, args.stage)
        elif args.step == "join":
            print(join(args.stage, args.out))
        else:
            return check(Path(args.wheel), Path(args.target), Path(args.report))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

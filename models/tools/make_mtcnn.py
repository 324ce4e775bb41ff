"""Convert MTCNN's three networks from the facenet-pytorch wheel (MIT) into the ONNX files in assets/mtcnn/.

    python -m models.tools.make_mtcnn [--wheel facenet_pytorch-2.6.0-py3-none-any.whl] [--out assets/mtcnn]

Without ``--wheel`` the wheel is fetched with ``pip download facenet-pytorch==2.6.0 --no-deps``
into a temporary folder (facenet-pytorch itself is never installed: only the state dicts
``facenet_pytorch/data/{pnet,rnet,onet}.pt`` and the licence are read from the wheel).
The networks are defined here, layer for layer as in facenet-pytorch's ``models/mtcnn.py``
(Zhang et al. 2016's P-, R- and O-Net), with the input scaling inside the graph: each file
takes a float32 N x 3 x H x W **BGR** image in 0..255 and computes ``(rgb - 127.5) / 128``.

- ``pnet.onnx``: dynamic N, H, W -> ``reg`` (N, 4, h, w) box offsets, ``prob`` (N, 2, h, w).
- ``rnet.onnx``: N x 3 x 24 x 24 -> ``reg`` (N, 4), ``prob`` (N, 2).
- ``onet.onnx``: N x 3 x 48 x 48 -> ``reg`` (N, 4), ``points`` (N, 10: five x then five y,
  fractions of the box), ``prob`` (N, 2).

The script checks ONNX Runtime against torch on real frames (largest absolute difference
per output) and copies the wheel's licence next to the files. Torch is needed here only.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from models.datasets import PROJECT_ROOT, data_root

VERSION = "2.6.0"
OUT_DIR = PROJECT_ROOT / "assets" / "mtcnn"
INPUTS = {"pnet": (12, 12), "rnet": (24, 24), "onet": (48, 48)}
OUTPUTS = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "points", "prob")}
TOLERANCE = 1e-4


def build_nets():
    """The three torch modules (uninitialised), named as in facenet-pytorch so its state dicts load."""
    import torch
    from torch import nn

    class Scaled(nn.Module):
        """BGR 0..255 -> RGB (x - 127.5) / 128, then the network."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net((x.flip(1) - 127.5) * 0.0078125)

    def stage(c_in, c_out, kernel, pool=None):
        layers = [nn.Conv2d(c_in, c_out, kernel), nn.PReLU(c_out)]
        return layers + ([nn.MaxPool2d(*pool, ceil_mode=True)] if pool else [])

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = stage(3, 10, 3, (2, 2))
            self.conv2, self.prelu2 = stage(10, 16, 3)
            self.conv3, self.prelu3 = stage(16, 32, 3)
            self.conv4_1 = nn.Conv2d(32, 2, 1)
            self.conv4_2 = nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = stage(3, 28, 3, (3, 2))
            self.conv2, self.prelu2, self.pool2 = stage(28, 48, 3, (3, 2))
            self.conv3, self.prelu3 = stage(48, 64, 2)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)  # the Caffe weights' (w, h, c) order
            x = self.prelu4(self.dense4(x))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = stage(3, 32, 3, (3, 2))
            self.conv2, self.prelu2, self.pool2 = stage(32, 64, 3, (3, 2))
            self.conv3, self.prelu3, self.pool3 = stage(64, 64, 3, (2, 2))
            self.conv4, self.prelu4 = stage(64, 128, 2)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
            x = self.prelu5(self.dense5(x))
            return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)

    return {"pnet": (PNet(), Scaled), "rnet": (RNet(), Scaled), "onet": (ONet(), Scaled)}


def fetch_wheel(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", f"facenet-pytorch=={VERSION}", "--no-deps", "-d", str(folder)]
    subprocess.run(command, check=True)
    return next(folder.glob("facenet_pytorch-*.whl"))


def load_nets(wheel: Path) -> tuple[dict, str]:
    """The three networks with the wheel's weights (eval mode, input scaling included), and its licence text."""
    import io

    import torch

    nets = {}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for name, (net, scaled) in build_nets().items():
            state = torch.load(io.BytesIO(archive.read(f"facenet_pytorch/data/{name}.pt")), map_location="cpu",
                               weights_only=True)  # tensors only: nothing in the file runs
            net.load_state_dict(state)
            nets[name] = scaled(net).eval()
        licence = archive.read(next(n for n in names if n.endswith(".dist-info/LICENSE.md"))).decode()
    return nets, licence


def check_frames() -> list[np.ndarray]:
    """Real test inputs: a frame of the shared street clip (random noise when the data are missing)."""
    import cv2

    clip = data_root() / "videos" / "street_multiface.mp4"
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        print(f"warning: cannot read {clip}; checking on noise", file=sys.stderr)
        frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return [frame, cv2.resize(frame, (333, 187), interpolation=cv2.INTER_AREA)]


def network_inputs(name: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Blobs to compare torch and ONNX Runtime on: whole frames for PNet, batches of crops for R/O-Net."""
    import cv2

    def blob(images):
        return np.stack([i.astype(np.float32).transpose(2, 0, 1) for i in images])

    if name == "pnet":
        return [blob([f]) for f in frames]
    size = INPUTS[name]
    frame = frames[0]
    h, w = frame.shape[:2]
    rng = np.random.default_rng(1)
    crops = []
    for _ in range(17):
        side = int(rng.integers(20, min(h, w) // 2))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        crops.append(cv2.resize(frame[y : y + side, x : x + side], size, interpolation=cv2.INTER_AREA))
    return [blob(crops[:1]), blob(crops)]


def export(nets: dict, out: Path) -> dict[str, float]:
    """Write the ONNX files; return the largest |torch - ONNX Runtime| per network."""
    import onnx
    import onnxruntime
    import torch

    out.mkdir(parents=True, exist_ok=True)
    frames = check_frames()
    worst = {}
    for name, net in nets.items():
        path = out / f"{name}.onnx"
        outputs = OUTPUTS[name]
        dims = {0: "batch", 2: "height", 3: "width"} if name == "pnet" else {0: "batch"}
        axes = {"image": dims} | {o: dict(dims) if name == "pnet" else {0: "batch"} for o in outputs}
        dummy = torch.zeros((1, 3, *INPUTS[name][::-1]))
        # TorchScript-based exporter (dynamo=False), as in models/tools/export.py.
        torch.onnx.export(net, (dummy,), str(path), opset_version=17, input_names=["image"], output_names=list(outputs),
                          dynamic_axes=axes, dynamo=False)
        onnx.checker.check_model(onnx.load(str(path)))
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        worst[name] = 0.0
        for blob in network_inputs(name, frames):
            with torch.no_grad():
                expected = [t.numpy() for t in net(torch.from_numpy(blob))]
            got = session.run(list(outputs), {"image": blob})
            for e, g in zip(expected, got):
                if e.shape != g.shape:
                    raise SystemExit(f"{name}: ONNX Runtime gives shape {g.shape}, torch {e.shape}")
                worst[name] = max(worst[name], float(np.abs(e - g).max()))
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path,
                        help=f"facenet_pytorch-{VERSION}-py3-none-any.whl (default: pip download)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default assets/mtcnn)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        nets, licence = load_nets(wheel)
    worst = export(nets, args.out)
    (args.out / "LICENSE-facenet-pytorch.md").write_text(licence)
    print(f"wheel {wheel.name} sha256 {digest}")
    for name, diff in worst.items():
        size = (args.out / f"{name}.onnx").stat().st_size
        print(f"{name}.onnx: {size} bytes, max |torch - ONNX Runtime| = {diff:.2e}")
    if max(worst.values()) > TOLERANCE:
        raise SystemExit(f"ONNX Runtime differs from torch by more than {TOLERANCE}")


if __name__ == "__main__":
    main()

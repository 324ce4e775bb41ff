"""The training Task of ResNet18-FFLD (``models.nets.r18_ffld``): coordinate regression + 3 CropNets.

Targets are the points in normalised crop units u = (x + 0.5) / 224 and the inter-ocular
distance (points 36-45) of each face. With e = (estimate - truth) / inter-ocular:

- S0: ``l2_weight`` * mean over points of |e|^2 (L2 normalised by the inter-ocular distance),
  continued linearly beyond |e| = ``l2_cap`` (Huber) so that a rare badly labelled or
  badly augmented face cannot dominate a batch (a first baseline run with the plain square
  at lr 2e-3 jumped from 5.7% to 11.3% validation NME in one epoch; the cause was not
  isolated: the main run has both the cap and lr 1e-3);
- S1: the same L2; S2: L1, mean over points of |e_x| + |e_y|;
- S3: ``stage3_loss`` "align": ``align_weight`` * mean squared difference between patches of
  the Gaussian-blurred (sigma ``align_sigma`` feature pixels), detached 112x112 map cropped at
  the estimate and at the truth (its gradient moves the estimate only); or "l1" as S2;
- confidence: ``confidence_weight`` * binary cross-entropy of the confidence logits with
  exp(-|e3|^2 / (2 ``confidence_sigma``^2)) (e3 detached) on faces and 0 on non-faces.

Non-faces: during training (grad enabled), ``to_input`` turns a ``negative_fraction`` of the
batch into non-face crops made from the batch's own images (a 4x4 tile shuffle with random
quarter turns of each tile, or a 2.5-4x zoom into a random part), so the confidence learns
to be low where there is no face; their points are left out of the point losses. The random
draws use torch's global generator, which the checkpoints save, so resuming stays exact.

Schedule (the paper's): the baseline first (``refine=False``: S0 alone, its own run), then the
full model (``refine=True``) starting from the baseline run's weights (``init_run``) with a new
learning-rate schedule; ``models.train --model r18_ffld`` chains the two runs in one command.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.landmarks68 import OUTER_EYE_CORNERS
from models.training.tasks import Task

W300_SETS = ("300w/afw", "300w/helen_train")


def mean_shape_u(crop_size: int) -> np.ndarray | None:
    """Mean ground-truth shape of the cached 300-W training crops in u units, or None without a cache."""
    from models.training.crop_cache import canonical_offset, load_crop_set
    from models.training.dataset import cache_geometry

    canon, crop = cache_geometry(crop_size)
    try:
        points = np.concatenate([load_crop_set(s, canon, crop, build=False).points for s in W300_SETS])
    except FileNotFoundError:
        return None
    return ((points - canonical_offset(canon, crop) + 0.5) / crop).mean(0)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Depthwise separable Gaussian blur (zero padding) of (N, C, H, W)."""
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)


def make_negatives(images: np.ndarray, rng: torch.Generator | None = None) -> np.ndarray:
    """Non-face crops from (B, S, S, 3) uint8 face crops: tile shuffle or strong zoom (new array)."""
    import cv2

    out = images.copy()
    size = images.shape[1]
    for i in range(len(images)):
        r = torch.rand(4, generator=rng).tolist()
        if r[0] < 0.5:
            tiles, t = 4, size // 4
            parts = [images[i, y * t : (y + 1) * t, x * t : (x + 1) * t] for y in range(tiles) for x in range(tiles)]
            order = torch.randperm(len(parts), generator=rng).tolist()
            turns = torch.randint(0, 4, (len(parts),), generator=rng).tolist()
            for j, (src, q) in enumerate(zip(order, turns)):
                y, x = divmod(j, tiles)
                out[i, y * t : (y + 1) * t, x * t : (x + 1) * t] = np.rot90(parts[src], q)
        else:
            zoom = 2.5 + 1.5 * r[1]
            side = size / zoom
            x0, y0 = r[2] * (size - side), r[3] * (size - side)
            m = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]])
            out[i] = cv2.warpAffine(images[i], m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return out


@dataclass
class FFLDTask(Task):
    refine: bool = True  # False: the S0 baseline phase
    init_run: str = ""  # training run (``loop.run_dir``) whose last.pt a fresh network starts from
    stage3_loss: str = "align"  # "align" or "l1"
    l2_weight: float = 10.0
    l2_cap: float = 0.1  # inter-ocular units; the L2 terms grow linearly beyond
    align_weight: float = 1.0
    align_sigma: float = 1.0
    confidence_sigma: float = 0.08
    confidence_weight: float = 0.1
    negative_fraction: float = 0.1

    def __post_init__(self):
        from models.nets import r18_ffld

        if self.stage3_loss not in ("align", "l1"):
            raise ValueError(f"stage3_loss must be 'align' or 'l1', got {self.stage3_loss!r}")
        self.name = "r18_ffld"
        self.input_size = r18_ffld.INPUT_SIZE
        self.mean = r18_ffld.INPUT_MEAN
        self.std = r18_ffld.INPUT_STD
        self.colour_order = r18_ffld.COLOUR_ORDER
        self._negatives: np.ndarray | None = None

    @classmethod
    def from_config(cls, t: dict) -> "FFLDTask":
        keys = ("refine", "init_run", "stage3_loss", "l2_weight", "l2_cap", "align_weight", "align_sigma",
                "confidence_sigma", "confidence_weight", "negative_fraction")
        return cls(**{k: t[k] for k in keys if k in t})

    def build_model(self) -> torch.nn.Module:
        """A fresh network: the weights of run ``init_run`` if set, else random with S0 starting at
        the mean training shape when the crop cache is there (a loaded checkpoint brings its own)."""
        from models.nets.r18_ffld import R18FFLD

        if self.init_run:
            from models.training.loop import load_run_weights

            return load_run_weights(R18FFLD(self.refine), self.init_run, "r18_ffld")
        mean = mean_shape_u(self.input_size)
        return R18FFLD(self.refine, None if mean is None else torch.from_numpy(mean))

    def blank_model(self) -> torch.nn.Module:
        """The network without any initialisation from data or another run (to load a checkpoint into)."""
        from models.nets.r18_ffld import R18FFLD

        return R18FFLD(self.refine)

    def to_input(self, crops_bgr: np.ndarray) -> torch.Tensor:
        self._negatives = None
        if torch.is_grad_enabled() and self.negative_fraction > 0:  # training batches only
            mask = (torch.rand(len(crops_bgr)) < self.negative_fraction).numpy()
            if mask.any():
                crops_bgr = crops_bgr.copy()
                crops_bgr[mask] = make_negatives(crops_bgr[mask])
            self._negatives = mask
        return super().to_input(crops_bgr)

    def make_targets(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """Crop pixel points -> u-unit points, inter-ocular distance and the non-face mask of the
        batch ``to_input`` just made."""
        u = (points.float() + 0.5) / self.input_size
        io = (u[:, OUTER_EYE_CORNERS[0]] - u[:, OUTER_EYE_CORNERS[1]]).norm(dim=-1).clamp(min=1e-3)
        neg = self._negatives if self._negatives is not None and len(self._negatives) == len(u) else None
        self._negatives = None
        face = torch.ones(len(u), dtype=torch.bool) if neg is None else torch.from_numpy(~neg)
        return {"points": u, "io": io, "face": face}

    def loss_terms(self, output, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from models.nets.r18_ffld import crop_patches, patch_offsets

        face = target["face"]
        u, io = target["points"][face], target["io"][face]
        zero = torch.zeros(())

        def err(shape):
            return (shape[face].float() - u) / io[:, None, None]

        def mean_faces(x):
            return x.mean() if x.numel() else zero

        def l2(e):
            """|e|^2 per point, linear (same value and slope) beyond ``l2_cap``."""
            d2 = (e**2).sum(-1)
            cap = self.l2_cap
            if cap <= 0:
                return d2
            return torch.where(d2 < cap**2, d2, 2 * cap * d2.clamp(min=cap**2).sqrt() - cap**2)

        shapes = output.shapes
        terms = {"s0": self.l2_weight * mean_faces(l2(err(shapes[0])))}
        if len(shapes) > 1:
            terms["s1"] = self.l2_weight * mean_faces(l2(err(shapes[1])))
            terms["s2"] = mean_faces(err(shapes[2]).abs().sum(-1))
            if self.stage3_loss == "l1":
                terms["s3"] = mean_faces(err(shapes[3]).abs().sum(-1))
            elif face.any():
                blurred = gaussian_blur(output.features["f112"][face].detach().float(), self.align_sigma)
                offsets = patch_offsets()
                at_estimate = crop_patches(blurred, shapes[3][face].float(), offsets)
                at_truth = crop_patches(blurred, u, offsets)
                terms["s3"] = self.align_weight * ((at_estimate - at_truth) ** 2).mean()
            else:
                terms["s3"] = zero
            e3 = (shapes[3].detach().float() - target["points"]) / target["io"][:, None, None]
            conf_target = torch.exp(-(e3**2).sum(-1) / (2 * self.confidence_sigma**2)) * face[:, None].float()
            terms["confidence"] = self.confidence_weight * F.binary_cross_entropy_with_logits(
                output.confidence_logits.float(), conf_target)
        return terms

    def loss(self, output, target: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.loss_terms(output, target).values())

    def points_from_output(self, output: np.ndarray) -> np.ndarray:
        """(B, 68, 3) [u_x, u_y, confidence] -> (B, 68, 2) crop pixel-centre points."""
        return output[..., :2] * self.input_size - 0.5

    def config(self) -> dict:
        return {"task": "ffld", "model": self.name, "input_size": self.input_size, "refine": self.refine,
                "init_run": self.init_run, "stage3_loss": self.stage3_loss, "l2_weight": self.l2_weight,
                "l2_cap": self.l2_cap, "align_weight": self.align_weight, "align_sigma": self.align_sigma,
                "confidence_sigma": self.confidence_sigma, "confidence_weight": self.confidence_weight,
                "negative_fraction": self.negative_fraction}


@torch.no_grad()
def stage_points(model, task: FFLDTask, crops: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Crop pixel points of every stage (S0 ... S3) for (N, S, S, 3) BGR crops (eval mode)."""
    model.eval()
    out: list[list[np.ndarray]] = []
    for start in range(0, len(crops), batch):
        shapes = model(task.to_input(crops[start : start + batch]), all_stages=True).shapes
        out.append([s.numpy() * task.input_size - 0.5 for s in shapes])
    return [np.concatenate([o[i] for o in out]) for i in range(len(out[0]))]


def evaluate_stages(checkpoint: str, folder: str | None = None) -> dict:
    """NME_io of S0 ... S3 of a checkpoint: on the run's validation hold-out (GT-aligned crops), or
    on an annotated ``folder`` through the run-time alignment path (frame coordinates)."""
    from models.align import transform_points
    from models.training.checkpoint import inference_weights, load_checkpoint
    from models.training.evaluate import nme_io, summarise

    state = load_checkpoint(checkpoint)
    task = FFLDTask.from_config(state["config"]["task"])
    model = task.blank_model()
    model.load_state_dict(inference_weights(state))
    if folder is None:
        from models.training.dataset import TrainingData

        tr = state["config"]["train"]
        data = TrainingData(tr["val_fraction"], tr["split_seed"], tr["w300_repeat"], tr["ytf_fraction"],
                            task.input_size)
        val = data.plain_batch(data.val_ids)
        crops, gts, inverses = val.crops, val.points, None
        where = "validation hold-out (GT-aligned crops)"
    else:
        import cv2

        from models.align import align_from_landmarks
        from models.datasets import list_annotated, resolve_dataset

        items = list_annotated(resolve_dataset(folder))
        aligned = [align_from_landmarks(cv2.imread(str(i.image_path)), i.load_points(), task.input_size)
                   for i in items]
        crops = np.stack([a.image for a in aligned])
        inverses = [a.inverse for a in aligned]
        gts = np.stack([i.load_points() for i in items])
        where = f"{folder} (run-time alignment from the five GT-derived keypoints)"
    result = {"checkpoint": str(checkpoint), "epoch": state["epoch"], "set": where}
    for k, pts in enumerate(stage_points(model, task, crops)):
        if inverses is not None:
            pts = np.stack([transform_points(p, inv) for p, inv in zip(pts, inverses)])
        result[f"S{k}"] = summarise(nme_io(pts, gts))
    return result


def non_face_crops(count: int = 200, size: int = 224, seed: int = 0) -> np.ndarray:
    """Random square crops (side 15-60% of the frame height, resized to ``size``) of the
    street clip's frames: mostly background, people's clothes and cars (BGR uint8)."""
    import cv2

    from models.datasets import data_root

    path = data_root() / "videos" / "street_multiface.mp4"
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < 10:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
        for _ in range(15):  # every 16th frame
            capture.grab()
    capture.release()
    if not frames:
        raise OSError(f"cannot read frames of {path}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        frame = frames[i % len(frames)]
        h, w = frame.shape[:2]
        side = int(rng.uniform(0.15, 0.6) * h)
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        out.append(cv2.resize(frame[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def confidence_report(checkpoint: str, folder: str = "300w/helen_test") -> dict:
    """Mean per-face confidence on aligned faces of ``folder``, on the same faces with the crop
    displaced by half its side (a lost track), and on non-face crops of the street clip; with
    the share of each under the tracker's 0.25 threshold."""
    import cv2

    from models.align import align_from_landmarks
    from models.datasets import list_annotated, resolve_dataset
    from models.training.checkpoint import inference_weights, load_checkpoint

    state = load_checkpoint(checkpoint)
    task = FFLDTask.from_config(state["config"]["task"])
    model = task.blank_model()
    model.load_state_dict(inference_weights(state))
    size = task.input_size
    faces, displaced = [], []
    for item in list_annotated(resolve_dataset(folder)):
        image = cv2.imread(str(item.image_path))
        crop = align_from_landmarks(image, item.load_points(), size)
        faces.append(crop.image)
        shift = crop.matrix.copy()
        shift[0, 2] -= size / 2
        displaced.append(cv2.warpAffine(image, shift, (size, size), flags=cv2.INTER_LINEAR, borderValue=0))
    sets = {"faces": np.stack(faces), "faces displaced by half a crop": np.stack(displaced),
            "street-clip non-faces": non_face_crops(size=size)}
    result = {"checkpoint": str(checkpoint), "epoch": state["epoch"]}
    for name, crops in sets.items():
        model.eval()
        with torch.no_grad():
            conf = np.concatenate([model(task.to_input(crops[i : i + 64]))[..., 2].mean(-1).numpy()
                                   for i in range(0, len(crops), 64)])
        result[name] = {"count": len(conf), "mean": float(conf.mean()), "p05": float(np.percentile(conf, 5)),
                        "p95": float(np.percentile(conf, 95)), "below_0.25": float((conf < 0.25).mean())}
    return result

def _select_then_crop(stage, features: torch.Tensor, shape: torch.Tensor, offsets: torch.Tensor):
    """The costlier order, for the step benchmark only: channel selection over the whole map,
    then every landmark's 4 selected channels cropped from it."""
    from models.nets.r18_ffld import SELECTED_CHANNELS, crop_patches

    k, c = stage.points, SELECTED_CHANNELS
    # the grouped weights (K*4, C_in, 1, 1) as one dense 1x1 convolution C_in -> K*4 over the whole map
    selected = F.conv2d(features, stage.select.weight.to(features.dtype))
    n = selected.shape[0]
    patches = crop_patches(selected, shape, offsets)  # (N, K * K*4, 8, 8): every landmark's crop of all maps
    own = patches.view(n, k, k, c, *offsets.shape[:2])[:, torch.arange(k), torch.arange(k)]
    delta, pooled = stage.cropnet(own.reshape(n, k * c, *offsets.shape[:2]).to(features.dtype))
    side = torch.tensor([float(features.shape[3]), float(features.shape[2])])
    return shape + delta.view(-1, k, 2) / side, pooled


def step_benchmark(batch: int = 32, rounds: int = 3, bf16: bool = True) -> dict:
    """CPU seconds per training step (forward, loss, backward, AdamW) of the S0 baseline, the
    full model (crop first, then select channels on the 8x8 patches) and the full model with
    the selection applied to whole maps before cropping; random crops and points, no data loading."""
    import time

    from models.nets.r18_ffld import RefineStage

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    points = torch.from_numpy(rng.uniform(50, 170, (batch, 68, 2)).astype(np.float32))
    points[:, 36], points[:, 45] = torch.tensor([70.0, 90.0]), torch.tensor([150.0, 90.0])
    variants = {"s0 baseline": (False, False), "full, crop then select": (True, False),
                "full, select then crop": (True, True)}
    result = {}
    original = RefineStage.forward
    for name, (refine, select_first) in variants.items():
        torch.manual_seed(0)
        task = FFLDTask(refine=refine, negative_fraction=0.0)
        model = task.blank_model().to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
        RefineStage.forward = _select_then_crop if select_first else original
        cpu, wall = [], []
        try:
            for i in range(rounds + 1):
                t, c = time.perf_counter(), time.process_time()
                x = task.to_input(crops).contiguous(memory_format=torch.channels_last)
                target = task.make_targets(points)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    output = model(x)
                loss = task.loss(output, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if i:  # the first step warms up
                    cpu.append(time.process_time() - c)
                    wall.append(time.perf_counter() - t)
        finally:
            RefineStage.forward = original
        result[name] = {"cpu_s_per_step": round(float(np.median(cpu)), 3),
                        "cpu_ms_per_face": round(1e3 * float(np.median(cpu)) / batch, 1),
                        "wall_s_per_step": round(float(np.median(wall)), 3)}
    return result

if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="NME_io of every r18_ffld stage (S0 ... S3) of a checkpoint, "
                                     "or (--confidence) how its confidence separates faces from non-faces.")
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--set", default=None, help="annotated folder (default: the run's validation hold-out)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-benchmark", action="store_true",
                        help="instead: CPU time per training step (batch --batch), S0 / crop-then-select / "
                             "select-then-crop")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--confidence", action="store_true",
                        help="instead: mean confidence on faces, displaced faces and non-faces")
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)
    if cli.step_benchmark:
        import os

        print(json.dumps({"batch": cli.batch, "threads": cli.threads, "bf16": True,
                          **step_benchmark(cli.batch, cli.rounds), "load_average": os.getloadavg()}, indent=1))
    elif cli.checkpoint is None:
        parser.error("a checkpoint is needed (or --step-benchmark)")
    elif cli.confidence:
        print(json.dumps(confidence_report(cli.checkpoint, cli.set or "300w/helen_test"), indent=1))
    else:
        print(json.dumps(evaluate_stages(cli.checkpoint, cli.set), indent=1))

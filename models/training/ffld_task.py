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
learning-rate schedule; ``models.tools.train --model r18_ffld`` chains the two runs in one command.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.landmarks68 import OUTER_EYE_CORNERS
from models.training.checkpoint import load_run_weights
from models.training.task import Task

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
    init_run: str = ""  # training run (``checkpoint.run_dir``) whose last.pt a fresh network starts from
    init_onnx: str = ""  # exported file whose weights a fresh network starts from, batch norms frozen
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
        keys = ("refine", "init_run", "init_onnx", "stage3_loss", "l2_weight", "l2_cap", "align_weight", "align_sigma",
                "confidence_sigma", "confidence_weight", "negative_fraction")
        return cls(**{k: t[k] for k in keys if k in t})

    def build_model(self) -> torch.nn.Module:
        """A fresh network: the weights of run ``init_run`` if set, else random with S0 starting at
        the mean training shape when the crop cache is there (a loaded checkpoint brings its own)."""
        from models.nets.r18_ffld import R18FFLD

        if self.init_run and self.init_onnx:
            raise ValueError("init_run and init_onnx are two different starts; give one")
        if self.init_run:
            return load_run_weights(R18FFLD(self.refine), self.init_run, "r18_ffld")
        if self.init_onnx:
            from models.training.onnx_init import load_onnx_weights

            return load_onnx_weights(R18FFLD(self.refine), self.init_onnx, self.input_size)
        mean = mean_shape_u(self.input_size)
        return R18FFLD(self.refine, None if mean is None else torch.from_numpy(mean))

    def blank_model(self) -> torch.nn.Module:
        """The network without any initialisation from data or another run (to load a checkpoint into);
        with its batch norms frozen when the run fine-tunes an exported file (the same function
        in inference mode, so export and evaluation see no difference)."""
        from models.nets.r18_ffld import R18FFLD

        if self.init_onnx:
            from models.training.onnx_init import freeze_batch_norm

            return freeze_batch_norm(R18FFLD(self.refine))
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

    def points_from_output(self, output: np.ndarray, method: str | None = None) -> np.ndarray:
        """(B, 68, 3) [u_x, u_y, confidence] -> (B, 68, 2) crop pixel-centre points (one decoding)."""
        return output[..., :2] * self.input_size - 0.5

    def config(self) -> dict:
        return {"task": "ffld", "model": self.name, "input_size": self.input_size, "refine": self.refine,
                "init_run": self.init_run, **({"init_onnx": self.init_onnx} if self.init_onnx else {}),
                "stage3_loss": self.stage3_loss, "l2_weight": self.l2_weight,
                "l2_cap": self.l2_cap, "align_weight": self.align_weight, "align_sigma": self.align_sigma,
                "confidence_sigma": self.confidence_sigma, "confidence_weight": self.confidence_weight,
                "negative_fraction": self.negative_fraction}

"""What the training loop, evaluation and export need from a network: the ``Task`` interface.

A task holds what is specific to one network (input size, normalisation, targets, loss,
decoding); the generic loop (``loop.py``) and ``models.tools.export`` talk only to this interface.
Implementations: ``heatmap_task.HeatmapTask`` (MobileNetV2-SDD), ``ffld_task.FFLDTask``
(ResNet18-FFLD) and ``sgfa_task.SGFATask`` (SGFA); ``tasks`` picks one by name or from a run's recorded configuration.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


class Task(ABC):
    """The model-specific parts of training, evaluation and export."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour_order: str  # "rgb" or "bgr"
    init_run: str  # training run whose last.pt a fresh network starts from ("" = none)
    decode_methods: tuple[str, ...] = ()  # decoding variants ``points_from_output`` offers, if several

    @abstractmethod
    def blank_model(self) -> torch.nn.Module:
        """The network without any initialisation from data or another run (a checkpoint is loaded into it)."""

    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """A fresh network to train: the weights of run ``init_run`` if set, else the task's own start."""

    @abstractmethod
    def make_targets(self, points: torch.Tensor):
        """(B, 68, 2) crop points -> whatever the loss compares the output with."""

    @abstractmethod
    def loss(self, output, target) -> torch.Tensor:
        """The scalar training loss of a batch."""

    @abstractmethod
    def points_from_output(self, output: np.ndarray, method: str | None = None) -> np.ndarray:
        """Network output (numpy) -> (B, 68, 2) points in crop pixel-centre coordinates; ``method``
        picks one of ``decode_methods`` (None: the task's default)."""

    @abstractmethod
    def config(self) -> dict:
        """Everything that must match when resuming and that goes into the manifest."""

    def to_input(self, crops_bgr: np.ndarray) -> torch.Tensor:
        """(B, S, S, 3) uint8 BGR crops -> normalised float (B, 3, S, S)."""
        x = crops_bgr[..., ::-1] if self.colour_order == "rgb" else crops_bgr
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (t - mean) / std

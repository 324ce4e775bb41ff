"""Heatmap losses: plain MSE, foreground-weighted MSE, adaptive wing (Wang et al., ICCV 2019).

The weighted variants use the "weighted loss map" of the adaptive-wing paper: weight
``1 + foreground_weight`` on the 3x3-dilated region where the target exceeds 0.2.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F


def foreground_weights(target: torch.Tensor, foreground_weight: float, threshold: float = 0.2) -> torch.Tensor:
    mask = F.max_pool2d((target > threshold).float(), 3, stride=1, padding=1)
    return 1.0 + foreground_weight * mask


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), target)


def weighted_mse_loss(pred: torch.Tensor, target: torch.Tensor, foreground_weight: float = 10.0) -> torch.Tensor:
    w = foreground_weights(target, foreground_weight)
    return (w * (pred.float() - target) ** 2).mean()


def adaptive_wing_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    foreground_weight: float = 10.0,
    alpha: float = 2.1,
    omega: float = 14.0,
    epsilon: float = 1.0,
    theta: float = 0.5,
) -> torch.Tensor:
    """Adaptive wing loss with the weighted loss map, averaged over all heatmap pixels."""
    pred = pred.float()
    delta = (target - pred).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega * (1.0 / (1.0 + ratio**power)) * power * (ratio ** (power - 1.0)) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    small = omega * torch.log1p((delta / epsilon) ** power)
    large = a * delta - c
    loss = torch.where(delta < theta, small, large)
    return (foreground_weights(target, foreground_weight) * loss).mean()


LOSSES = {"mse": mse_loss, "wmse": weighted_mse_loss, "awing": adaptive_wing_loss}


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None



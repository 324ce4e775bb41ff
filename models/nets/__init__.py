"""Landmark network definitions (torch; training and export only).

``build_model(name)`` returns a fresh ``torch.nn.Module`` for a registered name.
"""
from __future__ import annotations

MODEL_NAMES = ("mnv2_sdd", "r18_ffld", "sgfa", "drr", "ccnn")


def build_model(name: str, **kwargs):
    """A new, randomly initialised network by registry name."""
    if name == "mnv2_sdd":
        from models.nets.mnv2_sdd import MobileNetV2SDD

        return MobileNetV2SDD(**kwargs)
    if name == "r18_ffld":
        from models.nets.r18_ffld import R18FFLD

        return R18FFLD(**kwargs)
    if name == "sgfa":
        from models.nets.sgfa import SGFA

        return SGFA(**kwargs)
    if name == "drr":
        from models.nets.drr import DRR

        return DRR(**kwargs)
    if name == "ccnn":
        from models.nets.ccnn import CCNN

        return CCNN(**kwargs)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")

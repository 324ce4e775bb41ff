"""Plots of evaluation results: the CED curves of ``python -m app evaluate`` and ``eval300vw``."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from models.metrics import DEFAULT_THRESHOLD, error_array, auc, ced, count_misses, failure_rate


def plot_ced(
    curves: Mapping[str, Sequence[float] | np.ndarray],
    path: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    title: str | None = None,
    xlabel: str = "NME (inter-ocular)",
) -> Path:
    """Write a PNG with one CED curve per model (label shows its AUC and FR) up to ``threshold``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.linspace(0.0, threshold, 801)
    fig = Figure(figsize=(6.4, 4.8), dpi=100)  # no pyplot: leaves any GUI backend alone
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, errors in curves.items():
        e = error_array(errors)
        label = (
            f"{name}: AUC {auc(e, threshold):.3f}, FR {100 * failure_rate(e, threshold):.2f}%"
            f" (n={e.size}, misses={count_misses(e)})"
        )
        ax.step(x, ced(e, x), where="post", label=label)
    ax.set_xlim(0.0, threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of faces")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path

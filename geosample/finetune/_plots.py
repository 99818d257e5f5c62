"""``loss.png``: training and validation InfoNCE loss per epoch, the kept epoch marked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

DPI = 120


def plot_losses(history: pd.DataFrame, best: int, path: Path) -> Figure:
    """Both losses against the epoch (epoch 0: the untrained, identity adapter)."""
    fig = Figure(figsize=(6.4, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(history["epoch"], history["train_loss"], color="#4c72b0", label="train")
    ax.plot(history["epoch"], history["validation_loss"], color="#dd8452", label="validation")
    ax.axvline(best, color="#555555", linestyle="--", linewidth=1, label=f"kept (epoch {best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("symmetric InfoNCE loss")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(color="#e5e5e5", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return fig

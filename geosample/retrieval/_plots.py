"""``per_stratum.png``: weighted R@K of both directions with 95 % intervals, per value of every stratum dimension.

Drawn on a :class:`matplotlib.figure.Figure` (never pyplot's global state) and
saved without a timestamp, so the same metrics give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

DPI = 120
PNG_METADATA = {"Software": None}
COLORS = {"image_to_text": "#4c72b0", "text_to_image": "#dd8452"}
LABELS = {"image_to_text": "image → text", "text_to_image": "text → image"}
MAX_VALUES = 40  # bars per panel; the rest (fewest images) are left out and noted


def plot_per_stratum(result: dict[str, Any], path: Path) -> Figure:
    """Horizontal bars of weighted R@K (smallest K) per stratum value with their intervals, worst at the bottom.

    One panel per dimension; the overall weighted estimate is a dashed line.
    """
    key = f"R@{min(result['k'])}"
    panels = list(result.get("per_stratum", {}).items())
    heights = [min(len(values), MAX_VALUES) for _, values in panels] or [1]
    fig = Figure(figsize=(9.0, 1.6 + 0.32 * sum(heights) + 0.6 * len(heights)), dpi=DPI, layout="constrained")
    fig.suptitle(
        f"{key} per stratum (1/π-weighted, 95 % intervals) — {result['encoder']}, {result['n_images']} images, "
        f"{result['n_texts']} captions",
        fontsize=11,
    )
    if not panels:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no stratum dimensions in the plan", ha="center", va="center")
        ax.set_axis_off()
    else:
        axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, (dimension, values) in zip(axes, panels, strict=True):
            _panel(ax, dimension, values, result, key)
        handles = [Patch(color=COLORS[d], label=LABELS[d]) for d in COLORS]
        handles.append(Line2D([], [], color="#555555", linestyle="--", linewidth=1, label="all queries"))
        fig.legend(handles=handles, loc="outside upper right", ncols=3, fontsize=8, frameon=False)
    fig.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA)
    return fig


def _panel(ax: Any, dimension: str, values: dict[str, Any], result: dict[str, Any], key: str) -> None:
    names = sorted(values, key=lambda v: -values[v]["n_images"])[:MAX_VALUES]
    left_out = len(values) - len(names)
    names = sorted(names, key=lambda n: (_mean_estimate(values[n], key), n))  # worst at the bottom
    positions = np.arange(len(names))
    bar = 0.38
    for offset, direction in ((bar / 2, "image_to_text"), (-bar / 2, "text_to_image")):
        scores = [values[n]["weighted"][direction].get(key) for n in names]
        heights = [np.nan if s is None else s for s in scores]
        ax.barh(positions + offset, heights, height=bar, color=COLORS[direction])
        bounds = [_bounds(values[n], direction, key) for n in names]
        if any(b is not None for b in bounds):
            pairs = list(zip(heights, bounds, strict=True))
            low = [h - b[0] if b is not None and not np.isnan(h) else 0.0 for h, b in pairs]
            high = [b[1] - h if b is not None and not np.isnan(h) else 0.0 for h, b in pairs]
            ax.errorbar(
                heights, positions + offset, xerr=[np.clip(low, 0, None), np.clip(high, 0, None)],
                fmt="none", ecolor="#222222", elinewidth=0.8, capsize=1.5,
            )  # fmt: skip
        for y, score, b in zip(positions + offset, scores, bounds, strict=True):
            text = "–" if score is None else f"{score:.2f}"
            right = b[1] if b is not None else (score or 0.0)
            ax.text(min(right, 0.93) + 0.01, y, text, va="center", fontsize=6.5, color="#333333")
        overall = result["weighted"][direction].get(key)
        if overall is not None:
            ax.axvline(overall, color=COLORS[direction], linestyle="--", linewidth=1)
    ax.set_yticks(positions, [f"{n}  (n={values[n]['n_images']})" for n in names], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(key + ("" if not left_out else f"   ({left_out} smaller values not shown)"), fontsize=8)
    ax.set_title(dimension, loc="left", fontsize=10)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _mean_estimate(summary: dict[str, Any], key: str) -> float:
    """The mean of both directions' weighted R@K, for ordering (undefined values last)."""
    values = [summary["weighted"][d].get(key) for d in COLORS]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else 2.0


def _bounds(summary: dict[str, Any], direction: str, key: str) -> list[float] | None:
    ci = summary.get("ci95")
    return None if not ci else ci["weighted"][direction].get(key)

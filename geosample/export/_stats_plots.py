"""The figures of ``geosample stats``: balance, labels, captions, spatial uniformity.

Drawn on :class:`matplotlib.figure.Figure` objects (never pyplot's global
state) and saved without a timestamp, so the same dataset gives the same PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from geosample._dataset import atomic_path
from geosample._gpkg import qualitative_colors
from geosample.export._content import DatasetContent

__all__ = ["write_plots"]

DPI = 110
MAX_BARS = 40
BAR_COLOR = "#4878a8"
TARGET_COLOR = "#c0392b"


def write_plots(content: DatasetContent, report: dict[str, Any], folder: Path) -> list[str]:
    """Draw every figure the report has data for into ``folder``; returns their paths relative to ``DS``."""
    folder.mkdir(parents=True, exist_ok=True)
    # The plan's report/time.png already shows samples per time bin; draw them here only without it.
    with_bins = not (content.ds / "report" / "time.png").is_file()
    figures = {"stats_balance.png": _balance(report, with_bins), "stats_spatial.png": _spatial(report)}
    if report["labels"]:
        figures["stats_labels.png"] = _labels(report, content)
    if report["captions"]:
        figures["stats_captions.png"] = _captions(report)
    for name, fig in figures.items():
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return [f"report/{name}" for name in figures]


def _whole(*axes: Any) -> None:
    """Ticks at whole numbers only: the axes count things."""
    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def _balance(report: dict[str, Any], with_bins: bool) -> Figure:
    """Sites per stratum (with the plan's targets), and samples per time bin when ``with_bins``."""
    rows = sorted(report["strata"]["per_stratum"], key=lambda r: -r["sites"])
    shown = rows[:MAX_BARS]
    fig = Figure(figsize=(11, max(3.0, 0.22 * len(shown) + 1.2) + (3.0 if with_bins else 0.0)), layout="constrained")
    if with_bins:
        top, bottom = fig.subplots(2, 1, height_ratios=[max(3.0, 0.22 * len(shown)), 3.0])
    else:
        top, bottom = fig.subplots(1, 1), None
    y = np.arange(len(shown))
    top.barh(y, [r["sites"] for r in shown], color=BAR_COLOR, label="sites")
    targets = [r["target"] if r["target"] is not None else np.nan for r in shown]
    if not np.all(np.isnan(np.asarray(targets, dtype=float))):
        top.scatter(targets, y, marker="|", s=120, color=TARGET_COLOR, label="target", zorder=3)
        top.legend(loc="lower right", fontsize=8)
    top.set_yticks(y, [r["stratum"] for r in shown], fontsize=7 if len(shown) > 20 else 9)
    top.invert_yaxis()
    more = f" (the {MAX_BARS} largest of {len(rows)})" if len(rows) > MAX_BARS else ""
    top.set_title(f"Sites per stratum{more}", fontsize=11)
    top.set_xlabel("sites")
    _whole(top.xaxis)
    if bottom is not None:
        bins = report["time_bins"]
        bottom.bar(range(len(bins)), list(bins.values()), color=BAR_COLOR)
        bottom.set_xticks(range(len(bins)), list(bins), rotation=45 if len(bins) > 8 else 0, ha="right", fontsize=8)
        bottom.set_title("Samples per time bin", fontsize=11)
        bottom.set_ylabel("samples")
        _whole(bottom.yaxis)
    return fig


def _labels(report: dict[str, Any], content: DatasetContent) -> Figure:
    """Samples per class at each level as horizontal bars, whole class names on the axis, coloured by lineage."""
    levels = report["labels"]["levels"]
    shown = {level: list(info["classes"].items())[:MAX_BARS] for level, info in levels.items()}
    heights = [max(1.6, 0.26 * len(items) + 0.9) for items in shown.values()] or [1.6]
    fig = Figure(figsize=(11, sum(heights)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(1, len(levels)), 1, height_ratios=heights))
    taxonomy = content.taxonomy
    for ax, (level, info) in zip(axes, levels.items(), strict=False):
        items = shown[level]
        colors = [_class_color(code, taxonomy, i) for i, (code, _) in enumerate(items)]
        y = np.arange(len(items))
        ax.barh(y, [c["samples"] for _, c in items], color=colors, edgecolor="#333333", linewidth=0.3)
        ax.set_yticks(y, [f"{code} {c['name']}" for code, c in items], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("samples")
        _whole(ax.xaxis)
        more = f", the {MAX_BARS} most frequent shown" if info["n_classes"] > MAX_BARS else ""
        ax.set_title(f"{level}: samples holding each class ({info['n_classes']} classes{more})", fontsize=10)
    return fig


def _class_color(code: str, taxonomy: Any, index: int) -> str:
    if taxonomy is not None and code in taxonomy:
        lineage = taxonomy.lineage(code)
        for candidate in (code, *reversed(lineage)):
            color = taxonomy[candidate].color
            if color:
                return str(color)
    return qualitative_colors(index + 1)[index]


def _captions(report: dict[str, Any]) -> Figure:
    """Words per caption, and the most frequent words."""
    captions = report["captions"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    lengths = {int(k): v for k, v in captions["words_histogram"].items()}
    left.bar(list(lengths), list(lengths.values()), width=0.9, color=BAR_COLOR)
    left.set_xlabel("words per caption")
    left.set_ylabel("captions")
    _whole(left.xaxis, left.yaxis)
    left.set_title(f"{captions['total']} captions, {captions['distinct_share']:.0%} distinct", fontsize=10)
    frequent = list(captions["frequent_words"].items())
    right.barh(range(len(frequent)), [n for _, n in frequent], color=BAR_COLOR)
    right.set_yticks(range(len(frequent)), [w for w, _ in frequent], fontsize=8)
    right.invert_yaxis()
    _whole(right.xaxis)
    right.set_title(f"Frequent words (vocabulary {captions['vocabulary']})", fontsize=10)
    return fig


def _spatial(report: dict[str, Any]) -> Figure:
    """Nearest-neighbour distances between sites, and sites per H3 cell."""
    spatial = report["spatial"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    histogram = spatial["nearest_neighbour_histogram_km"]
    if histogram["counts"]:
        edges = np.asarray(histogram["edges"])
        left.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge", color=BAR_COLOR)
    ratio = spatial["clark_evans_ratio"]
    left.set_title("Nearest-neighbour distance between sites" + (f" (Clark–Evans R {ratio:.2f})" if ratio else ""),
                   fontsize=10)  # fmt: skip
    left.set_xlabel("km (great circle)")
    left.set_ylabel("sites")
    _whole(left.yaxis)
    by_sites = {int(k): v for k, v in spatial["cells_by_sites"].items()}
    if by_sites:
        values = np.asarray(list(by_sites))
        right.bar(values, list(by_sites.values()), color=BAR_COLOR)
    right.set_xlabel(f"sites in an H3 res-{spatial['h3_res']} cell")
    right.set_ylabel("cells")
    _whole(right.xaxis, right.yaxis)
    right.set_title(f"Sites per H3 res-{spatial['h3_res']} cell ({spatial['cells']} cells)", fontsize=10)
    return fig

"""Figures of the sampling-plan report: sample map and samples per time bin.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (never pyplot's
global state) and saved as deterministic PNGs: the same input gives the same
bytes.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import shapely
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.ticker import FuncFormatter, MaxNLocator
from pyproj import Transformer

from geosample._gpkg import qualitative_colors

__all__ = ["colour_column", "plot_sample_map", "plot_time_bins"]

MAP_CRS = "EPSG:8857"  # Equal Earth (greenwich)
MAP_FIGSIZE = (12.0, 6.5)
BARS_FIGSIZE = (12.0, 5.5)
DPI = 150
MAP_AXES_RECT = (0.005, 0.02, 0.79, 0.88)  # left, bottom, width, height (figure fraction)
LEGEND_X = 0.80
OCEAN_COLOR = "#eaf4fb"
LAND_COLOR = "#dcdcdc"
LAND_EDGE_COLOR = "#a0a0a0"
OUTLINE_COLOR = "#7f8c99"
MAX_CATEGORIES = 20
MAX_LEGEND_ENTRIES = 30
MAX_MAP_VALUES = 12
"""Values of the colour column drawn in a colour of their own (the most frequent); the rest are "other"."""
OTHER_COLOR = "#3a3a3a"  # dark: "other" dots stay visible on the grey land, and no palette colour is this dark
_GREYS = ("#7f7f7f", "#c7c7c7")  # tab10/tab20's greys: too close to the land and to "other"
MIN_FOOTPRINT_PX = 3.0  # footprints are drawn once a chip is at least this many pixels wide on the map
SCALE_BAR_FRACTION = 0.2  # the scale bar's target length, as a share of the map's width
DISPLAY_TOLERANCE_DEG = 0.05  # land simplification for a world map
MIN_TOLERANCE_DEG = 0.002
# A sample set is "regional" (map zoomed in) below these lon/lat spans (degrees).
REGIONAL_MAX_LON_SPAN = 150.0
REGIONAL_MAX_LAT_SPAN = 75.0
ZOOM_MARGIN = 0.08  # fraction of the samples' projected extent
ZOOM_MIN_HALF_SIZE_M = 150_000.0
PNG_METADATA = {"Software": None}
MISSING_LABEL = "(missing)"
MAX_ANNOTATED_BARS = 80


# --------------------------------------------------------------------------- saving


def _save_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Saves ``fig`` as a deterministic PNG via a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=DPI, metadata=PNG_METADATA)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- categories


def _sorted_unique(values: pd.Series) -> list[Any]:
    """Returns the distinct non-null values of ``values`` in sorted order."""
    unique = pd.Index(values.dropna().unique())
    try:
        return list(unique.sort_values())
    except TypeError:
        return sorted(unique, key=str)


def _label(value: Any) -> str:
    """Formats one category or bin value (dates without a time of day as dates)."""
    if pd.isna(value):
        return MISSING_LABEL
    if isinstance(value, pd.Timestamp) and value == value.normalize():
        return value.strftime("%Y-%m-%d")
    return str(value)


def _labels(values: pd.Series) -> pd.Series:
    """Returns ``values`` formatted with :func:`_label`."""
    return values.map(_label).astype(object)


def colour_column(samples: pd.DataFrame, dimensions: Sequence[str] = ()) -> str:
    """The default column to colour a map by: the stratification dimension with the most values.

    Ties go to the first dimension; without dimensions in ``samples`` it is ``stratum``.
    """
    present = [d for d in dimensions if d in samples.columns]
    if not present:
        return "stratum"
    return max(present, key=lambda d: (samples[d].nunique(dropna=False), -present.index(d)))


def _color_groups(values: pd.Series, max_values: int = MAX_MAP_VALUES) -> tuple[pd.Series, list[str], str | None]:
    """Each point's legend group, the coloured values (most frequent first) and the "other" group's name.

    The ``max_values`` most frequent values keep their own colour (ties broken
    by value); the rest share one grey group named after how many values it holds.
    """
    labels = _labels(values)
    counts = labels.value_counts()
    order = sorted(counts.index, key=lambda v: (-counts[v], str(v)))
    if len(order) <= max_values:
        return labels, order, None
    kept = order[:max_values]
    other = f"other ({len(order) - len(kept)} values)"
    return labels.where(labels.isin(kept), other), kept, other


def _legend_handles(categories: Sequence[Any], colors: Sequence[str], counts: pd.Series) -> list[Line2D]:
    """Returns legend proxies labelled with counts, capped at 30 entries."""
    shown = list(zip(categories, colors, strict=True))[:MAX_LEGEND_ENTRIES]
    handles = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=6.0,
            markerfacecolor=color,
            markeredgewidth=0,
            label=_wrap(f"{cat} ({counts.get(cat, 0):,})"),
        )
        for cat, color in shown
    ]
    if len(categories) > MAX_LEGEND_ENTRIES:
        more = len(categories) - MAX_LEGEND_ENTRIES
        handles.append(Line2D([], [], linestyle="none", label=f"(+{more} more)"))
    return handles


def _marker_area(n_points: int) -> float:
    """Returns a scatter marker area (pt²) suited to ``n_points`` points."""
    if n_points < 1_000:
        return 10.0
    if n_points < 10_000:
        return 4.0
    if n_points < 100_000:
        return 1.2
    return 0.35


# --------------------------------------------------------------------------- geometry


def _world_outline(transformer: Transformer, step: float = 1.0) -> np.ndarray:
    """Returns the projected boundary of the world (densified lon/lat rectangle)."""
    lons = np.arange(-180.0, 180.0 + step / 2, step)
    lats = np.arange(-90.0, 90.0 + step / 2, step)
    ring_lon = np.concatenate([lons, np.full(lats.size, 180.0), lons[::-1], np.full(lats.size, -180.0)])
    ring_lat = np.concatenate([np.full(lons.size, -90.0), lats, np.full(lons.size, 90.0), lats[::-1]])
    x, y = transformer.transform(ring_lon, ring_lat)
    return np.column_stack([x, y])


def _polygon_path(geom: shapely.Geometry) -> MplPath | None:
    """Converts a (multi)polygon to one compound matplotlib path (holes included)."""
    rings = []
    for part in shapely.get_parts(geom):
        rings.append(shapely.get_exterior_ring(part))
        rings.extend(shapely.get_interior_ring(part, i) for i in range(shapely.get_num_interior_rings(part)))
    vertices, codes = [], []
    for ring in rings:
        coords = shapely.get_coordinates(ring)
        if len(coords) < 3:
            continue
        ring_codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
        ring_codes[0] = MplPath.MOVETO
        ring_codes[-1] = MplPath.CLOSEPOLY
        vertices.append(coords)
        codes.append(ring_codes)
    if not vertices:
        return None
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _land_geometries(land: gpd.GeoSeries | gpd.GeoDataFrame) -> np.ndarray:
    """Returns the land polygons in lon/lat (EPSG:4326) as a shapely array."""
    series = land.geometry if isinstance(land, gpd.GeoDataFrame) else land
    if series.crs is not None and not series.crs.equals("EPSG:4326"):
        series = series.to_crs("EPSG:4326")
    geoms = np.asarray(series.values, dtype=object)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    polygonal = np.isin(shapely.get_type_id(geoms), [3, 6])  # Polygon, MultiPolygon
    return geoms[keep & polygonal]


def _prepare_land(
    geoms: np.ndarray,
    transformer: Transformer,
    lonlat_box: tuple[float, float, float, float] | None,
) -> list[MplPath]:
    """Selects, simplifies and projects land polygons into matplotlib paths.

    Args:
        geoms: Land polygons in lon/lat.
        transformer: lon/lat to map CRS transformer.
        lonlat_box: Only land intersecting this (xmin, ymin, xmax, ymax) box is
            drawn; ``None`` draws everything.

    Returns:
        One path per land polygon.
    """
    tolerance = DISPLAY_TOLERANCE_DEG
    if lonlat_box is not None:
        geoms = geoms[shapely.intersects(geoms, shapely.box(*lonlat_box))]
        span = max(lonlat_box[2] - lonlat_box[0], lonlat_box[3] - lonlat_box[1])
        tolerance = float(np.clip(span / 600.0, MIN_TOLERANCE_DEG, DISPLAY_TOLERANCE_DEG))
    simple = shapely.simplify(geoms, tolerance, preserve_topology=False)
    simple = simple[~shapely.is_empty(simple)]
    projected = shapely.transform(simple, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    paths = (_polygon_path(g) for g in projected)
    return [p for p in paths if p is not None]


def _is_regional(lon: np.ndarray, lat: np.ndarray) -> bool:
    """Tells whether the (finite) coordinates cover a region small enough to zoom in on."""
    if lon.size == 0:
        return False
    return bool(np.ptp(lon) <= REGIONAL_MAX_LON_SPAN and np.ptp(lat) <= REGIONAL_MAX_LAT_SPAN)


def _zoom_limits(x: np.ndarray, y: np.ndarray, aspect: float) -> tuple[float, float, float, float]:
    """Returns (xmin, xmax, ymin, ymax) around the points, matching ``aspect`` (w/h)."""
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half_w = max(np.ptp(x) * (0.5 + ZOOM_MARGIN), ZOOM_MIN_HALF_SIZE_M)
    half_h = max(np.ptp(y) * (0.5 + ZOOM_MARGIN), ZOOM_MIN_HALF_SIZE_M)
    if half_w / half_h < aspect:
        half_w = half_h * aspect
    else:
        half_h = half_w / aspect
    return cx - half_w, cx + half_w, cy - half_h, cy + half_h


def _lonlat_box(
    limits: tuple[float, float, float, float], transformer: Transformer
) -> tuple[float, float, float, float]:
    """Returns the lon/lat bounding box of a projected view (with a 2° margin)."""
    xmin, xmax, ymin, ymax = limits
    t = np.linspace(0.0, 1.0, 101)
    xs = np.concatenate(
        [xmin + (xmax - xmin) * t, np.full(t.size, xmax), xmax - (xmax - xmin) * t, np.full(t.size, xmin)]
    )
    ys = np.concatenate(
        [np.full(t.size, ymin), ymin + (ymax - ymin) * t, np.full(t.size, ymax), ymax - (ymax - ymin) * t]
    )
    lon, lat = transformer.transform(xs, ys, direction="INVERSE")
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    if not ok.any():
        return (-180.0, -90.0, 180.0, 90.0)
    margin = 2.0
    return (
        max(float(lon[ok].min()) - margin, -180.0),
        max(float(lat[ok].min()) - margin, -90.0),
        min(float(lon[ok].max()) + margin, 180.0),
        min(float(lat[ok].max()) + margin, 90.0),
    )


# --------------------------------------------------------------------------- sample map


def _map_axes(fig: Figure) -> Any:
    """Adds the fixed-position, frameless, equal-aspect map axes to ``fig``."""
    ax = fig.add_axes(MAP_AXES_RECT)
    ax.set_axis_off()
    ax.set_aspect("equal", adjustable="box")
    return ax


def _map_view(
    lon: np.ndarray, lat: np.ndarray, outline: np.ndarray, transformer: Transformer
) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float] | None]:
    """Returns the axes limits and, when zoomed in, the lon/lat box of land to draw."""
    finite = np.isfinite(lon) & np.isfinite(lat)
    if _is_regional(lon[finite], lat[finite]):
        x, y = transformer.transform(lon[finite], lat[finite])
        aspect = (MAP_FIGSIZE[0] * MAP_AXES_RECT[2]) / (MAP_FIGSIZE[1] * MAP_AXES_RECT[3])
        limits = _zoom_limits(x, y, aspect)
        return limits, _lonlat_box(limits, transformer)
    pad = 0.01 * np.ptp(outline[:, 0])
    xmin, ymin = outline.min(axis=0) - pad
    xmax, ymax = outline.max(axis=0) + pad
    return (float(xmin), float(xmax), float(ymin), float(ymax)), None


def _draw_background(ax: Any, outline: np.ndarray, land_paths: list[MplPath]) -> None:
    """Draws the ocean (the projection's outline) and the land polygons."""
    ocean = PathPatch(
        MplPath(outline, closed=True), facecolor=OCEAN_COLOR, edgecolor=OUTLINE_COLOR, linewidth=0.8, zorder=0
    )
    ax.add_patch(ocean)
    land = PathCollection(land_paths, facecolors=LAND_COLOR, edgecolors=LAND_EDGE_COLOR, linewidths=0.3, zorder=1)
    ax.add_collection(land)


def _draw_samples(
    fig: Figure, ax: Any, samples: pd.DataFrame, x: np.ndarray, y: np.ndarray, column: str, footprints: list | None
) -> None:
    """Draws the samples coloured by ``column`` (footprints when given, else points) and adds the legend."""
    groups, kept, other = _color_groups(samples[column])
    palette = [c for c in qualitative_colors(len(kept) + 2) if c not in _GREYS][: len(kept)]
    colors = dict(zip(kept, palette, strict=True))
    if other is not None:
        colors[other] = OTHER_COLOR
    point_colors = groups.map(colors).to_numpy()
    if footprints is not None:
        paths = [_polygon_path(g) for g in footprints]
        keep = [i for i, p in enumerate(paths) if p is not None]
        ax.add_collection(PathCollection(
            [paths[i] for i in keep], facecolors=[mcolors.to_rgba(point_colors[i], 0.45) for i in keep],
            edgecolors=[point_colors[i] for i in keep], linewidths=0.8, zorder=2,
        ))  # fmt: skip
        ax.scatter(x, y, s=2.0, c=point_colors, linewidths=0, zorder=3)
    else:
        ax.scatter(x, y, s=_marker_area(len(samples)), c=point_colors, linewidths=0, zorder=2)
    order = [*kept, *([other] if other is not None else [])]
    handles = _legend_handles(order, [colors[v] for v in order], groups.value_counts())
    fig.legend(
        handles=handles,
        title=f"{column} (sites)" if other is None else f"{column}: the {len(kept)} most frequent",
        loc="center left",
        bbox_to_anchor=(LEGEND_X, 0.5),
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        ncols=1,
    )


def _map_title(samples: pd.DataFrame, column: str) -> str:
    """What the map shows, counted from the rows drawn: sites, strata, and the colour column."""
    n_sites = samples["site_id"].nunique() if "site_id" in samples else len(samples)
    parts = [f"{samples['stratum'].nunique():,} strata"] if "stratum" in samples else []
    same = "stratum" in samples and samples[column].astype(str).equals(samples["stratum"].astype(str))
    if column != "stratum" and not same:
        parts.append(f"{samples[column].nunique():,} {column} values")
    where = f" in {', '.join(parts)}" if parts else ""
    return f"{n_sites:,} sites{where}; coloured by {column}"


def _wrap(label: str, width: int = 26) -> str:
    """A legend label on several lines, broken after underscores or spaces, never cut."""
    lines, line = [], ""
    for piece in re.findall(r"[^_ ]+[_ ]?", label) or [label]:
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return "\n".join([*lines, line])


def _nice_length(metres: float) -> float:
    """The largest 1, 2 or 5 × 10^k metres not above ``metres``."""
    exponent = np.floor(np.log10(max(metres, 1e-9)))
    for step in (5.0, 2.0, 1.0):
        if step * 10**exponent <= metres:
            return float(step * 10**exponent)
    return float(10 ** (exponent - 1) * 5)


def _draw_scale_bar(ax: Any, limits: tuple[float, float, float, float], transformer: Transformer, world: bool) -> None:
    """A scale bar in the lower left, measured on the ellipsoid along the map's x axis at the bar's latitude."""
    from pyproj import Geod

    xmin, xmax, ymin, ymax = limits
    x0, y0 = xmin + 0.04 * (xmax - xmin), ymin + 0.06 * (ymax - ymin)
    # Equal Earth's scale varies: on a world map measure along the equator (and say so), else where the bar is.
    x_at, y_at = transformer.transform(0.0, 0.0) if world else (x0, y0)
    span = SCALE_BAR_FRACTION * (xmax - xmin)
    lon, lat = transformer.transform([x_at, x_at + span], [y_at, y_at], direction="INVERSE")
    metres = Geod(ellps="WGS84").inv(lon[0], lat[0], lon[1], lat[1])[2]
    length = _nice_length(metres)
    dx = span * length / metres
    ax.plot([x0, x0 + dx], [y0, y0], color="#222222", linewidth=2.5, solid_capstyle="butt", zorder=5)
    for tick in (x0, x0 + dx):
        ax.plot([tick, tick], [y0, y0 + 0.012 * (ymax - ymin)], color="#222222", linewidth=1.2, zorder=5)
    text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    if world:
        text += " at the equator"
    ax.annotate(text, (x0 + dx / 2, y0), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                fontsize=8, zorder=5)  # fmt: skip


def _projected_footprints(samples: pd.DataFrame, transformer: Transformer) -> list | None:
    if "geometry" not in samples:
        return None
    geoms = np.asarray(samples["geometry"], dtype=object)
    return list(shapely.transform(geoms, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))))


def plot_sample_map(
    samples: pd.DataFrame,
    land: gpd.GeoSeries | gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    *,
    column: str | None = None,
    dimensions: Sequence[str] = (),
    title: str | None = None,
) -> Figure:
    """Draws the samples on an Equal Earth world map and saves it as a PNG.

    Land is light grey over a very light blue ocean bounded by the projection's
    outline. Samples are coloured by ``column`` (default: the dimension of
    ``dimensions`` with the most values, see :func:`colour_column`): its
    12 most frequent values each have a colour of their own and a legend
    entry with their count, the rest are grey, "other". When the samples
    cover a small region the map zooms to them and, once a chip is a few
    pixels wide, draws their footprints instead of dots. A scale bar is
    measured on the ellipsoid (at the equator on a world map, where Equal
    Earth's scale varies). The title counts what is drawn.

    Args:
        samples: Samples with ``lon`` and ``lat`` columns (degrees, WGS 84) and
            optionally their ``geometry`` (footprints, lon/lat).
        land: Land polygons (any CRS; lon/lat if it has none). Detailed
            geometries are simplified for display.
        path: Output PNG file.
        column: Categorical column to colour by.
        dimensions: The stratification dimensions, to pick the default ``column``.
        title: Figure title; defaults to the counts of sites, strata and values shown.

    Returns:
        The figure (its single axes holds the map extent in EPSG:8857 metres).
    """
    column = column or colour_column(samples, dimensions)
    transformer = Transformer.from_crs("EPSG:4326", MAP_CRS, always_xy=True)
    lon = samples["lon"].to_numpy(dtype=float)
    lat = samples["lat"].to_numpy(dtype=float)
    x, y = transformer.transform(lon, lat)
    fig = Figure(figsize=MAP_FIGSIZE, dpi=DPI)
    ax = _map_axes(fig)
    outline = _world_outline(transformer)
    limits, lonlat_box = _map_view(lon, lat, outline, transformer)
    _draw_background(ax, outline, _prepare_land(_land_geometries(land), transformer, lonlat_box))
    footprints = None
    if lonlat_box is not None and "chip_size_m" in samples and len(samples):
        width_px = MAP_FIGSIZE[0] * MAP_AXES_RECT[2] * DPI
        chip_px = float(samples["chip_size_m"].max()) * width_px / (limits[1] - limits[0])
        if chip_px >= MIN_FOOTPRINT_PX:
            footprints = _projected_footprints(samples, transformer)
    _draw_samples(fig, ax, samples, x, y, column, footprints)
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    _draw_scale_bar(ax, limits, transformer, world=lonlat_box is None)
    fig.suptitle(title if title is not None else _map_title(samples, column), fontsize=13)
    _save_png(fig, path)
    return fig


# --------------------------------------------------------------------------- time bins


def _bin_counts(samples: pd.DataFrame, bin_column: str, hue_column: str | None) -> pd.DataFrame:
    """Returns counts with one row per time bin (sorted) and one column per hue."""
    bins = samples[bin_column]
    order = [_label(b) for b in _sorted_unique(bins)]
    if bins.isna().any():
        order.append(MISSING_LABEL)
    if hue_column is None:
        hue = pd.Series("count", index=samples.index, dtype=object)
        hue_order = ["count"]
    else:
        hue = _labels(samples[hue_column])
        hue_order = _sorted_unique(hue)
    counts = pd.crosstab(_labels(bins), hue)
    return counts.reindex(index=order, columns=hue_order, fill_value=0)


def _thousands(value: float, _pos: int) -> str:
    """Formats an axis tick as an integer with thousands separators."""
    return f"{value:,.0f}"


def _style_bin_ticks(ax: Any, labels: Sequence[str]) -> None:
    """Sets the bin tick labels, rotated and thinned out when there are many."""
    n = len(labels)
    step = max(1, int(np.ceil(n / 80)))
    positions = np.arange(0, n, step)
    ax.set_xticks(positions)
    longest = max((len(s) for s in labels), default=0)
    rotation = 0 if n * max(longest, 1) <= 120 else 90
    ax.set_xticklabels([labels[i] for i in positions], rotation=rotation, fontsize=8 if n > 24 else 9)
    ax.set_xlim(-0.6, n - 0.4)


def _annotate_totals(ax: Any, totals: np.ndarray) -> None:
    """Writes each bar's total above it when there are few enough bars."""
    n = len(totals)
    if n > MAX_ANNOTATED_BARS:
        return
    fontsize, rotation = (8, 0) if n <= 24 else (6, 90)
    for i, total in enumerate(totals):
        ax.annotate(
            f"{int(total):,}",
            (i, total),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=fontsize,
            rotation=rotation,
        )


def plot_time_bins(
    samples: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    bin_column: str = "time_bin",
    hue_column: str | None = None,
    title: str | None = None,
    order: list[str] | None = None,
) -> Figure:
    """Draws a bar chart of the number of samples per time bin and saves it as a PNG.

    Bars are stacked by ``hue_column`` when it has at most 20 distinct values.

    Args:
        samples: Samples with a ``bin_column`` column.
        path: Output PNG file.
        bin_column: Time bin of each sample.
        hue_column: Optional column to stack the bars by.
        title: Figure title; defaults to one naming the bin column and the count.
        order: Bins in display order (e.g. chronological); default sorted.

    Returns:
        The figure.
    """
    stack = hue_column is not None and samples[hue_column].nunique(dropna=False) <= MAX_CATEGORIES
    counts = _bin_counts(samples, bin_column, hue_column if stack else None)
    if order is not None:
        counts = counts.reindex([b for b in order if b in counts.index] + [b for b in counts.index if b not in order])
    fig = Figure(figsize=BARS_FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(counts))
    bottom = np.zeros(len(counts))
    width = 0.8 if len(counts) <= 100 else 1.0
    colors = qualitative_colors(counts.shape[1]) if stack else ["#4c72b0"]
    for name, color in zip(counts.columns, colors, strict=True):
        values = counts[name].to_numpy(dtype=float)
        ax.bar(positions, values, bottom=bottom, width=width, color=color, label=str(name), linewidth=0)
        bottom += values
    _annotate_totals(ax, bottom)
    _style_bin_ticks(ax, list(counts.index))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylim(0, max(bottom.max(initial=0.0) * 1.1, 1.0))
    ax.set_xlabel(bin_column)
    ax.set_ylabel("samples")
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if stack:
        handles, labels = ax.get_legend_handles_labels()  # reversed: matches the stack
        ax.legend(
            handles[::-1],
            labels[::-1],
            title=hue_column,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            title_fontsize=8,
            frameon=False,
        )
    default = f"Samples per {bin_column} ({len(samples):,} samples, {len(counts)} bins)"
    ax.set_title(title if title is not None else default)
    _save_png(fig, path)
    return fig

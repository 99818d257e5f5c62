"""Finding the best STAC items for every sample with few searches.

Samples are grouped by their H3 parent cell (resolution 3 by default, ~70 km
across) and time bin; each group is one search (bbox of its chip footprints,
the span of its time windows), paged through, and its items are matched to
each sample locally. An item matches a sample when it intersects the chip's
footprint, falls in the sample's window and passes ``max_cloud``. Ranking puts
items that cover the whole chip first, then the least cloudy (``sort="cloud"``)
or the one nearest the window's middle (``sort="time"``); the item id breaks
ties, so the choice is deterministic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import h3
import numpy as np
import pandas as pd
import pystac
import shapely

from geosample.stac.client import StacSource, check_collections, open_source

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["Candidate", "SearchGroup", "find_items", "group_samples", "rank_items", "search_group"]

GROUP_RES = 3
"""H3 resolution of the cells that group samples into one search (edge ~60 km)."""

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An item matched to one sample."""

    item: pystac.Item
    """The STAC item."""
    covers: bool
    """Whether its geometry covers the whole chip footprint."""
    cloud: float | None
    """``eo:cloud_cover``, if the item has one."""
    when: dt.datetime
    """Its datetime (the middle of ``start_datetime``/``end_datetime`` without one)."""


@dataclasses.dataclass(frozen=True)
class SearchGroup:
    """Samples searched together: nearby, in one time bin."""

    key: tuple[str, str]
    """(H3 parent cell, time bin)."""
    rows: np.ndarray
    """Positions of the samples in the table."""
    geometry: dict[str, Any]
    """GeoJSON to search: the bbox of the footprints, or their boxes where they cross the antimeridian."""
    start: dt.datetime
    """Earliest window start of the group."""
    end: dt.datetime
    """Latest window end of the group."""


def h3_parents(cells: Sequence[str], res: int) -> np.ndarray:
    """Hex ids of each cell's ancestor at ``res`` (the cell itself where it is coarser)."""
    ints = np.array([int(c, 16) for c in cells], dtype=np.uint64)
    own = ((ints & _RES_MASK) >> _RES_SHIFT).astype(np.int64)
    unused = np.uint64((1 << (3 * (15 - res))) - 1)
    parents = (ints & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT) | unused
    parents = np.where(own > res, parents, ints)
    return np.array([f"{int(p):x}" for p in parents], dtype=object)


def _cells(samples: pd.DataFrame) -> list[str]:
    if "h3" in samples.columns:
        return [str(c) for c in samples["h3"]]
    return [h3.latlng_to_cell(float(la), float(lo), 9) for lo, la in zip(samples["lon"], samples["lat"], strict=True)]


def group_samples(samples: gpd.GeoDataFrame, res: int = GROUP_RES) -> list[SearchGroup]:
    """Group samples by H3 parent cell at ``res`` and time bin, one search each, in a stable order."""
    if len(samples) == 0:
        return []
    parents = h3_parents(_cells(samples), res)
    bins = samples["time_bin"].astype(str).to_numpy() if "time_bin" in samples.columns else None
    if bins is None:
        bins = (samples["start_datetime"].astype(str) + "/" + samples["end_datetime"].astype(str)).to_numpy()
    keys = pd.DataFrame({"parent": parents, "bin": bins})
    starts = pd.to_datetime(samples["start_datetime"], utc=True)
    ends = pd.to_datetime(samples["end_datetime"], utc=True)
    footprints = np.asarray(samples.geometry.values)
    groups = []
    for (parent, tbin), rows in sorted(keys.groupby(["parent", "bin"], sort=True).indices.items()):
        rows = np.sort(rows)
        groups.append(
            SearchGroup(
                (str(parent), str(tbin)),
                rows,
                _search_geometry(footprints[rows]),
                starts.iloc[rows].min().to_pydatetime(),
                ends.iloc[rows].max().to_pydatetime(),
            )
        )
    return groups


def _search_geometry(footprints: np.ndarray) -> dict[str, Any]:
    parts = shapely.get_parts(footprints)
    west, south, east, north = shapely.total_bounds(parts)
    if east - west <= 180.0:
        return shapely.geometry.mapping(shapely.box(west, south, east, north))
    # Footprints split at the antimeridian: search each part's box, not a band around the globe.
    boxes = shapely.union_all(shapely.envelope(parts))
    return shapely.geometry.mapping(boxes)


def _item_range(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    """The item's time span: its ``start_datetime``/``end_datetime`` if it has them, else its datetime."""
    start, end = item.common_metadata.start_datetime, item.common_metadata.end_datetime
    when = item.datetime
    first = start or when or end
    last = end or when or start
    if first is None or last is None:
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return epoch, epoch
    return first, last


def _cloud(item: pystac.Item) -> float | None:
    value = item.properties.get("eo:cloud_cover")
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def rank_items(
    footprint: shapely.Geometry,
    start: dt.datetime,
    end: dt.datetime,
    items: Sequence[pystac.Item],
    *,
    max_cloud: float | None = None,
    sort: Literal["cloud", "time"] = "cloud",
    geometries: Sequence[shapely.Geometry] | None = None,
) -> list[Candidate]:
    """The items that match one sample, best first (see the module docstring for the order)."""
    if geometries is None:
        geometries = [shapely.geometry.shape(i.geometry) if i.geometry else None for i in items]
    middle = start + (end - start) / 2
    out = []
    for item, geom in zip(items, geometries, strict=True):
        if geom is None or not shapely.intersects(geom, footprint):
            continue
        if shapely.area(shapely.intersection(geom, footprint)) <= 0.0:
            continue
        first, last = _item_range(item)
        if last < start or first > end:
            continue
        when = item.datetime or first + (last - first) / 2
        cloud = _cloud(item)
        if max_cloud is not None and cloud is not None and cloud > max_cloud:
            continue
        out.append(Candidate(item, bool(shapely.covers(geom, footprint)), cloud, when))

    def key(c: Candidate) -> tuple[Any, ...]:
        cloud = c.cloud if c.cloud is not None and math.isfinite(c.cloud) else math.inf
        gap = abs((c.when - middle).total_seconds())
        return (not c.covers, cloud, gap, c.item.id) if sort == "cloud" else (not c.covers, gap, cloud, c.item.id)

    return sorted(out, key=key)


def search_group(
    source: StacSource,
    collection: str,
    samples: gpd.GeoDataFrame,
    group: SearchGroup,
    *,
    max_cloud: float | None = None,
    sort: Literal["cloud", "time"] = "cloud",
) -> dict[str, list[Candidate]]:
    """One search for a group, and the ranked candidates of each of its samples."""
    items = source.search(collection, group.geometry, group.start, group.end)
    geometries = [shapely.geometry.shape(i.geometry) if i.geometry else None for i in items]
    shapely.prepare([g for g in geometries if g is not None])
    sub = samples.iloc[group.rows]
    starts = pd.to_datetime(sub["start_datetime"], utc=True)
    ends = pd.to_datetime(sub["end_datetime"], utc=True)
    out = {}
    for sample_id, footprint, start, end in zip(sub["sample_id"], sub.geometry.values, starts, ends, strict=True):
        out[str(sample_id)] = rank_items(
            footprint, start.to_pydatetime(), end.to_pydatetime(), items, max_cloud=max_cloud, sort=sort,
            geometries=geometries,
        )  # fmt: skip
    return out


def iter_groups(
    source: StacSource,
    collection: str,
    samples: gpd.GeoDataFrame,
    *,
    max_cloud: float | None = None,
    sort: Literal["cloud", "time"] = "cloud",
    group_res: int = GROUP_RES,
) -> Iterator[tuple[SearchGroup, dict[str, list[Candidate]]]]:
    """Search group after group, yielding each group with its samples' candidates."""
    for group in group_samples(samples, group_res):
        yield group, search_group(source, collection, samples, group, max_cloud=max_cloud, sort=sort)


def find_items(
    stac: str | StacSource,
    collection: str,
    samples: gpd.GeoDataFrame,
    *,
    max_cloud: float | None = None,
    sort: Literal["cloud", "time"] = "cloud",
    group_res: int = GROUP_RES,
) -> dict[str, list[pystac.Item]]:
    """The matching items of every sample, best first; one search per group of nearby samples.

    Args:
        stac: A ``--stac`` value (API URL, catalog.json, stac-geoparquet) or an open source.
        collection: The collection to search.
        samples: Rows of ``plan.parquet`` (``sample_id``, ``h3`` or ``lon``/``lat``,
            ``start_datetime``, ``end_datetime``, ``time_bin``, footprint ``geometry``).
        max_cloud: Drop items whose ``eo:cloud_cover`` exceeds this percentage.
        sort: ``cloud`` or ``time`` (see the module docstring).
        group_res: H3 resolution of the grouping cells.

    Returns:
        ``sample_id`` → items (an empty list where nothing matched).

    Raises:
        StacError: If the source cannot be opened or a search fails after its retries.
        SourceError: If the collection is not in the source.
    """
    source = open_source(stac) if isinstance(stac, str) else stac
    check_collections(source, [collection])
    out: dict[str, list[pystac.Item]] = {str(s): [] for s in samples["sample_id"]}
    for _, matches in iter_groups(source, collection, samples, max_cloud=max_cloud, sort=sort, group_res=group_res):
        for sample_id, candidates in matches.items():
            out[sample_id] = [c.item for c in candidates]
    return out


def mosaic_items(footprint: shapely.Geometry, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates to fill a chip: the best alone if it covers it, else best-first until the union does.

    Items that add no area to the union are skipped; if the union never covers
    the chip, every item that added area is kept.
    """
    if not candidates:
        return []
    if candidates[0].covers:
        return [candidates[0]]
    chosen: list[Candidate] = []
    covered = shapely.Polygon()
    for cand in candidates:
        geom = shapely.intersection(shapely.geometry.shape(cand.item.geometry), footprint)
        if shapely.area(shapely.difference(geom, covered)) <= 1e-12 * max(shapely.area(footprint), 1e-30):
            continue
        chosen.append(cand)
        covered = shapely.union(covered, geom)
        if shapely.covers(covered, footprint):
            break
    return chosen

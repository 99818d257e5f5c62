"""What the embedded MODIS land-cover map shows around a site: the facts of a caption's "neighbourhood".

The embedded MODIS MCD12C1 2019 layer has 0.05° cells (about 5.6 km north to
south), far coarser than a 2.56 km chip, so it cannot say what covers the chip;
it can say what covers the land around it. For each site this module reads the
cells around the chip centre and gives (:class:`Neighbourhood`):

- ``near``: the share of each class among the cells whose centres lie within
  :func:`near_radius_km` of the site (a square window; about 12 km for a 2.56 km
  chip), and the class holding most cells in each of the eight compass sectors
  of that window (the layout of the surroundings);
- ``wide``: the same shares within four times that radius (about 50 km);
- ``nearest``: for each class met within :data:`SEARCH_KM` but not in the
  cell(s) under the chip, the distance to the nearest edge of one of its cells
  and the compass direction to it ("open water begins about 25 km to the west").

Distances are planar on the local tangent plane (east-west cell width shrinks
with the cosine of the latitude), fine at these ranges; rows beyond the poles
are cut and columns wrap across the antimeridian. Cells without data (255)
are left out. Everything is computed from the raster, never from the labels,
so a caption's surroundings come from one documented map whatever labelled the
chip.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from geosample import layers
from geosample.captions.gazetteer import COMPASS

CELL_DEG = 0.05
"""Cell size of the embedded MODIS layer."""
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON = 111.320
NEAR_CELLS = 2
"""The near window reaches this many cells (of about 5.6 km) beyond the chip's edge."""
WIDE_FACTOR = 4
"""The wide window's radius, in near radii."""
SEARCH_KM = 150.0
"""Farthest distance at which the nearest cell of another class is looked for."""
SOURCE = "MODIS MCD12C1 2019 (IGBP, 0.05°)"
"""The map, as captions and facts name it."""
NODATA = 255


@dataclasses.dataclass(frozen=True)
class NearestClass:
    """The nearest cell of a class not under the chip."""

    value: int
    """IGBP raster value."""
    distance_km: float
    """To the nearest point of the cell."""
    direction: str
    """Compass direction (of eight) from the site to that point."""


@dataclasses.dataclass(frozen=True)
class Neighbourhood:
    """The land cover around one site, from the embedded MODIS map (IGBP raster values)."""

    near_km: float
    """Radius (half the side) of the near window."""
    wide_km: float
    near: dict[int, float]
    """Value -> share of the near window's cells, largest first."""
    wide: dict[int, float]
    sectors: dict[str, int]
    """Compass direction -> the value holding most cells in that sector of the near window (ties: none)."""
    under: tuple[int, ...]
    """Values of the cells under the chip, largest overlap first."""
    nearest: tuple[NearestClass, ...]
    """Classes met within :data:`SEARCH_KM` that are not under the chip, nearest first."""

    @property
    def values(self) -> set[int]:
        """Every value these facts name."""
        return {*self.near, *self.wide, *self.sectors.values(), *self.under, *(n.value for n in self.nearest)}


@functools.cache
def _grid() -> np.ndarray:
    """The whole embedded MODIS raster (3600 × 7200 uint8, 26 MB), read once."""
    import rasterio

    with rasterio.open(layers.layer_path("modis_igbp_2019_0p05deg.tif")) as src:
        return src.read(1)


def near_radius_km(chip_size_m: float) -> float:
    """Radius of the near window: the chip's half side plus :data:`NEAR_CELLS` cells of about 5.5 km."""
    return chip_size_m / 2000.0 + NEAR_CELLS * CELL_DEG * KM_PER_DEG_LAT


def neighbourhood(lon: float, lat: float, chip_size_m: float) -> Neighbourhood:
    """The :class:`Neighbourhood` of one site."""
    grid = _grid()
    height, width = grid.shape
    near_km = near_radius_km(chip_size_m)
    wide_km = WIDE_FACTOR * near_km
    reach_km = max(SEARCH_KM, wide_km)
    cell_y = CELL_DEG * KM_PER_DEG_LAT
    cos_lat = max(math.cos(math.radians(lat)), 1e-3)
    cell_x = CELL_DEG * KM_PER_DEG_LON * cos_lat
    row0 = int(np.floor((90.0 - lat) / CELL_DEG))
    col0 = int(np.floor((lon + 180.0) / CELL_DEG))
    n_rows = int(np.ceil(reach_km / cell_y)) + 1
    n_cols = min(int(np.ceil(reach_km / cell_x)) + 1, width // 2 - 1)
    rows = np.arange(row0 - n_rows, row0 + n_rows + 1)
    rows = rows[(rows >= 0) & (rows < height)]
    cols = np.arange(col0 - n_cols, col0 + n_cols + 1)
    values = grid[np.ix_(rows, cols % width)]
    # Offsets (km) of cell centres from the site, east and north.
    centre_lat = 90.0 - (rows + 0.5) * CELL_DEG
    centre_lon = -180.0 + (cols + 0.5) * CELL_DEG
    dy = ((centre_lat - lat) * KM_PER_DEG_LAT)[:, None] * np.ones((1, cols.size))
    dx = np.ones((rows.size, 1)) * ((centre_lon - lon) * KM_PER_DEG_LON * cos_lat)[None, :]
    valid = values != NODATA
    near = valid & (np.abs(dx) <= near_km) & (np.abs(dy) <= near_km)
    wide = valid & (np.abs(dx) <= wide_km) & (np.abs(dy) <= wide_km)
    # Gap (km) from the site to the nearest point of each cell, and from the chip to the cell.
    gap_x, gap_y = np.maximum(np.abs(dx) - cell_x / 2, 0.0), np.maximum(np.abs(dy) - cell_y / 2, 0.0)
    half = chip_size_m / 2000.0
    under = valid & (np.abs(dx) - cell_x / 2 < half) & (np.abs(dy) - cell_y / 2 < half)
    under_overlap = (np.minimum(np.abs(dx) + cell_x / 2, half) - np.maximum(np.abs(dx) - cell_x / 2, -half)) * (
        np.minimum(np.abs(dy) + cell_y / 2, half) - np.maximum(np.abs(dy) - cell_y / 2, -half)
    )
    under_values: dict[int, float] = {}
    for v, area in zip(values[under].tolist(), under_overlap[under].tolist(), strict=True):
        under_values[v] = under_values.get(v, 0.0) + area
    under_sorted = tuple(v for v, _ in sorted(under_values.items(), key=lambda kv: (-kv[1], kv[0])))
    return Neighbourhood(
        near_km=near_km,
        wide_km=wide_km,
        near=_shares(values[near]),
        wide=_shares(values[wide]),
        sectors=_sectors(values, dx, dy, near & ~under),
        under=under_sorted,
        nearest=_nearest(values, valid, dx, dy, gap_x, gap_y, set(under_sorted), reach_km),
    )


def _shares(values: np.ndarray) -> dict[int, float]:
    if values.size == 0:
        return {}
    counts = np.bincount(values.astype(np.int64), minlength=256)
    found = np.flatnonzero(counts)
    shares = {int(v): float(counts[v]) / values.size for v in found}
    return dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])))


def _sectors(values: np.ndarray, dx: np.ndarray, dy: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    """Compass sector -> the value with most cells there (a tie leaves the sector out)."""
    heading = np.degrees(np.arctan2(dx, dy)) % 360.0
    sector = (np.floor((heading + 22.5) / 45.0).astype(np.int64)) % 8
    out: dict[str, int] = {}
    for k, name in enumerate(COMPASS):
        here = values[mask & (sector == k)]
        if here.size == 0:
            continue
        counts = np.bincount(here.astype(np.int64), minlength=256)
        top = np.flatnonzero(counts == counts.max())
        if top.size == 1:
            out[name] = int(top[0])
    return out


def _nearest(
    values: np.ndarray,
    valid: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    gap_x: np.ndarray,
    gap_y: np.ndarray,
    under: set[int],
    reach_km: float,
) -> tuple[NearestClass, ...]:
    distance = np.hypot(gap_x, gap_y)
    found = []
    for v in np.unique(values[valid]).tolist():
        if v in under:
            continue
        mask = valid & (values == v) & (distance <= reach_km)
        if not mask.any():
            continue
        flat = np.flatnonzero(mask)
        best = flat[np.argmin(distance.ravel()[flat])]
        # Direction to the nearest point of that cell (its centre when the site lies in its row or column band).
        px = np.sign(dx.ravel()[best]) * gap_x.ravel()[best]
        py = np.sign(dy.ravel()[best]) * gap_y.ravel()[best]
        if px == 0 and py == 0:
            px, py = dx.ravel()[best], dy.ravel()[best]
        heading = math.degrees(math.atan2(px, py)) % 360.0
        found.append(NearestClass(int(v), float(distance.ravel()[best]), COMPASS[int((heading + 22.5) // 45) % 8]))
    return tuple(sorted(found, key=lambda n: (n.distance_km, n.value)))

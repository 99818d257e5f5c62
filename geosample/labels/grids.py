"""The label grid of each chip: the chip's own square in its local CRS, at the label resolution.

A chip is ``chip_size_m`` on a side, centred on the sample's (lon, lat)
projected to its ``epsg`` (see ``geosample.sampling._geometry``). Fractions are
counted on a grid of square pixels covering exactly that square, so they
describe the same ground as the image chip.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from rasterio.transform import Affine

from geosample.sampling._geometry import _to_crs

MIN_PIXELS = 32
"""A label grid has at least this many pixels on a side, so quadrants are meaningful for coarse sources."""
MAX_PIXELS = 2048
"""And at most this many, which bounds the memory and time of one chip."""


@dataclasses.dataclass(frozen=True)
class LabelGrid:
    """The pixel grid of one chip: CRS, upper-left corner, pixel size and side in pixels."""

    epsg: int
    x0: float
    y0: float
    res: float
    size: int
    index: int = -1
    """Row of the sample in the plan (sources with per-sample inputs, such as STAC items, use it)."""

    @property
    def transform(self) -> Affine:
        """The grid's affine transform (north up)."""
        return Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        side = self.res * self.size
        return (self.x0, self.y0 - side, self.x0 + side, self.y0)


def label_resolution(chip_size_m: float, source_res_m: float | None) -> tuple[float, int]:
    """The label pixel size and pixels per side for one chip size.

    The source's own resolution when it gives between ``MIN_PIXELS`` and
    ``MAX_PIXELS`` pixels across the chip; otherwise the nearest bound. The
    pixel size divides the chip side exactly, so the grid covers the chip.
    """
    if source_res_m is None or source_res_m <= 0:
        pixels = 256
    else:
        pixels = round(chip_size_m / source_res_m)
    pixels = int(min(max(pixels, MIN_PIXELS), MAX_PIXELS))
    return chip_size_m / pixels, pixels


def chip_label_grids(samples: pd.DataFrame, source_res_m: float | None) -> list[LabelGrid]:
    """One label grid per sample row (columns ``lon``, ``lat``, ``epsg``, ``chip_size_m``), vectorised per CRS."""
    n = len(samples)
    x = np.empty(n)
    y = np.empty(n)
    epsg = samples["epsg"].to_numpy(dtype=np.int64)
    lon = samples["lon"].to_numpy(dtype=np.float64)
    lat = samples["lat"].to_numpy(dtype=np.float64)
    for code in np.unique(epsg):
        rows = np.flatnonzero(epsg == code)
        x[rows], y[rows] = _to_crs(int(code)).transform(lon[rows], lat[rows])
    sizes = samples["chip_size_m"].to_numpy(dtype=np.float64)
    out = []
    for i in range(n):
        res, pixels = label_resolution(float(sizes[i]), source_res_m)
        half = sizes[i] / 2.0
        out.append(LabelGrid(int(epsg[i]), float(x[i] - half), float(y[i] + half), res, pixels, i))
    return out

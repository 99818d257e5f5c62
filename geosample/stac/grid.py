"""The chip grid: the pixel grid a sample's chip is read onto.

A chip is a square of ``chip_size_m`` metres centred on the sample's (lon, lat)
in its local CRS (``epsg``, UTM or UPS), with square pixels of ``resolution``
metres. The grid depends only on these five values, so every chip of one site
(same centre, CRS and size) from any source and date is pixel-aligned, and the
label stage computes class fractions on exactly the chip's pixels.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import pyproj
from affine import Affine
from rasterio.crs import CRS

__all__ = ["ChipGrid", "chip_grid", "nice_resolution"]


@dataclasses.dataclass(frozen=True)
class ChipGrid:
    """A north-up pixel grid: CRS, affine transform (top-left corner) and size in pixels."""

    crs: CRS
    """The chip's projected CRS (the sample's ``epsg``)."""
    transform: Affine
    """Pixel to CRS coordinates; ``transform.a`` is the pixel size, ``transform.e`` its negative."""
    width: int
    """Columns."""
    height: int
    """Rows."""

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units (metres)."""
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in CRS units."""
        west, north = self.transform.c, self.transform.f
        return west, north + self.height * self.transform.e, west + self.width * self.transform.a, north

    @property
    def epsg(self) -> int:
        """The EPSG code of :attr:`crs`."""
        return int(self.crs.to_epsg())


@lru_cache(maxsize=256)
def _to_crs(epsg: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(4326, epsg, always_xy=True)


@lru_cache(maxsize=256)
def _crs(epsg: int) -> CRS:
    return CRS.from_epsg(epsg)


def chip_grid(lon: float, lat: float, epsg: int, chip_size_m: float, resolution: float) -> ChipGrid:
    """The chip's pixel grid: centred on (lon, lat) projected to ``epsg``, ``chip_size_m`` on a side.

    Width and height are ``round(chip_size_m / resolution)`` pixels (at least 1), so
    the chip covers ``width * resolution`` metres, within half a pixel of
    ``chip_size_m``; the centre is exact.

    Args:
        lon: Centre longitude, degrees.
        lat: Centre latitude, degrees.
        epsg: The chip's projected CRS (metres).
        chip_size_m: Side of the chip on the ground.
        resolution: Pixel size in metres, > 0.

    Returns:
        The grid.

    Raises:
        ValueError: If ``resolution`` or ``chip_size_m`` is not a positive finite number.
    """
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be a positive number of metres, not {resolution!r}")
    if not (math.isfinite(chip_size_m) and chip_size_m > 0):
        raise ValueError(f"chip_size_m must be a positive number of metres, not {chip_size_m!r}")
    n = max(1, round(chip_size_m / resolution))
    x, y = _to_crs(int(epsg)).transform(float(lon), float(lat))
    half = n * resolution / 2.0
    transform = Affine(resolution, 0.0, x - half, 0.0, -resolution, y + half)
    return ChipGrid(_crs(int(epsg)), transform, n, n)


def nice_resolution(metres: float) -> float:
    """A native pixel size rounded to two significant digits (10.0003 → 10, 30.92 → 31, 0.598 → 0.6)."""
    if not (math.isfinite(metres) and metres > 0):
        raise ValueError(f"resolution must be a positive number of metres, not {metres!r}")
    digits = 1 - math.floor(math.log10(metres))
    return float(round(metres, digits))

"""Access to the reference layers shipped inside the package."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

import geopandas as gpd
import numpy as np

from geosample.layers._raster import RasterPointSampler, RunLengthRaster
from geosample.layers._vector import PolygonGrid, PolygonIndex

#: Köppen-Geiger main classes by raster value (0 is sea / no data).
CLIMATE_CLASSES: dict[int, str] = {1: "A", 2: "B", 3: "C", 4: "D", 5: "E"}

#: MODIS IGBP classes by raster value, in DESIGN.md's snake case (255 is no data).
IGBP_CLASSES: dict[int, str] = {
    0: "water",
    1: "evergreen_needleleaf_forest",
    2: "evergreen_broadleaf_forest",
    3: "deciduous_needleleaf_forest",
    4: "deciduous_broadleaf_forest",
    5: "mixed_forest",
    6: "closed_shrublands",
    7: "open_shrublands",
    8: "woody_savannas",
    9: "savannas",
    10: "grasslands",
    11: "permanent_wetlands",
    12: "croplands",
    13: "urban_and_built_up",
    14: "cropland_natural_vegetation_mosaic",
    15: "snow_and_ice",
    16: "barren",
}


def layer_path(name: str) -> Path:
    """Filesystem path of an embedded layer file (works from a wheel install)."""
    path = resources.files("geosample") / "data" / "layers" / name
    return Path(str(path))


@functools.cache
def countries() -> gpd.GeoDataFrame:
    """Natural Earth 1:10m admin-0 countries: ``iso3``, ``name``, ``continent``, ...

    One row per country and physical continent: ``continent`` is the continent
    where the row's land lies (Russia has a European and an Asian row, France a
    row per continent of its overseas parts), ``country_continent`` Natural
    Earth's attribute of the whole country; the rules are in ``PROVENANCE.md``.
    ``iso3`` is ISO_A3_EH, falling back to ADM0_A3 where that is ``-99``.
    """
    return gpd.read_parquet(layer_path("countries.parquet"))


#: The country grid's cell size (degrees) and file, built by ``data/layers/build_layers.py``.
COUNTRY_GRID_DEG = 0.1
COUNTRY_GRID_FILE = "countries_grid_0p1deg.npz"


@functools.cache
def country_index() -> PolygonIndex:
    """Point-in-polygon index over :func:`countries` (row positions).

    Points in the 0.1° cells that no outline crosses (84 % of land cells and
    all open sea) are answered from the shipped :func:`country_grid`; the
    others are tested on the polygons.
    """
    return PolygonIndex(countries().geometry.values, grid=country_grid())


def country_grid() -> PolygonGrid | None:
    """The shipped grid of :func:`countries`, or ``None`` if it was built from another countries file."""
    with np.load(layer_path(COUNTRY_GRID_FILE)) as npz:
        if str(npz["countries_sha256"]) != _sha256(layer_path("countries.parquet")):
            return None
        return PolygonGrid(npz["cells"], float(npz["res_deg"]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: Tolerance (degrees) of the simplified country outlines.
SIMPLIFIED_TOLERANCE_DEG = 0.02


@functools.cache
def land_polygons() -> gpd.GeoSeries:
    """Country outlines simplified by 0.02°, row for row with :func:`countries`.

    For drawing maps and rasterising coarse covers, never for point lookups.
    """
    return gpd.read_parquet(layer_path("countries_simplified.parquet")).geometry


@functools.cache
def climate_sampler() -> RunLengthRaster:
    """Point sampler over Köppen-Geiger main classes (1/120°, run-length coded).

    The same grid ships as ``koppen_geiger_main_1km.tif`` (a COG) for GIS use.
    """
    return RunLengthRaster(layer_path("koppen_geiger_main_1km.runs.npz"))


@functools.cache
def landcover_sampler() -> RasterPointSampler:
    """Point sampler over the MODIS MCD12C1 2019 IGBP COG (0.05°)."""
    return RasterPointSampler(layer_path("modis_igbp_2019_0p05deg.tif"))

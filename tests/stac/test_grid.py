"""The chip grid: centred, square, pixel-aligned across a site, and equal to the plan's footprint."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.sampling._geometry import chip_footprints, utm_epsg
from geosample.stac.grid import chip_grid, nice_resolution

lons = st.floats(-179.9, 179.9)
lats = st.floats(-83.0, 83.0)
sizes = st.sampled_from([60.0, 640.0, 2560.0, 5120.0, 10_000.0])
resolutions = st.sampled_from([0.6, 3.0, 10.0, 20.0, 30.0, 60.0])


@settings(max_examples=60, deadline=None)
@given(lon=lons, lat=lats, size=sizes, res=resolutions)
def test_grid_is_centred_square_and_sized(lon: float, lat: float, size: float, res: float) -> None:
    epsg = int(utm_epsg(lon, lat))
    grid = chip_grid(lon, lat, epsg, size, res)
    n = max(1, round(size / res))
    assert grid.width == grid.height == n
    assert grid.transform.a == res and grid.transform.e == -res
    assert grid.transform.b == grid.transform.d == 0
    x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    west, south, east, north = grid.bounds
    assert math.isclose((west + east) / 2, x, abs_tol=1e-6)
    assert math.isclose((south + north) / 2, y, abs_tol=1e-6)
    assert abs((east - west) - size) <= res / 2 + 1e-9
    assert grid.epsg == epsg


@settings(max_examples=40, deadline=None)
@given(lon=lons, lat=lats, size=sizes)
def test_grid_matches_the_plan_footprint(lon: float, lat: float, size: float) -> None:
    """Where size/res is whole, the grid's corners, back in lon/lat, are the footprint's corners."""
    epsg = int(utm_epsg(lon, lat))
    res = size / 128
    grid = chip_grid(lon, lat, epsg, size, res)
    footprint = chip_footprints(lon, lat, epsg, size, densify=1).item()
    if footprint.geom_type != "Polygon":  # split at the antimeridian
        return
    west, south, east, north = grid.bounds
    corners = np.array([[west, south], [east, south], [east, north], [west, north]])
    lon_c, lat_c = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(corners[:, 0], corners[:, 1])
    ring = np.asarray(footprint.exterior.coords)[:-1]
    for cx, cy in zip(lon_c, lat_c, strict=True):
        assert np.min(np.hypot(ring[:, 0] - cx, ring[:, 1] - cy)) < 1e-7
    projected = shapely.box(west, south, east, north)
    assert math.isclose(projected.area, size * size, rel_tol=1e-9)


def test_grid_depends_only_on_its_inputs() -> None:
    """Every chip of one site (same centre, CRS, size, resolution) has the same grid: pixel-aligned."""
    a = chip_grid(11.2, 43.8, 32632, 2560.0, 10.0)
    b = chip_grid(11.2, 43.8, 32632, 2560.0, 10.0)
    assert a == b
    c = chip_grid(11.2, 43.8, 32632, 2560.0, 20.0)
    assert c.bounds == pytest.approx(a.bounds)  # another resolution, same footprint


@pytest.mark.parametrize("bad", [0.0, -10.0, math.nan, math.inf])
def test_grid_rejects_bad_resolution(bad: float) -> None:
    with pytest.raises(ValueError, match="resolution"):
        chip_grid(0.0, 0.0, 32631, 100.0, bad)


@pytest.mark.parametrize(
    ("native", "nice"),
    [(10.0003, 10.0), (300.0379, 300.0), (30.92, 31.0), (0.598, 0.6), (20.0, 20.0), (9.276, 9.3), (60.0, 60.0)],
)
def test_nice_resolution(native: float, nice: float) -> None:
    assert nice_resolution(native) == nice

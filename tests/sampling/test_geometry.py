"""Tests for geosample.sampling._geometry (chip CRS and footprints)."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.sampling._geometry import (
    UPS_NORTH,
    UPS_SOUTH,
    chip_footprints,
    utm_epsg,
)

GEOD = pyproj.Geod(ellps="WGS84")
# No example database: keep the test run from writing into the repository.
SETTINGS = settings(max_examples=60, deadline=None, database=None)


def _ref_epsg(lon: float, lat: float) -> int:
    """Scalar reference: UTM/UPS EPSG code with the Norway/Svalbard exceptions."""
    if lat > 84.0:
        return 32661
    if lat < -84.0:
        return 32761
    # (lon + 180) / 6 can round up to 60 for lon just below 180: still zone 60.
    zone = 60 if lon == 180.0 else min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32
    if 72.0 <= lat <= 84.0:
        for west, east, svalbard_zone in (
            (0, 9, 31),
            (9, 21, 33),
            (21, 33, 35),
            (33, 42, 37),
        ):
            if west <= lon < east:
                zone = svalbard_zone
    return (32600 if lat >= 0.0 else 32700) + zone


def _in_exception_band(lon: float, lat: float) -> bool:
    norway = 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0
    svalbard = 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0
    return norway or svalbard


def _area(geom: shapely.Geometry) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0])


def _footprint(lon: float, lat: float, size: float, epsg: int | None = None):
    code = int(utm_epsg(lon, lat)) if epsg is None else epsg
    return chip_footprints(np.array([lon]), np.array([lat]), np.array([code]), size)[0]


def _check_common(geom: shapely.Geometry, lon: float, lat: float) -> None:
    assert not geom.is_empty
    assert shapely.is_valid(geom), shapely.is_valid_reason(geom)
    minx, miny, maxx, maxy = geom.bounds
    assert -180.0 <= minx and maxx <= 180.0
    assert -90.0 <= miny and maxy <= 90.0
    centre = shapely.Point(lon, lat)
    assert geom.covers(centre)
    if abs(lon) < 180.0 and abs(lat) < 90.0:
        assert geom.contains(centre)


# --------------------------------------------------------------------- utm_epsg


@pytest.mark.parametrize(
    ("lon", "lat", "expected"),
    [
        (5.3, 60.4, 32632),  # Bergen: Norway exception
        (2.0, 60.0, 32631),  # band V west of 3E: normal zone 31
        (3.0, 56.0, 32632),  # Norway exception corner (inclusive)
        (5.0, 64.0, 32631),  # band W: no exception
        (5.0, 55.999, 32631),
        (12.0, 60.0, 32633),
        (15.0, 78.0, 32633),  # Svalbard
        (9.5, 78.0, 32633),
        (8.0, 78.0, 32631),
        (25.0, 78.0, 32635),
        (40.0, 78.0, 32637),
        (42.0, 78.0, 32638),
        (9.0, 84.0, 32633),  # band X includes 84N
        (9.0, 71.999, 32632),
        (-74.0, 40.7, 32618),
        (151.2, -33.9, 32756),
        (180.0, 10.0, 32660),
        (-180.0, 10.0, 32601),
        (math.nextafter(180.0, 0.0), 0.0, 32660),  # rounds to zone 61 naively
        (0.0, 0.0, 32631),  # equator is north
        (-0.000001, 0.0, 32630),
        (0.0, 84.0, 32631),
        (0.0, -84.0, 32731),
        (0.0, 84.000001, UPS_NORTH),
        (0.0, -84.000001, UPS_SOUTH),
        (0.0, 85.0, UPS_NORTH),
        (0.0, -85.0, UPS_SOUTH),
        (123.0, 90.0, UPS_NORTH),
        (-45.0, -90.0, UPS_SOUTH),
    ],
)
def test_utm_epsg_table(lon: float, lat: float, expected: int) -> None:
    assert utm_epsg(np.array([lon]), np.array([lat])).tolist() == [expected]
    assert _ref_epsg(lon, lat) == expected


def test_utm_epsg_dtype_and_shape() -> None:
    lon = np.array([[5.3, -74.0, 180.0], [0.0, 15.0, 151.2]])
    lat = np.array([[60.4, 40.7, 10.0], [85.0, 78.0, -33.9]])
    out = utm_epsg(lon, lat)
    assert out.dtype == np.int32
    assert out.shape == (2, 3)
    assert out.tolist() == [[32632, 32618, 32660], [32661, 32633, 32756]]
    assert utm_epsg(np.array([1.0, 2.0]), 45.0).tolist() == [32631, 32631]
    assert utm_epsg(np.array([]), np.array([])).shape == (0,)


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(181.0, 0.0), (-180.1, 0.0), (0.0, 90.5), (np.nan, 0.0), (0.0, np.inf)],
)
def test_utm_epsg_rejects_bad_coordinates(lon: float, lat: float) -> None:
    with pytest.raises(ValueError):
        utm_epsg(np.array([lon]), np.array([lat]))


lons = st.floats(-180.0, 180.0, allow_nan=False)
lats_utm = st.floats(-84.0, 84.0, allow_nan=False)
lats_all = st.floats(-90.0, 90.0, allow_nan=False)


@SETTINGS
@given(
    st.lists(
        st.tuples(lons, lats_utm).filter(lambda p: not _in_exception_band(*p)),
        min_size=1,
        max_size=50,
    )
)
def test_utm_epsg_matches_plain_zone_formula(points: list[tuple[float, float]]) -> None:
    lon, lat = np.array(points).T
    got = utm_epsg(lon, lat)
    for (x, y), code in zip(points, got.tolist(), strict=True):
        zone = min(int((x + 180.0) // 6.0) + 1, 60)
        assert code == (32600 if y >= 0.0 else 32700) + zone
        assert 1 <= code % 100 <= 60


@SETTINGS
@given(st.lists(st.tuples(lons, lats_all), min_size=1, max_size=50))
def test_utm_epsg_matches_scalar_reference(points: list[tuple[float, float]]) -> None:
    lon, lat = np.array(points).T
    assert utm_epsg(lon, lat).tolist() == [_ref_epsg(x, y) for x, y in points]


@SETTINGS
@given(st.floats(0.0, 42.0, exclude_max=True), st.floats(72.0, 84.0))
def test_utm_epsg_svalbard_never_uses_even_zones(lon: float, lat: float) -> None:
    code = int(utm_epsg(lon, lat))
    assert code in (32631, 32633, 32635, 32637)
    assert code == _ref_epsg(lon, lat)


# -------------------------------------------------------------- chip_footprints


def test_footprint_basic_square() -> None:
    geom = _footprint(-74.0, 40.7, 1000.0)
    assert geom.geom_type == "Polygon"
    _check_common(geom, -74.0, 40.7)
    assert len(geom.exterior.coords) == 4 * 8 + 1
    assert _area(geom) == pytest.approx(1e6, rel=0.01)
    # Axis-aligned in UTM: re-projected corners form the requested square.
    to_utm = pyproj.Transformer.from_crs(4326, 32618, always_xy=True)
    x, y = to_utm.transform(*np.asarray(geom.exterior.coords).T)
    assert np.ptp(x) == pytest.approx(1000.0, abs=1e-3)
    assert np.ptp(y) == pytest.approx(1000.0, abs=1e-3)


def test_footprint_densify_and_array_size() -> None:
    lon = np.array([10.0, 10.0, 11.0])
    lat = np.array([45.0, 45.0, -45.0])
    epsg = utm_epsg(lon, lat)
    sizes = np.array([100.0, 5000.0, 20000.0])
    geoms = chip_footprints(lon, lat, epsg, sizes, densify=3)
    for geom, x, y, size in zip(geoms, lon, lat, sizes, strict=True):
        assert len(geom.exterior.coords) == 4 * 3 + 1
        _check_common(geom, x, y)
        assert _area(geom) == pytest.approx(size**2, rel=0.01)


def test_footprint_preserves_order_and_shape() -> None:
    lon = np.array([[151.2, -74.0], [5.3, 179.999]])
    lat = np.array([[-33.9, 40.7], [60.4, 10.0]])
    epsg = utm_epsg(lon, lat)
    geoms = chip_footprints(lon, lat, epsg, 2000.0)
    assert geoms.shape == (2, 2)
    assert geoms.dtype == object
    for geom, x, y in zip(geoms.ravel(), lon.ravel(), lat.ravel(), strict=True):
        _check_common(geom, x, y)
        assert abs(geom.centroid.y - y) < 0.05


def test_footprint_empty_input() -> None:
    out = chip_footprints(np.array([]), np.array([]), np.array([], dtype=int), 100.0)
    assert out.shape == (0,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size_m": 0.0},
        {"size_m": -5.0},
        {"size_m": np.nan},
        {"densify": 0},
        {"epsg": 32631.5},
        {"lat": 91.0},
    ],
)
def test_footprint_rejects_bad_arguments(kwargs: dict) -> None:
    args = {"lon": 1.0, "lat": 45.0, "epsg": 32631, "size_m": 100.0, "densify": 8}
    args.update(kwargs)
    with pytest.raises(ValueError):
        chip_footprints(
            np.array([args["lon"]]),
            np.array([args["lat"]]),
            np.array([args["epsg"]]),
            args["size_m"],
            densify=args["densify"],
        )


def test_footprint_rejects_unknown_epsg() -> None:
    with pytest.raises(pyproj.exceptions.CRSError):
        chip_footprints(np.array([1.0]), np.array([45.0]), np.array([999999]), 100.0)


@SETTINGS
@given(lons, lats_utm, st.floats(100.0, 20000.0))
def test_footprint_properties(lon: float, lat: float, size: float) -> None:
    geom = _footprint(lon, lat, size)
    _check_common(geom, lon, lat)
    assert geom.geom_type in ("Polygon", "MultiPolygon")
    assert _area(geom) == pytest.approx(size**2, rel=0.01)
    # Never a band around the globe: the longitude extent stays near the chip's.
    max_span = 2.0 * size / (111_000.0 * math.cos(math.radians(lat)))
    if geom.geom_type == "MultiPolygon":
        parts = list(geom.geoms)
        assert len(parts) == 2
        assert min(p.bounds[0] for p in parts) == -180.0
        assert max(p.bounds[2] for p in parts) == 180.0
        assert sum(p.bounds[2] - p.bounds[0] for p in parts) < max_span
    else:
        assert geom.bounds[2] - geom.bounds[0] < max_span


@SETTINGS
@given(st.lists(st.tuples(lons, lats_all, st.floats(100.0, 20000.0)), min_size=1, max_size=30))
def test_footprint_vectorised_matches_single(
    points: list[tuple[float, float, float]],
) -> None:
    lon, lat, size = np.array(points).T
    epsg = utm_epsg(lon, lat)
    geoms = chip_footprints(lon, lat, epsg, size)
    for geom, x, y, s, code in zip(geoms, lon, lat, size, epsg, strict=True):
        single = _footprint(x, y, s, int(code))
        assert shapely.equals_exact(geom, single, tolerance=1e-9)
        _check_common(geom, x, y)


@pytest.mark.parametrize(("lon", "lat"), [(179.999, 10.0), (-179.999, 10.0), (179.999, -60.0)])
def test_footprint_antimeridian_split(lon: float, lat: float) -> None:
    geom = _footprint(lon, lat, 10000.0)
    assert geom.geom_type == "MultiPolygon"
    _check_common(geom, lon, lat)
    assert len(geom.geoms) == 2
    for part in geom.geoms:
        xs = np.asarray(part.exterior.coords)[:, 0]
        assert np.ptp(xs) < 1.0
        assert xs.min() == -180.0 or xs.max() == 180.0
    assert _area(geom) == pytest.approx(1e8, rel=0.01)


@pytest.mark.parametrize("lon", [180.0, -180.0])
def test_footprint_centred_on_antimeridian(lon: float) -> None:
    geom = _footprint(lon, 10.0, 10000.0)
    assert geom.geom_type == "MultiPolygon"
    _check_common(geom, lon, 10.0)
    assert _area(geom) == pytest.approx(1e8, rel=0.01)


def test_footprint_near_antimeridian_is_single_polygon() -> None:
    geom = _footprint(179.9, 10.0, 10000.0)
    assert geom.geom_type == "Polygon"
    assert geom.bounds[2] < 180.0
    _check_common(geom, 179.9, 10.0)


@pytest.mark.parametrize(
    ("lon", "lat", "size"),
    [
        (0.0, 89.99, 10000.0),
        (135.0, -89.99, 10000.0),
        (0.0, 90.0, 1000.0),
        (-77.0, 90.0, 20000.0),
        (123.0, -90.0, 1000.0),
        (180.0, -90.0, 5000.0),
        (45.0, 89.999, 500.0),
    ],
)
def test_footprint_contains_pole(lon: float, lat: float, size: float) -> None:
    geom = _footprint(lon, lat, size)
    assert int(utm_epsg(lon, lat)) in (UPS_NORTH, UPS_SOUTH)
    assert geom.geom_type == "Polygon"
    _check_common(geom, lon, lat)
    pole = 90.0 if lat > 0 else -90.0
    for pole_lon in (-180.0, 0.0, 97.5, 180.0):
        assert geom.covers(shapely.Point(pole_lon, pole))
    # Just off the pole is strictly inside.
    assert geom.contains(shapely.Point(10.0, pole - math.copysign(1e-6, pole)))
    assert geom.bounds[0] == -180.0 and geom.bounds[2] == 180.0
    # UPS scale factor at the pole is 0.994, so the true area is ~1.2% larger.
    assert _area(geom) == pytest.approx(size**2, rel=0.02)


@pytest.mark.parametrize(("lon", "lat"), [(0.0, 89.9), (179.99, 89.9), (-60.0, -89.9)])
def test_footprint_near_pole_without_pole(lon: float, lat: float) -> None:
    geom = _footprint(lon, lat, 10000.0)
    _check_common(geom, lon, lat)
    pole = 90.0 if lat > 0 else -90.0
    assert not geom.intersects(shapely.Point(lon, pole))
    assert _area(geom) == pytest.approx(1e8, rel=0.02)


@SETTINGS
@given(lons, st.floats(84.0, 90.0), st.floats(100.0, 20000.0), st.booleans())
def test_footprint_polar_properties(lon: float, lat: float, size: float, south: bool) -> None:
    lat = -lat if south else lat
    geom = _footprint(lon, lat, size)
    _check_common(geom, lon, lat)
    assert _area(geom) == pytest.approx(size**2, rel=0.02)
    # The pole is covered exactly when it lies inside the projected square.
    code = int(utm_epsg(lon, lat))
    to_crs = pyproj.Transformer.from_crs(4326, code, always_xy=True)
    cx, cy = to_crs.transform(lon, lat)
    px, py = to_crs.transform(0.0, -90.0 if south else 90.0)
    margin = max(abs(px - cx), abs(py - cy)) - size / 2
    if abs(margin) > 1.0:
        assert geom.covers(shapely.Point(0.0, -90.0 if south else 90.0)) == (margin < 0)


def test_footprint_many_zones_fast_path() -> None:
    rng = np.random.default_rng(7)
    n = 20000
    lon = rng.uniform(-180.0, 180.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    epsg = utm_epsg(lon, lat)
    geoms = chip_footprints(lon, lat, epsg, 5000.0)
    assert shapely.is_valid(geoms).all()
    assert shapely.covers(geoms, shapely.points(lon, lat)).all()
    assert (shapely.bounds(geoms)[:, [0, 1]] >= [-180.0, -90.0]).all()
    assert (shapely.bounds(geoms)[:, [2, 3]] <= [180.0, 90.0]).all()

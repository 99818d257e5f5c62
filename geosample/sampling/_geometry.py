"""Chip geometry: the local projected CRS of a chip and its lon/lat footprint.

A chip is a square of ``size_m`` metres centred on a point and axis-aligned in
the point's local CRS (UTM, or UPS near the poles). Everything here is
vectorised: numpy arrays in, numpy arrays out.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pyproj
import shapely

__all__ = ["UPS_NORTH", "UPS_SOUTH", "chip_footprints", "utm_epsg"]

UPS_NORTH = 32661
"""EPSG code of WGS 84 / UPS North (E,N), used for lat > 84."""
UPS_SOUTH = 32761
"""EPSG code of WGS 84 / UPS South (E,N), used for lat < -84."""

_WGS84 = 4326
# Footprints that poke past +-180 deg by less than this are treated as touching
# the antimeridian (clipped), not crossing it.
_WRAP_EPS_DEG = 1e-9
# Coordinates per transform job; large inputs are split into jobs of this size
# and run on a thread pool (PROJ releases the GIL).
_JOB_COORDS = 1 << 18
_MAX_WORKERS = 8

_WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)
_EAST_OF_180 = shapely.box(180.0, -90.0, 540.0, 90.0)
_WEST_OF_180 = shapely.box(-540.0, -90.0, -180.0, 90.0)


def _as_lonlat(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Broadcasts and validates lon/lat degrees.

    Raises:
        ValueError: If a value is not finite or lies outside
            lon [-180, 180] / lat [-90, 90].
    """
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    if not (np.isfinite(lon_a).all() and np.isfinite(lat_a).all()):
        raise ValueError("lon and lat must be finite")
    if (np.abs(lon_a) > 180.0).any():
        raise ValueError("lon must lie in [-180, 180]")
    if (np.abs(lat_a) > 90.0).any():
        raise ValueError("lat must lie in [-90, 90]")
    return lon_a, lat_a


def utm_epsg(lon: npt.ArrayLike, lat: npt.ArrayLike) -> np.ndarray:
    """Returns the EPSG code of the local UTM/UPS CRS of each point.

    The zone is ``floor((lon + 180) / 6) + 1`` (lon = 180 is zone 60), with the
    UTM grid exceptions of Norway (56N-64N, 3E-12E is zone 32) and Svalbard
    (72N-84N: 0-9E zone 31, 9-21E zone 33, 21-33E zone 35, 33-42E zone 37).
    Latitudes >= 0 use 326zz and < 0 use 327zz; lat > 84 is UPS North
    (32661) and lat < -84 is UPS South (32761).

    Args:
        lon: Longitudes in degrees, in [-180, 180].
        lat: Latitudes in degrees, in [-90, 90]; broadcast against ``lon``.

    Returns:
        int32 EPSG codes with the broadcast shape of ``lon`` and ``lat``.

    Raises:
        ValueError: If a coordinate is not finite or out of range.
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    zone = np.minimum(np.floor((lon_a + 180.0) / 6.0).astype(np.int32) + 1, 60)
    norway = (lat_a >= 56.0) & (lat_a < 64.0) & (lon_a >= 3.0) & (lon_a < 12.0)
    svalbard = (lat_a >= 72.0) & (lat_a <= 84.0) & (lon_a >= 0.0) & (lon_a < 42.0)
    svalbard_zone = 31 + 2 * np.floor((lon_a + 3.0) / 12.0).astype(np.int32)
    zone = np.where(norway, np.int32(32), zone)
    zone = np.where(svalbard, svalbard_zone, zone)
    epsg = np.where(lat_a >= 0.0, np.int32(32600), np.int32(32700)) + zone
    epsg = np.where(lat_a > 84.0, np.int32(UPS_NORTH), epsg)
    epsg = np.where(lat_a < -84.0, np.int32(UPS_SOUTH), epsg)
    return epsg.astype(np.int32, copy=False)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Returns the process-wide transform thread pool, creating it on first use.

    The threads persist so that pyproj's per-thread transformer objects are
    built once per thread and EPSG code, not on every call.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = min(_MAX_WORKERS, os.cpu_count() or 1)
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="geosample-proj")
        return _POOL


def _forget_pool_after_fork() -> None:
    """Drops the parent's pool in a forked child (its threads do not exist)."""
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


@lru_cache(maxsize=512)
def _to_crs(epsg: int) -> pyproj.Transformer:
    """Cached lon/lat (EPSG:4326) -> ``epsg`` transformer, x/y order."""
    return pyproj.Transformer.from_crs(_WGS84, epsg, always_xy=True)


@lru_cache(maxsize=512)
def _from_crs(epsg: int) -> pyproj.Transformer:
    """Cached ``epsg`` -> lon/lat (EPSG:4326) transformer, x/y order."""
    return pyproj.Transformer.from_crs(epsg, _WGS84, always_xy=True)


@lru_cache(maxsize=512)
def _poles_xy(epsg: int) -> np.ndarray:
    """Projected (x, y) of the north and south pole in ``epsg``; inf if none."""
    with np.errstate(invalid="ignore"):
        x, y = _to_crs(epsg).transform(np.array([0.0, 0.0]), np.array([90.0, -90.0]), errcheck=False)
    xy = np.stack([np.asarray(x, float), np.asarray(y, float)], axis=1)
    xy[~np.isfinite(xy).all(axis=1)] = np.inf
    return xy


def _ring_template(densify: int) -> tuple[np.ndarray, np.ndarray]:
    """Counter-clockwise unit square ring (open), ``densify`` segments per edge."""
    t = np.linspace(-1.0, 1.0, densify + 1)[:-1]
    one = np.ones_like(t)
    ux = np.concatenate([t, one, -t, -one])
    uy = np.concatenate([-one, t, one, -t])
    return ux, uy


def _split_antimeridian(polys: np.ndarray) -> np.ndarray:
    """Splits polygons in unwrapped longitudes at +-180 into valid geometries.

    Args:
        polys: Polygons whose longitudes are continuous but may leave
            [-180, 180] on one side.

    Returns:
        Object array of Polygon/MultiPolygon with all lon in [-180, 180].
    """
    mid = shapely.intersection(polys, _WORLD)
    east = shapely.transform(shapely.intersection(polys, _EAST_OF_180), lambda c: c - [360.0, 0.0])
    west = shapely.transform(shapely.intersection(polys, _WEST_OF_180), lambda c: c + [360.0, 0.0])
    out = np.empty(len(polys), dtype=object)
    for i, pieces in enumerate(zip(mid, east, west, strict=True)):
        parts = [
            p for g in pieces for p in shapely.get_parts(g) if shapely.get_type_id(p) == 3 and shapely.area(p) > 0.0
        ]
        parts = [shapely.transform(p, lambda c: np.clip(c, [-180.0, -90.0], [180.0, 90.0])) for p in parts]
        out[i] = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    return out


def _pole_caps(lon: np.ndarray, lat: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Builds polygons for rings that encircle a pole.

    Each ring is sorted by longitude and closed along lon = +-180 through the
    pole (lat = 90 * sign), so the polygon covers the polar cap.

    Args:
        lon: (m, k) ring longitudes in [-180, 180].
        lat: (m, k) ring latitudes.
        sign: (m,) +1 for the north pole, -1 for the south pole.

    Returns:
        Object array of m Polygons.
    """
    order = np.argsort(lon, axis=1, kind="stable")
    lon = np.take_along_axis(lon, order, axis=1)
    lat = np.take_along_axis(lat, order, axis=1)
    lo_first, la_first = lon[:, 0], lat[:, 0]
    lo_last, la_last = lon[:, -1], lat[:, -1]
    gap = lo_first + 360.0 - lo_last
    frac = np.divide(180.0 - lo_last, gap, out=np.zeros_like(gap), where=gap > 0.0)
    lat_180 = la_last + frac * (la_first - la_last)
    cap = 90.0 * sign.astype(np.float64)
    m, k = lon.shape
    coords = np.empty((m, k + 5, 2))
    coords[:, 0] = np.stack([np.full(m, -180.0), lat_180], axis=1)
    coords[:, 1 : k + 1, 0] = lon
    coords[:, 1 : k + 1, 1] = lat
    coords[:, k + 1] = np.stack([np.full(m, 180.0), lat_180], axis=1)
    coords[:, k + 2] = np.stack([np.full(m, 180.0), cap], axis=1)
    coords[:, k + 3] = np.stack([np.full(m, -180.0), cap], axis=1)
    coords[:, k + 4] = coords[:, 0]
    return shapely.polygons(coords)


def chip_footprints(
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    epsg: npt.ArrayLike,
    size_m: npt.ArrayLike,
    densify: int = 8,
) -> np.ndarray:
    """Returns the lon/lat footprint polygon of each chip.

    A chip is the square of side ``size_m`` centred on (lon, lat) and
    axis-aligned in CRS ``epsg``. Its edges are densified, and it is
    transformed to EPSG:4326 with one vectorised transform per EPSG code.

    Edge cases:
        * A footprint crossing the antimeridian is split at +-180 into a
          MultiPolygon (one part per side); one that only touches it stays a
          Polygon.
        * A footprint containing a pole is a Polygon that runs from lon -180
          to 180 along the footprint boundary and closes through lat = +-90,
          so it covers the polar cap.

    Every result is valid and non-empty, lies within lon [-180, 180] and
    lat [-90, 90], and covers its centre (contains it, unless the centre
    lies on lon = +-180 or lat = +-90, where it is on the boundary).

    Args:
        lon: Centre longitudes in degrees, in [-180, 180].
        lat: Centre latitudes in degrees, in [-90, 90].
        epsg: Integer EPSG code of each chip's projected CRS (metres),
            e.g. from :func:`utm_epsg`.
        size_m: Chip side in metres, scalar or per chip.
        densify: Number of segments per square edge.

    Returns:
        Object array of shapely Polygon/MultiPolygon with the broadcast shape
        of the inputs.

    Raises:
        ValueError: On out-of-range or non-finite inputs, non-integer EPSG
            codes, non-positive sizes, ``densify < 1``, or a footprint that
            cannot be transformed.
        pyproj.exceptions.CRSError: If an EPSG code is unknown.
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    epsg_in = np.asarray(epsg)
    if not np.issubdtype(epsg_in.dtype, np.integer):
        as_int = epsg_in.astype(np.int64)
        if not np.array_equal(as_int, epsg_in):
            raise ValueError("epsg must hold integer EPSG codes")
        epsg_in = as_int
    size_in = np.asarray(size_m, dtype=np.float64)
    if not (np.isfinite(size_in).all() and (size_in > 0.0).all()):
        raise ValueError("size_m must be finite and > 0")
    if int(densify) != densify or densify < 1:
        raise ValueError("densify must be an integer >= 1")
    densify = int(densify)

    lon_a, lat_a, epsg_b, size_b = np.broadcast_arrays(lon_a, lat_a, epsg_in, size_in)
    shape = lon_a.shape
    n = lon_a.size
    result = np.empty(n, dtype=object)
    if n == 0:
        return result.reshape(shape)

    # Sort by EPSG so each code is a contiguous block of rows.
    order = np.argsort(epsg_b.ravel(), kind="stable")
    lon_s = np.ascontiguousarray(lon_a.ravel()[order])
    lat_s = np.ascontiguousarray(lat_a.ravel()[order])
    epsg_s = epsg_b.ravel()[order].astype(np.int64)
    half_s = 0.5 * size_b.ravel()[order]
    codes, starts = np.unique(epsg_s, return_index=True)
    ends = np.append(starts[1:], n)

    ux, uy = _ring_template(densify)
    k = ux.size
    ring_lon = np.empty((n, k))
    ring_lat = np.empty((n, k))
    pole = np.zeros(n, dtype=np.int8)

    def run(code: int, s: int, e: int) -> None:
        cx, cy = _to_crs(code).transform(lon_s[s:e], lat_s[s:e], errcheck=False)
        cx = np.asarray(cx, dtype=np.float64)
        cy = np.asarray(cy, dtype=np.float64)
        h = half_s[s:e]
        xs, ys = ring_lon[s:e], ring_lat[s:e]
        np.multiply(h[:, None], ux, out=xs)
        xs += cx[:, None]
        np.multiply(h[:, None], uy, out=ys)
        ys += cy[:, None]
        poles = _poles_xy(code)
        with np.errstate(invalid="ignore"):
            north = (np.abs(poles[0, 0] - cx) <= h) & (np.abs(poles[0, 1] - cy) <= h)
            south = (np.abs(poles[1, 0] - cx) <= h) & (np.abs(poles[1, 1] - cy) <= h)
        pole[s:e] = np.where(north, 1, np.where(south, -1, 0))
        flat_x, flat_y = xs.reshape(-1), ys.reshape(-1)
        out_x, out_y = _from_crs(code).transform(flat_x, flat_y, inplace=True, errcheck=False)
        if not np.shares_memory(out_x, flat_x):  # pragma: no cover - defensive
            flat_x[:] = out_x
            flat_y[:] = out_y

    rows_per_job = max(1, _JOB_COORDS // k)
    jobs = [
        (int(code), s, min(s + rows_per_job, e))
        for code, s0, e in zip(codes, starts, ends, strict=True)
        for s in range(int(s0), int(e), rows_per_job)
    ]
    if n * k > _JOB_COORDS and len(jobs) > 1 and (os.cpu_count() or 1) > 1:
        pool = _pool()
        for fut in [pool.submit(run, *job) for job in jobs]:
            fut.result()
    else:
        for job in jobs:
            run(*job)

    bad = ~(np.isfinite(ring_lon).all(axis=1) & np.isfinite(ring_lat).all(axis=1))
    if bad.any():
        i = int(order[np.argmax(bad)])
        raise ValueError(f"footprint {i} cannot be transformed from EPSG:{int(epsg_b.ravel()[i])}")
    np.clip(ring_lat, -90.0, 90.0, out=ring_lat)

    # Unwrap longitudes to a continuous range around each centre.
    centre = lon_s[:, None]
    unwrapped = ring_lon - centre
    unwrapped += 180.0
    np.mod(unwrapped, 360.0, out=unwrapped)
    unwrapped += centre - 180.0
    crosses = (unwrapped.max(axis=1) > 180.0 + _WRAP_EPS_DEG) | (unwrapped.min(axis=1) < -180.0 - _WRAP_EPS_DEG)
    at_pole = pole != 0
    crosses &= ~at_pole
    common = ~(crosses | at_pole)

    geoms = np.empty(n, dtype=object)
    if crosses.any():
        polys = shapely.polygons(_closed_coords(unwrapped[crosses], ring_lat[crosses]))
        geoms[crosses] = _split_antimeridian(polys)
    np.clip(unwrapped, -180.0, 180.0, out=unwrapped)
    if common.all():
        geoms = _polygons(_closed_coords(unwrapped, ring_lat))
    elif common.any():
        geoms[common] = _polygons(_closed_coords(unwrapped[common], ring_lat[common]))
    if at_pole.any():
        geoms[at_pole] = _pole_caps(np.clip(ring_lon[at_pole], -180.0, 180.0), ring_lat[at_pole], pole[at_pole])

    result[order] = geoms
    return result.reshape(shape)


def _polygons(coords: np.ndarray) -> np.ndarray:
    """Polygons from closed (m, k, 2) rings: ``shapely.polygons``, built twice as fast from flat arrays."""
    m, k, _ = coords.shape
    offsets = (np.arange(0, m * k + 1, k), np.arange(m + 1))
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords.reshape(-1, 2), offsets)


def _closed_coords(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Stacks (m, k) x/y rings into closed (m, k + 1, 2) coordinates."""
    m, k = x.shape
    coords = np.empty((m, k + 1, 2))
    coords[:, :k, 0] = x
    coords[:, :k, 1] = y
    coords[:, k] = coords[:, 0]
    return coords

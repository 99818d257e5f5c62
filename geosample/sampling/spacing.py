"""Distance spacing: no two sites closer than a minimum distance, checked through a grid.

:class:`SpacingIndex` holds the sites taken so far and answers, for a batch
of new points, which have a taken site within the minimum distance ``D``.
Points are unit vectors (Earth-centred), and the index is a 3-D grid over
them whose cells are at least two chords of ``D`` wide. Each taken site is
filed under the 8 cells of the 2 × 2 × 2 block nearest it (along each axis,
its own cell and the neighbour on the side of its cell it lies in); a point
then looks up its own cell only, and measures the few sites filed there.
Two points closer than ``D`` differ by less than half a cell along every
axis, so the point's cell is one of the site's eight: nothing is missed,
anywhere on the sphere (poles, antimeridian and H3 pentagons are nothing
special to the grid). Everything is array arithmetic; the cost of a batch is
proportional to its size, not to the number of sites taken.

Distances are great circles on a sphere of radius :data:`R_MIN_M`, the
smallest radius of curvature of the WGS 84 ellipsoid: never longer than the
true geodesic distance, so sites kept apart by ``D`` on this sphere are at
least ``D`` apart on the Earth.

The same index serves any sampler that must keep the spacing of a plan
(the ordinary draw, event sites, reserve sites).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "PROJECTION_MARGIN",
    "R_MIN_M",
    "SpacingIndex",
    "default_min_distance_m",
    "greedy_spacing",
    "unit_vectors",
]

R_MIN_M = 6_335_439.327
"""WGS 84's meridional radius of curvature at the equator, a·(1 − e²): its smallest radius of curvature."""
PROJECTION_MARGIN = 1.01
"""The default spacing is the chip diagonal times this: a chip is square in its UTM/UPS CRS, whose scale
factor (down to 0.9996 in UTM, 0.994 in UPS) makes it up to 0.6 % larger on the ground."""
_CHUNK = 50_000
_QUERY_WORKERS = min(os.cpu_count() or 1, 8)
_MAX_CELLS_PER_AXIS = 2**20
_CORNERS = tuple((i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1))


def default_min_distance_m(chip_sizes: Sequence[float]) -> float:
    """The chip diagonal of the largest chip size (plus :data:`PROJECTION_MARGIN`): no two chips overlap."""
    return math.sqrt(2.0) * max(chip_sizes) * PROJECTION_MARGIN


def unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Points on the unit sphere, shape ``(n, 3)``."""
    lon_r, lat_r = np.radians(np.asarray(lon, dtype=np.float64)), np.radians(np.asarray(lat, dtype=np.float64))
    cos_lat = np.cos(lat_r)
    return np.column_stack([cos_lat * np.cos(lon_r), cos_lat * np.sin(lon_r), np.sin(lat_r)])


def chord(distance_m: float) -> float:
    """The unit-sphere chord of a great-circle distance on the :data:`R_MIN_M` sphere."""
    return 2.0 * math.sin(min(distance_m / R_MIN_M, math.pi) / 2.0)


def distance_m(xyz_a: np.ndarray, xyz_b: np.ndarray) -> np.ndarray:
    """Great-circle distance on the :data:`R_MIN_M` sphere between paired unit vectors (a lower bound)."""
    half = np.clip(np.linalg.norm(xyz_a - xyz_b, axis=-1) / 2.0, 0.0, 1.0)
    return 2.0 * np.arcsin(half) * R_MIN_M


class SpacingIndex:
    """Sites taken so far, filed in a grid over unit vectors, for "is a taken site within ``D`` of these points?".

    Args:
        min_distance_m: The spacing ``D`` in metres (> 0).
    """

    def __init__(self, min_distance_m: float) -> None:
        if not min_distance_m > 0:
            raise ValueError("a spacing index needs a positive distance")
        self.min_distance_m = float(min_distance_m)
        self._chord = chord(self.min_distance_m)
        # Cells a little more than two chords wide (rounding can never make a close pair look half a cell
        # apart), and at most 2**20 of them along an axis, so that a cell's key fits an int64.
        self.cell_size = max(2.0 * self._chord * (1.0 + 1e-6), 2.0 / _MAX_CELLS_PER_AXIS)
        self._span = math.ceil(2.0 / self.cell_size) + 3
        self._xyz = np.empty((0, 3))
        self._n = 0
        # Sorted runs of (cell key, site position), from the oldest (largest) to the newest; a run is merged
        # into the one before it once it is at least half its size, so there are O(log n) runs.
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        """Number of sites taken."""
        return self._n

    def _cells(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid cell of each unit vector along each axis (1 upwards) and where in the cell it lies (0 to 1)."""
        scaled = (xyz + 1.0) / self.cell_size + 1.0
        cells = np.floor(scaled)
        return cells.astype(np.int64), scaled - cells

    def _key(self, cells: np.ndarray) -> np.ndarray:
        return (cells[..., 0] * self._span + cells[..., 1]) * self._span + cells[..., 2]

    def add(self, lon: np.ndarray, lat: np.ndarray, cells: np.ndarray | None = None) -> None:
        """Take sites at these points (``cells``, their H3 cells, is accepted for compatibility and unused)."""
        lon = np.asarray(lon, dtype=np.float64)
        if lon.size == 0:
            return
        xyz = unit_vectors(lon, lat)
        own, where = self._cells(xyz)
        side = np.where(where < 0.5, -1, 1)
        keys = np.stack([self._key(own + side * np.array(corner)) for corner in _CORNERS], axis=1).ravel()
        owner = np.repeat(np.arange(self._n, self._n + lon.size), len(_CORNERS))
        order = np.argsort(keys)  # the order of the sites filed under one key does not matter
        self._runs.append((keys[order], owner[order]))
        while len(self._runs) > 1 and 2 * self._runs[-1][0].size >= self._runs[-2][0].size:
            (k1, o1), (k2, o2) = self._runs.pop(-2), self._runs.pop()
            keys, owner = np.concatenate([k1, k2]), np.concatenate([o1, o2])
            order = np.argsort(keys, kind="stable")  # two sorted runs: a linear merge
            self._runs.append((keys[order], owner[order]))
        if self._n + lon.size > len(self._xyz):  # room doubles as needed
            grown = np.empty((max(2 * len(self._xyz), self._n + lon.size, 1024), 3))
            grown[: self._n] = self._xyz[: self._n]
            self._xyz = grown
        self._xyz[self._n : self._n + lon.size] = xyz
        self._n += lon.size

    def blocked(self, lon: np.ndarray, lat: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """Whether a taken site lies closer than ``D`` to each point (``cells`` is unused)."""
        lon = np.asarray(lon, dtype=np.float64)
        out = np.zeros(lon.size, dtype=bool)
        if self._n == 0 or lon.size == 0:
            return out
        xyz = unit_vectors(lon, lat)
        key = self._key(self._cells(xyz)[0])
        order = np.argsort(key)  # sorted queries: the binary searches walk the runs forwards
        key = key[order]
        for keys, owner in self._runs:
            lo = np.searchsorted(keys, key, side="left")
            hi = np.searchsorted(keys, key, side="right")
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            point = np.repeat(order, counts)
            start = np.repeat(lo - np.cumsum(counts) + counts, counts)
            site = owner[start + np.arange(total)]
            close = np.linalg.norm(xyz[point] - self._xyz[site], axis=1) < self._chord
            out[point[close]] = True
        return out

    def thin(self, lon: np.ndarray, lat: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """Which points, taken in the given order, keep ``D`` from the taken sites and from each other.

        A point is kept when no taken site and no earlier kept point lies
        within ``D`` (greedy, in order: shuffle first for a random draw).
        Nothing is taken; call :meth:`add` with the points finally accepted.
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        keep = ~self.blocked(lon, lat, cells)
        kept = SpacingIndex(self.min_distance_m)  # the points kept so far, chunk by chunk
        for start in range(0, lon.size, _CHUNK):
            idx = np.arange(start, min(start + _CHUNK, lon.size))
            idx = idx[keep[idx]]
            if idx.size == 0:
                continue
            near = kept.blocked(lon[idx], lat[idx])
            keep[idx[near]] = False
            idx = idx[~near]
            ok = greedy_spacing(unit_vectors(lon[idx], lat[idx]), self._chord)
            keep[idx[~ok]] = False
            kept.add(lon[idx[ok]], lat[idx[ok]])
        return keep


def greedy_spacing(xyz: np.ndarray, chord_length: float) -> np.ndarray:
    """Greedy, in order: keep a point unless an earlier kept point is within ``chord_length`` of it.

    Decided in rounds over the close pairs rather than point by point: a
    point is dropped once an earlier neighbour is kept, and kept once every
    earlier neighbour is dropped. Each round settles at least the first
    point still open, so the answer is the in-order one; chains of close
    points are short, so there are few rounds.
    """
    n = len(xyz)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    pairs = cKDTree(xyz).query_pairs(chord_length * (1 - 1e-12), output_type="ndarray")
    if pairs.size == 0:
        return keep
    earlier, later = pairs.min(axis=1), pairs.max(axis=1)
    state = np.zeros(n, dtype=np.int8)  # 0 open, 1 kept, -1 dropped
    while True:
        dropped = later[state[earlier] == 1]
        state[dropped[state[dropped] == 0]] = -1
        blocked = np.zeros(n, dtype=bool)  # an earlier neighbour is still open, or kept
        blocked[later[state[earlier] != -1]] = True
        settled = (state == 0) & ~blocked
        if not settled.any():  # the first open point is always settled: none is left open
            break
        state[settled] = 1
    return state == 1


def nearest_neighbour_m(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Geodesic distance (WGS 84, metres) from each point to its nearest other point; NaN for a lone point."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    out = np.full(lon.size, np.nan)
    if lon.size < 2:
        return out
    xyz = unit_vectors(lon, lat)
    _, idx = cKDTree(xyz).query(xyz, k=2, workers=_QUERY_WORKERS)  # the queries split across the cores
    import pyproj

    other = np.where(idx[:, 0] == np.arange(lon.size), idx[:, 1], idx[:, 0])
    _, _, dist = pyproj.Geod(ellps="WGS84").inv(lon, lat, lon[other], lat[other])
    return np.asarray(dist, dtype=np.float64)


def overlapping_pairs(lon: np.ndarray, lat: np.ndarray, footprints: np.ndarray, max_chip_m: float) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of footprints that share area (touching edges do not count).

    Candidates come from a neighbour search over the centres (within 1.05 chip diagonals on the
    :data:`R_MIN_M` sphere, which never underestimates how close two chips can be); each is then
    tested on the footprints themselves.
    """
    lon = np.asarray(lon, dtype=np.float64)
    if lon.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    reach = chord(1.05 * math.sqrt(2.0) * max_chip_m)
    pairs = cKDTree(unit_vectors(lon, lat)).query_pairs(reach, output_type="ndarray")
    if pairs.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    import shapely

    geoms = np.asarray(footprints, dtype=object)
    shared = shapely.area(shapely.intersection(geoms[pairs[:, 0]], geoms[pairs[:, 1]]))
    return np.sort(pairs[shared > 0], axis=1)


_PAIRS_AT_ONCE = 8_192


def footprint_distances_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in metres between the lon/lat footprints of each pair ``(a[k], b[k])`` (0 where they touch or overlap).

    Each pair's vertices go to Earth-centred coordinates on the WGS 84 ellipsoid and onto the plane
    tangent to the ellipsoid at their middle, where lengths of tens of kilometres are true to well
    under a centimetre; the antimeridian and the poles are nothing special there. Shapely's array
    functions do every pair at once, in blocks, so memory stays bounded however many there are.
    """
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    out = np.empty(a.size)
    for start in range(0, a.size, _PAIRS_AT_ONCE):
        part = slice(start, start + _PAIRS_AT_ONCE)
        out[part] = _footprint_distances(a[part], b[part])
    return out


def _footprint_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import shapely

    n = a.size
    coords_a, pair_a = shapely.get_coordinates(a, return_index=True)
    coords_b, pair_b = shapely.get_coordinates(b, return_index=True)
    xyz_a, xyz_b = _ecef(coords_a[:, 0], coords_a[:, 1]), _ecef(coords_b[:, 0], coords_b[:, 1])
    count = np.bincount(pair_a, minlength=n) + np.bincount(pair_b, minlength=n)
    centre = (
        np.column_stack([np.bincount(pair_a, xyz_a[:, k], n) + np.bincount(pair_b, xyz_b[:, k], n) for k in range(3)])
        / np.maximum(count, 1)[:, None]
    )
    up = centre * _NORMAL_SCALE  # the ellipsoid's normal there (not the geocentric direction, 0.19° off at 45°)
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    east = np.cross([0.0, 0.0, 1.0], up)
    length = np.linalg.norm(east, axis=1, keepdims=True)
    east = np.where(length > 1e-9, east / np.where(length > 1e-9, length, 1.0), [1.0, 0.0, 0.0])
    north = np.cross(up, east)

    def onto_plane(xyz: np.ndarray, pair: np.ndarray) -> np.ndarray:
        local = xyz - centre[pair]
        return np.column_stack([np.einsum("ij,ij->i", local, east[pair]), np.einsum("ij,ij->i", local, north[pair])])

    # shapely.transform hands over the coordinates in get_coordinates' order: those projected here.
    plane_a = shapely.transform(a, lambda _: onto_plane(xyz_a, pair_a))
    plane_b = shapely.transform(b, lambda _: onto_plane(xyz_b, pair_b))
    return shapely.distance(shapely.make_valid(plane_a), shapely.make_valid(plane_b))


_WGS84_A, _WGS84_F = 6_378_137.0, 1 / 298.257223563
_NORMAL_SCALE = np.array([1.0, 1.0, 1.0 / (1 - _WGS84_F) ** 2])
"""(x, y, z) times this is along the normal of the WGS 84 ellipsoid at a point on it: ∇(x²/a² + y²/a² + z²/b²)."""


def _ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Earth-centred, Earth-fixed metres (WGS 84) of lon/lat degrees on the ellipsoid."""
    a, f = _WGS84_A, _WGS84_F
    e2 = f * (2 - f)
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    n = a / np.sqrt(1 - e2 * np.sin(lat_r) ** 2)
    return np.column_stack(
        [n * np.cos(lat_r) * np.cos(lon_r), n * np.cos(lat_r) * np.sin(lon_r), n * (1 - e2) * np.sin(lat_r)]
    )

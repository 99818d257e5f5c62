"""Distance spacing: no two sites closer than a minimum distance, checked through the H3 grid.

:class:`SpacingIndex` holds the sites taken so far and answers, for a batch
of new points, which have a taken site within the minimum distance ``D``.
Each taken site is filed under every H3 cell of the 1-ring (``grid_disk``,
7 cells) around its *bucket*, the parent cell that holds it at the finest
resolution whose edges are at least ``2·D`` long on average; a point then
looks up its own bucket only, and measures the few sites filed there. Two
points closer than ``D`` always have neighbouring buckets (the ring reaches
at least one whole cell, some ``3·D``, beyond a bucket in every direction,
however H3 distorts its cells and however far a descendant's centre strays
from its parent's outline), so nothing is missed, and the cost of a batch is
proportional to its size, not to the number of sites taken.

Distances are great circles on a sphere of radius :data:`R_MIN_M`, the
smallest radius of curvature of the WGS 84 ellipsoid: never longer than the
true geodesic distance, so sites kept apart by ``D`` on this sphere are at
least ``D`` apart on the Earth.

The same index serves any sampler that must keep the spacing of a plan
(the ordinary draw, event sites, reserve sites).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import h3
import numpy as np
from h3 import _cy
from scipy.spatial import cKDTree

from geosample.sampling import _h3

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
_RING = 1
_EDGE_OVER_DISTANCE = 2.0
_CHUNK = 50_000
_MERGE_AFTER = 8


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


def bucket_resolution(min_distance_m: float) -> tuple[int, int]:
    """The bucket resolution (edges at least ``2·D`` on average) and the ring that covers ``D``."""
    for res in range(15, -1, -1):
        if h3.average_hexagon_edge_length(res, "m") >= _EDGE_OVER_DISTANCE * min_distance_m:
            return res, _RING
    edge = h3.average_hexagon_edge_length(0, "m")
    return 0, _RING + math.ceil(_EDGE_OVER_DISTANCE * min_distance_m / edge)


class SpacingIndex:
    """Sites taken so far, filed by H3 bucket, for "is a taken site within ``D`` of these points?".

    Args:
        min_distance_m: The spacing ``D`` in metres (> 0).
    """

    def __init__(self, min_distance_m: float) -> None:
        if not min_distance_m > 0:
            raise ValueError("a spacing index needs a positive distance")
        self.min_distance_m = float(min_distance_m)
        self.res, self.ring = bucket_resolution(self.min_distance_m)
        self._chord = chord(self.min_distance_m)
        self._xyz: list[np.ndarray] = []
        self._n = 0
        # Sorted runs of (ring cell, site position); a few runs are merged into one now and then.
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._all_xyz = np.empty((0, 3))

    def __len__(self) -> int:
        """Number of sites taken."""
        return self._n

    def buckets(self, lon: np.ndarray, lat: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """The bucket of each point: the parent of its H3 cell when given (cheap), else the cell holding it."""
        if cells is not None and cells.size and int(_h3.resolution(cells[:1])[0]) >= self.res:
            return _h3.parent(cells, self.res)
        return _h3.cells_from_points(np.asarray(lon, float), np.asarray(lat, float), self.res)

    def add(self, lon: np.ndarray, lat: np.ndarray, cells: np.ndarray | None = None) -> None:
        """Take sites at these points (``cells``: their H3 cells at any resolution, if known)."""
        lon = np.asarray(lon, dtype=np.float64)
        if lon.size == 0:
            return
        xyz = unit_vectors(lon, lat)
        bucket = self.buckets(lon, lat, cells)
        # h3's Cython grid_disk, without the Python wrapper's checks (fewer cells next to a pentagon).
        rings = [_cy.grid_disk(b, self.ring) for b in bucket.tolist()]
        counts = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
        keys = np.fromiter(itertools.chain.from_iterable(rings), dtype=np.uint64, count=int(counts.sum()))
        owner = np.repeat(np.arange(self._n, self._n + lon.size), counts)
        real = keys != 0
        keys, owner = keys[real], owner[real]
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], owner[order]))
        self._xyz.append(xyz)
        self._n += lon.size
        self._all_xyz = np.concatenate(self._xyz) if len(self._xyz) > 1 else xyz
        self._xyz = [self._all_xyz]
        if len(self._runs) > _MERGE_AFTER:
            keys = np.concatenate([r[0] for r in self._runs])
            owner = np.concatenate([r[1] for r in self._runs])
            order = np.argsort(keys, kind="stable")
            self._runs = [(keys[order], owner[order])]

    def blocked(self, lon: np.ndarray, lat: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """Whether a taken site lies closer than ``D`` to each point."""
        lon = np.asarray(lon, dtype=np.float64)
        out = np.zeros(lon.size, dtype=bool)
        if self._n == 0 or lon.size == 0:
            return out
        bucket = self.buckets(lon, lat, cells)
        xyz = unit_vectors(lon, lat)
        for keys, owner in self._runs:
            lo = np.searchsorted(keys, bucket, side="left")
            hi = np.searchsorted(keys, bucket, side="right")
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            point = np.repeat(np.arange(lon.size), counts)
            start = np.repeat(lo - np.cumsum(counts) + counts, counts)
            site = owner[start + np.arange(total)]
            close = np.linalg.norm(xyz[point] - self._all_xyz[site], axis=1) < self._chord
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
        kept_xyz: list[np.ndarray] = []
        for start in range(0, lon.size, _CHUNK):
            idx = np.arange(start, min(start + _CHUNK, lon.size))
            idx = idx[keep[idx]]
            if idx.size == 0:
                continue
            xyz = unit_vectors(lon[idx], lat[idx])
            if kept_xyz:
                dist, _ = cKDTree(np.concatenate(kept_xyz)).query(xyz, distance_upper_bound=self._chord)
                near = dist < self._chord
                keep[idx[near]] = False
                idx, xyz = idx[~near], xyz[~near]
            ok = greedy_spacing(xyz, self._chord)
            keep[idx[~ok]] = False
            kept_xyz.append(xyz[ok])
        return keep


def greedy_spacing(xyz: np.ndarray, chord_length: float) -> np.ndarray:
    """Greedy, in order: keep a point unless an earlier kept point is within ``chord_length`` of it."""
    keep = np.ones(len(xyz), dtype=bool)
    if len(xyz) < 2:
        return keep
    pairs = cKDTree(xyz).query_pairs(chord_length * (1 - 1e-12), output_type="ndarray")
    if pairs.size == 0:
        return keep
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    first, starts = np.unique(pairs[:, 0], return_index=True)
    bounds = np.append(starts, len(pairs))
    for k, i in enumerate(first.tolist()):
        if keep[i]:
            keep[pairs[bounds[k] : bounds[k + 1], 1]] = False
    return keep


def nearest_neighbour_m(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Geodesic distance (WGS 84, metres) from each point to its nearest other point; NaN for a lone point."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    out = np.full(lon.size, np.nan)
    if lon.size < 2:
        return out
    _, idx = cKDTree(unit_vectors(lon, lat)).query(unit_vectors(lon, lat), k=2)
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


def footprint_distance_m(a: object, b: object) -> float:
    """Distance in metres between two lon/lat footprints (0 when they touch or overlap).

    Their vertices go to Earth-centred coordinates on the WGS 84 ellipsoid and onto the plane
    tangent at their middle, where lengths of tens of kilometres are true to well under a
    centimetre; the antimeridian and the poles are nothing special there.
    """
    import shapely

    coords = shapely.get_coordinates(np.array([a, b], dtype=object))
    xyz = _ecef(coords[:, 0], coords[:, 1])
    centre = xyz.mean(axis=0)
    up = centre / np.linalg.norm(centre)
    east = np.cross([0.0, 0.0, 1.0], up)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-9 else np.array([1.0, 0.0, 0.0])
    north = np.cross(up, east)

    def to_plane(lonlat: np.ndarray) -> np.ndarray:
        local = _ecef(lonlat[:, 0], lonlat[:, 1]) - centre
        return np.column_stack([local @ east, local @ north])

    pa, pb = (shapely.make_valid(shapely.transform(g, to_plane)) for g in (a, b))
    return float(shapely.distance(pa, pb))


def _ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Earth-centred, Earth-fixed metres (WGS 84) of lon/lat degrees on the ellipsoid."""
    a, f = 6_378_137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    n = a / np.sqrt(1 - e2 * np.sin(lat_r) ** 2)
    return np.column_stack(
        [n * np.cos(lat_r) * np.cos(lon_r), n * np.cos(lat_r) * np.sin(lon_r), n * (1 - e2) * np.sin(lat_r)]
    )

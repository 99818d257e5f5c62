"""Point-in-polygon lookups and reading of users' vector layers."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from geosample.errors import GeometryRepairWarning, LayerError

_PARQUET_SUFFIXES = {".parquet", ".geoparquet", ".pq"}


class PolygonIndex:
    """Which polygon (by position) holds each point.

    Multi-polygons are split into parts so that each part has a tight
    bounding box (Russia or Fiji would otherwise span the globe); points are
    sorted by longitude once, so each part tests only the points inside its
    box, with a prepared ``contains_xy``. Points on a boundary count as
    outside; where polygons overlap, the first one wins.
    """

    def __init__(self, geometries: np.ndarray, grid: PolygonGrid | None = None) -> None:
        geoms = np.asarray(geometries, dtype=object)
        self._parts, self._owner = polygon_parts(geoms)
        shapely.prepare(self._parts)
        self._bounds = shapely.bounds(self._parts)
        self.size = len(geoms)
        self.grid = grid

    def lookup(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Position of the polygon holding each point, -1 where none does.

        With a :class:`PolygonGrid`, points in cells no outline crosses take
        the cell's answer, and only the others are tested on the polygons.
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if self.grid is None:
            return self._lookup_polygons(lon, lat)
        out = self.grid.answers(lon, lat)
        open_ = np.flatnonzero(out == MIXED)
        if open_.size:
            out[open_] = self._lookup_polygons(lon[open_], lat[open_])
        return out

    def _lookup_polygons(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        out = np.full(lon.shape, np.iinfo(np.int64).max, dtype=np.int64)
        order = np.argsort(lon, kind="stable")
        xs = lon[order]
        ys = lat[order]
        lo = np.searchsorted(xs, self._bounds[:, 0], side="left")
        hi = np.searchsorted(xs, self._bounds[:, 2], side="right")
        for k in np.flatnonzero(hi > lo):
            a, b = lo[k], hi[k]
            (yin,) = np.nonzero((ys[a:b] >= self._bounds[k, 1]) & (ys[a:b] <= self._bounds[k, 3]))
            if yin.size == 0:
                continue
            sel = yin + a
            hit = sel[shapely.contains_xy(self._parts[k], xs[sel], ys[sel])]
            if hit.size:
                pos = order[hit]
                out[pos] = np.minimum(out[pos], self._owner[k])
        out[out == np.iinfo(np.int64).max] = -1
        return out


def polygon_parts(geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty polygon parts of ``geometries`` and the position of the geometry each comes from."""
    parts, owner = shapely.get_parts(geometries, return_index=True)
    keep = ~shapely.is_empty(parts) & (shapely.get_type_id(parts) == 3)  # polygons only
    return parts[keep], owner[keep]


MIXED = -2
"""A :class:`PolygonGrid` cell that an outline crosses: its points need the polygons."""


@dataclasses.dataclass(frozen=True)
class PolygonGrid:
    """The answer of a :class:`PolygonIndex` for whole cells of a lon/lat grid.

    ``cells[row, col]`` is the position of the polygon that holds the whole
    cell, -1 where no polygon touches it, or :data:`MIXED` where an outline
    (holes' included) passes through it or its eight neighbours; the grid
    covers lon -180..180 and lat 90..-90 (row 0 in the north) in cells of
    ``res_deg``. Points outside it, or on its outer edge, are ``MIXED``.
    Built by :func:`build_polygon_grid`.
    """

    cells: np.ndarray
    res_deg: float

    def answers(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The cell's answer for each point (int64; :data:`MIXED` where the polygons must decide)."""
        height, width = self.cells.shape
        col = np.floor((lon + 180.0) / self.res_deg)
        row = np.floor((90.0 - lat) / self.res_deg)
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)  # NaN compares False: outside
        flat = np.where(inside, row * width + col, 0).astype(np.int64)
        out = self.cells.ravel()[flat].astype(np.int64)
        out[~inside] = MIXED
        return out


def build_polygon_grid(geometries: np.ndarray, res_deg: float) -> np.ndarray:
    """The cells of a :class:`PolygonGrid` over ``geometries`` (int16; polygons found by position).

    Each cell takes the polygon holding its centre (the first one where
    polygons overlap, as :meth:`PolygonIndex.lookup` answers); a cell that an
    outline touches is :data:`MIXED` (rasterised with GDAL's all-touched
    rule), and so are its eight neighbours, so that an outline running along
    a cell's edge or through a corner can never leave a cell it crosses
    unmarked. The cells along the grid's edges are :data:`MIXED` too.
    """
    import rasterio.features
    from rasterio import Affine

    geoms = np.asarray(geometries, dtype=object)
    if len(geoms) >= np.iinfo(np.int16).max:
        raise ValueError("a polygon grid holds at most 32,766 polygons")
    width, height = round(360 / res_deg), round(180 / res_deg)
    transform = Affine(res_deg, 0.0, -180.0, 0.0, -res_deg, 90.0)
    parts, owner = polygon_parts(geoms)
    last_first = np.argsort(-owner, kind="stable")  # later shapes are burnt over earlier ones: the first wins
    cells = rasterio.features.rasterize(
        ((parts[i], int(owner[i])) for i in last_first),
        out_shape=(height, width),
        transform=transform,
        fill=-1,
        dtype="int16",
        all_touched=False,
    )
    crossed = rasterio.features.rasterize(
        ((line, 1) for line in shapely.boundary(parts)),
        out_shape=(height, width),
        transform=transform,
        fill=0,
        dtype="uint8",
        all_touched=True,
    ).astype(bool)
    near = crossed.copy()
    near[1:] |= crossed[:-1]
    near[:-1] |= crossed[1:]
    wide = near.copy()
    wide[:, 1:] |= near[:, :-1]
    wide[:, :-1] |= near[:, 1:]
    cells[wide] = MIXED
    # The grid's own edges (lon ±180, lat ±90) are outlines too, where polygons are cut at the antimeridian
    # and the poles, and a raster's edge burns no line: those cells are left to the polygons.
    cells[[0, -1], :] = MIXED
    cells[:, [0, -1]] = MIXED
    return cells


def read_vector(path: str | Path, *, what: str = "layer", columns: list[str] | None = None) -> gpd.GeoDataFrame:
    """Read a GIS vector file into EPSG:4326, repairing invalid geometries.

    Accepts whatever pyogrio reads (GeoPackage, shapefile, GeoJSON,
    FlatGeobuf, ...) and GeoParquet. A layer without a CRS is refused, since
    guessing one silently misplaces everything.
    """
    path = Path(path)
    if not path.exists():
        raise LayerError(f"{what} file {path} does not exist; check the path")
    try:
        if path.suffix.lower() in _PARQUET_SUFFIXES:
            gdf = gpd.read_parquet(path, columns=None if columns is None else [*columns, "geometry"])
        else:
            gdf = gpd.read_file(path, engine="pyogrio", columns=columns)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split("; It might help")[0].rstrip(".")
        raise LayerError(f"cannot read {what} file {path}: {first}") from None
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf:
        raise LayerError(f"{what} file {path} has no geometry column")
    if gdf.crs is None:
        raise LayerError(
            f"{what} file {path} has no CRS; set one in QGIS (Layer → Assign projection) or with ogr2ogr -a_srs"
        )
    gdf = gdf[~gdf.geometry.isna() & ~gdf.geometry.is_empty]
    if gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs("EPSG:4326")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        warnings.warn(
            f"{what} file {path}: repaired {int(invalid.sum())} invalid "
            f"geometr{'y' if invalid.sum() == 1 else 'ies'} with make_valid",
            GeometryRepairWarning,
            stacklevel=2,
        )
        gdf = gdf.copy()
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values)
    return gdf

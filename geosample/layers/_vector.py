"""Point-in-polygon lookups and reading of users' vector layers."""

from __future__ import annotations

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

    def __init__(self, geometries: np.ndarray) -> None:
        geoms = np.asarray(geometries, dtype=object)
        parts, owner = shapely.get_parts(geoms, return_index=True)
        keep = ~shapely.is_empty(parts) & (shapely.get_type_id(parts) == 3)  # polygons only
        self._parts = parts[keep]
        self._owner = owner[keep]
        shapely.prepare(self._parts)
        self._bounds = shapely.bounds(self._parts)
        self.size = len(geoms)

    def lookup(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Position of the polygon holding each point, -1 where none does."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
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

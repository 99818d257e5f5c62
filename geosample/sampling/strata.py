"""Stratification dimensions: what each layer says at a point.

A dimension maps points to integer codes into its ``categories`` (-1 where
the layer has no data there). Built-in dimensions read the embedded layers;
``NAME=PATH`` adds a user raster (its value) and ``NAME=PATH:COLUMN`` a user
vector layer (the column's value).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from geosample import layers
from geosample.errors import ConfigError, LayerError
from geosample.sampling.config import BUILTIN_DIMENSIONS

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {
    "sample_id", "site_id", "h3", "h3_res", "lon", "lat", "stratum", "start_datetime", "end_datetime",
    "time_bin", "season", "chip_size_m", "epsg", "geometry",
}  # fmt: skip

_UNKNOWN = -2
"""A country row not looked up yet (-1 is the sea)."""


class Points:
    """A batch of lon/lat points with lazily computed, shared lookups."""

    def __init__(self, lon: np.ndarray, lat: np.ndarray) -> None:
        self.lon = np.asarray(lon, dtype=np.float64)
        self.lat = np.asarray(lat, dtype=np.float64)
        self._country: np.ndarray | None = None

    def __len__(self) -> int:
        return self.lon.size

    def subset(self, index: np.ndarray) -> Points:
        """The points at ``index``, keeping lookups already made."""
        out = Points(self.lon[index], self.lat[index])
        if self._country is not None:
            out._country = self._country[index]
        return out

    def learn(self, index: np.ndarray, part: Points) -> None:
        """Keep the lookups made on ``part``, the subset at ``index``, for later subsets."""
        if part._country is None:
            return
        if self._country is None:
            self._country = np.full(len(self), _UNKNOWN, dtype=part._country.dtype)
        self._country[index] = part._country

    @property
    def country(self) -> np.ndarray:
        """Row position in :func:`geosample.layers.countries`, -1 at sea."""
        if self._country is None:
            self._country = layers.country_index().lookup(self.lon, self.lat)
        elif (unknown := self._country == _UNKNOWN).any():  # points learnt from a subset are looked up once
            self._country[unknown] = layers.country_index().lookup(self.lon[unknown], self.lat[unknown])
        return self._country


class Dimension(Protocol):
    """A stratification dimension."""

    name: str
    categories: list[str]
    cost: int
    """Relative cost per point; cheap dimensions are tested first (the order changes no result: a point
    is kept only if every dimension keeps it)."""

    def classify(self, points: Points) -> np.ndarray:
        """Codes into ``categories`` for each point; -1 where there is no data."""
        ...


@dataclasses.dataclass
class _CountryAttribute:
    """A column of the embedded countries layer (continent or ISO code)."""

    name: str
    column: str
    categories: list[str] = dataclasses.field(init=False)
    cost: int = 3  # a point-in-polygon test: ~1 µs a point, >10x a raster lookup

    def __post_init__(self) -> None:
        values = layers.countries()[self.column].astype(str).to_numpy()
        self.categories = sorted(set(values))
        position = {v: i for i, v in enumerate(self.categories)}
        self._code_of_row = np.array([position[v] for v in values], dtype=np.int32)

    def classify(self, points: Points) -> np.ndarray:
        rows = points.country
        return np.where(rows >= 0, self._code_of_row[np.maximum(rows, 0)], -1).astype(np.int32)


@dataclasses.dataclass
class _ClassRaster:
    """An embedded categorical raster with named classes."""

    name: str
    sampler: object
    classes: dict[int, str]
    categories: list[str] = dataclasses.field(init=False)
    cost: int = 1

    def __post_init__(self) -> None:
        self.categories = list(self.classes.values())
        self._lut = np.full(256, -1, dtype=np.int32)
        for i, value in enumerate(self.classes):
            self._lut[value] = i

    def classify(self, points: Points) -> np.ndarray:
        values, valid = self.sampler.sample(points.lon, points.lat)  # type: ignore[attr-defined]
        return np.where(valid, self._lut[values.astype(np.int64) & 0xFF], -1).astype(np.int32)


class _GrowingCategories:
    """Maps arbitrary values to stable codes, in order of first appearance."""

    def __init__(self) -> None:
        self.categories: list[str] = []
        self._codes: dict[str, int] = {}

    def encode(self, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = np.full(labels.shape, -1, dtype=np.int32)
        if valid.any():
            uniques, inverse = np.unique(labels[valid], return_inverse=True)
            codes = np.array([self._code(str(u)) for u in uniques], dtype=np.int32)
            out[valid] = codes[inverse]
        return out

    def _code(self, label: str) -> int:
        if label not in self._codes:
            self._codes[label] = len(self.categories)
            self.categories.append(label)
        return self._codes[label]


class _UserRaster(_GrowingCategories):
    """A user raster: the value at the point, as a string."""

    cost = 1

    def __init__(self, name: str, path: Path) -> None:
        super().__init__()
        self.name = name
        self._sampler = layers.RasterPointSampler(path)

    def classify(self, points: Points) -> np.ndarray:
        values, valid = self._sampler.sample(points.lon, points.lat)
        if values.dtype.kind == "f":
            integral = np.isfinite(values) & (values == np.round(values))
            labels = np.where(integral, values.astype(np.int64).astype(str), values.astype(str))
        else:
            labels = values.astype(str)
        return self.encode(labels, valid)


class _UserVector(_GrowingCategories):
    """A user polygon layer: the column's value in the polygon holding the point."""

    cost = 4

    def __init__(self, name: str, path: Path, column: str) -> None:
        super().__init__()
        self.name = name
        gdf = layers.read_vector(path, what=f"stratum layer {name!r}")
        if column not in gdf.columns:
            cols = ", ".join(c for c in gdf.columns if c != gdf.geometry.name)
            raise LayerError(f"stratum layer {path} has no column {column!r}; its columns: {cols}")
        gdf = gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
        if gdf.empty:
            raise LayerError(f"stratum layer {path} has no polygons; a vector stratum needs polygons")
        self._index = layers.PolygonIndex(gdf.geometry.values)
        self._present = gdf[column].notna().to_numpy()
        self._labels = gdf[column].astype(str).to_numpy()

    def classify(self, points: Points) -> np.ndarray:
        rows = self._index.lookup(points.lon, points.lat)
        valid = rows >= 0
        valid[valid] = self._present[rows[valid]]
        return self.encode(self._labels[np.maximum(rows, 0)], valid)


def build_dimension(spec: str) -> Dimension:
    """A dimension from its ``--strata`` item."""
    spec = spec.strip()
    if spec == "continent":
        return _CountryAttribute("continent", "continent")
    if spec == "country":
        return _CountryAttribute("country", "iso3")
    if spec == "climate":  # run-length coded: a lookup costs about twice land cover's
        return _ClassRaster("climate", layers.climate_sampler(), layers.CLIMATE_CLASSES, cost=2)
    if spec == "landcover":
        return _ClassRaster("landcover", layers.landcover_sampler(), layers.IGBP_CLASSES)
    if "=" not in spec:
        raise ConfigError(
            f"unknown stratum {spec!r}; use one of {', '.join(BUILTIN_DIMENSIONS)} "
            "or a user layer as NAME=PATH (raster) or NAME=PATH:COLUMN (vector)"
        )
    name, target = (s.strip() for s in spec.split("=", 1))
    if name in BUILTIN_DIMENSIONS or name in _RESERVED:
        raise ConfigError(f"stratum name {name!r} is taken by a built-in column; give the user layer another NAME")
    if not _NAME_RE.match(name):
        raise ConfigError(f"stratum name {name!r} is not usable as a column; use letters, digits and _")
    path, column = Path(target), None
    if not path.exists() and ":" in target:
        head, column = target.rsplit(":", 1)
        path = Path(head)
    if not path.exists():
        raise LayerError(f"stratum layer {name!r}: file {path} does not exist; check the path")
    if column is not None:
        return _UserVector(name, path, column)
    if _is_raster(path):
        return _UserRaster(name, path)
    raise ConfigError(f"stratum layer {name!r} ({path}) is a vector layer; name the column: {name}={path}:COLUMN")


def _is_raster(path: Path) -> bool:
    import rasterio

    if path.suffix.lower() in {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".parquet", ".geoparquet"}:
        return False
    try:
        with rasterio.open(path):
            return True
    except rasterio.errors.RasterioIOError:
        return False


def build_dimensions(specs: tuple[str, ...]) -> list[Dimension]:
    """All dimensions of a ``--strata`` list, refusing duplicates."""
    dims = [build_dimension(s) for s in specs]
    names = [d.name for d in dims]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"--strata names {', '.join(duplicates)} more than once; give each dimension once")
    return dims

"""Label sources: where class values come from, read onto each chip's label grid.

A source turns a :class:`~geosample.labels.grids.LabelGrid` into per-region
pixel counts of its *slots*: the distinct source values it can produce
(raster values, or a vector column's values), plus one slot for no data.
Mapping slots to taxonomy classes happens after counting, on a few numbers
per chip, so unmapped values can be reported with their share.

Built in:
- ``embedded``: the MODIS IGBP 2019 layer shipped with geosample (offline);
- a local categorical raster (any CRS, any integer type);
- a vector layer ``PATH:COLUMN`` (a class or OSM-tag column), rasterised on the grid;
- ``stac:COLLECTION``: land-cover COGs found through a STAC API (see :mod:`geosample.labels.stac_source`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
import shapely
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from geosample import layers
from geosample.errors import SourceError
from geosample.labels.fractions import count_regions
from geosample.labels.grids import LabelGrid
from geosample.sampling._geometry import _to_crs

EMBEDDED = "embedded"
EMBEDDED_FILE = "modis_igbp_2019_0p05deg.tif"
EMBEDDED_SCHEME = "modis-igbp"
EMBEDDED_YEAR = 2019
_METRES_PER_DEGREE = 111_320.0


class SourceReader(Protocol):
    """Counts one chip's source slots per layout region (rows as in ``fractions.REGIONS``)."""

    def counts(self, grid: LabelGrid) -> np.ndarray:
        """(5, n_slots) pixel counts; the last slot is no data."""
        ...


@dataclasses.dataclass(frozen=True)
class Slots:
    """The distinct values a source can produce, in slot order; the no-data slot is last."""

    values: tuple[str, ...]
    """Source values as strings (as in taxonomy mappings); the last is ``"<nodata>"``."""

    @property
    def nodata(self) -> int:
        """Index of the no-data slot."""
        return len(self.values) - 1


class SourcePart(Protocol):
    """What one task needs of a source for some chips: small and picklable (it travels to Dask workers)."""

    key: Hashable
    """Parts with the same key read the same files: a worker thread keeps one reader per key."""

    def reader(self) -> SourceReader:
        """A reader for the calling thread."""
        ...

    def env(self) -> contextlib.AbstractContextManager[Any]:
        """Settings to read under (GDAL's for remote files), entered once per task."""
        ...


class LabelSource(Protocol):
    """What ``label`` needs from a source: its name, resolution, scheme and a per-thread reader."""

    name: str
    scheme: str | None
    res_m: float | None
    slots: Slots

    def reader(self) -> SourceReader:
        """A reader for the calling thread (datasets are not shared between threads)."""
        ...

    def part(self, grids: Sequence[LabelGrid]) -> SourcePart:
        """What a task counting ``grids`` needs (for a Dask worker): never the whole of a large source."""
        ...


# --------------------------------------------------------------------------------------- rasters


class RasterSource:
    """A categorical raster: the embedded MODIS layer, a local file, or a remote COG.

    Slots are every value of the raster's integer type (256 for 8-bit, 65,536
    for 16-bit), so counting needs no lookup of which values occur.
    """

    def __init__(
        self, path: str | Path, *, name: str, scheme: str | None, year: int | None = None, embedded: bool = False
    ) -> None:
        self.path = str(path)
        self.embedded = embedded
        """The layer shipped with geosample: a worker finds it in its own installation."""
        self.name = name
        self.scheme = scheme
        self.year = year
        """The map's year, where known."""
        try:
            with rasterio.open(self.path) as src:
                self._check(src)
                self.crs = src.crs
                self.dtype = np.dtype(src.dtypes[0])
                self.nodata = src.nodata
                self.transform = src.transform
                self.shape = (src.height, src.width)
                self.res_m = _resolution_m(src)
        except rasterio.RasterioIOError as exc:
            raise SourceError(f"cannot open label raster {self.path}: {_first_line(exc)}") from None
        n = 1 << (8 * self.dtype.itemsize)
        # Slot = value + offset, so signed types count from their minimum.
        self.offset = n // 2 if self.dtype.kind == "i" else 0
        self.slots = Slots((*(str(v - self.offset) for v in range(n)), "<nodata>"))
        self.n_slots = n + 1
        self.epsg = self.crs.to_epsg()

    def _check(self, src: rasterio.DatasetReader) -> None:
        if src.crs is None:
            raise SourceError(
                f"label raster {self.path} has no CRS; assign one (gdal_edit.py -a_srs EPSG:XXXX) and run again"
            )
        dtype = np.dtype(src.dtypes[0])
        if dtype.kind not in "ui" or dtype.itemsize > 2:
            raise SourceError(
                f"label raster {self.path} holds {dtype} values; a land-cover raster of 8- or 16-bit integer "
                "classes is needed (convert it with gdal_translate -ot Byte or -ot UInt16)"
            )

    def reader(self) -> RasterReader:  # noqa: D102
        return RasterReader(self.part(()))

    def part(self, grids: Sequence[LabelGrid]) -> RasterPart:  # noqa: D102
        path = f"{EMBEDDED}:{Path(self.path).name}" if self.embedded else self.path
        return RasterPart(path, self.n_slots, self.offset, self.nodata, self.transform, self.shape, self.epsg)


@dataclasses.dataclass(frozen=True)
class RasterPart:
    """A raster source as a task needs it: where it is and how its values become slots (no slot names)."""

    path: str
    """The raster; ``embedded:<file>`` for the layer shipped with geosample."""
    n_slots: int
    offset: int
    nodata: float | None
    transform: Any
    shape: tuple[int, int]
    epsg: int | None

    @property
    def key(self) -> Hashable:  # noqa: D102
        return ("raster", self.path)

    def reader(self) -> RasterReader:  # noqa: D102
        return RasterReader(self)

    def env(self) -> contextlib.AbstractContextManager[Any]:  # noqa: D102
        return contextlib.nullcontext()


class RasterReader:
    """Reads a raster window onto a chip grid: a plain window read when the grids align, else a warp."""

    def __init__(self, source: RasterPart) -> None:
        self.source = source
        path = source.path
        if path.startswith(f"{EMBEDDED}:"):
            path = str(layers.layer_path(path.split(":", 1)[1]))
        self.src = rasterio.open(path)
        n = source.n_slots - 1
        self.n_slots = n + 1
        nodata = source.nodata
        self.nodata_slot = None
        if nodata is not None and math.isfinite(nodata) and 0 <= int(nodata) + source.offset < n:
            self.nodata_slot = int(nodata) + source.offset
        self.fill = -source.offset - 1

    def counts(self, grid: LabelGrid) -> np.ndarray:  # noqa: D102
        raw = self.read(grid)
        n = self.n_slots - 1
        if raw.dtype.kind == "u":  # a direct read: values are slots already
            counts = count_regions(raw, self.n_slots)
        else:  # padded or warped (int32): shift signed values, send the fill to the no-data slot
            slots = raw + self.source.offset if self.source.offset else raw
            slots = np.where(slots < 0, n, slots)
            counts = count_regions(slots, self.n_slots)
        if self.nodata_slot is not None:
            counts[:, n] += counts[:, self.nodata_slot]
            counts[:, self.nodata_slot] = 0
        return counts

    def read(self, grid: LabelGrid) -> np.ndarray:
        """Raw values on the grid; ``self.fill`` where the raster has no pixel."""
        window = self._aligned_window(grid)
        if window is not None:
            return self._window_read(window, grid.size)
        return self._warp(grid)

    def _aligned_window(self, grid: LabelGrid) -> Window | None:
        """The source window that *is* the grid, when CRS, pixel size and pixel edges coincide."""
        t = self.source.transform
        if self.source.epsg != grid.epsg or t.b != 0 or t.d != 0:
            return None
        if not (math.isclose(t.a, grid.res, rel_tol=1e-9) and math.isclose(-t.e, grid.res, rel_tol=1e-9)):
            return None
        col = (grid.x0 - t.c) / t.a
        row = (t.f - grid.y0) / -t.e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        return Window(round(col), round(row), grid.size, grid.size)

    def _window_read(self, window: Window, size: int) -> np.ndarray:
        height, width = self.source.shape
        c0, r0 = int(window.col_off), int(window.row_off)
        if c0 >= 0 and r0 >= 0 and c0 + size <= width and r0 + size <= height:
            return self.src.read(1, window=window)
        out = np.full((size, size), self.fill, dtype=np.int32)
        cc0, rr0 = max(c0, 0), max(r0, 0)
        cc1, rr1 = min(c0 + size, width), min(r0 + size, height)
        if cc1 > cc0 and rr1 > rr0:
            part = self.src.read(1, window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
            out[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = part
        return out

    def _warp(self, grid: LabelGrid) -> np.ndarray:
        """Nearest-neighbour warp of just the source window under the chip onto the grid."""
        src = self.src
        out = np.full((grid.size, grid.size), self.fill, dtype=np.int32)
        try:
            left, bottom, right, top = rasterio.warp.transform_bounds(
                f"EPSG:{grid.epsg}", src.crs, *grid.bounds, densify_pts=21
            )
        except Exception:  # noqa: BLE001 - PROJ cannot place the chip in the source CRS: nothing to read
            return out
        if not all(map(math.isfinite, (left, bottom, right, top))):
            return out
        window = from_bounds(left, bottom, right, top, transform=src.transform)
        c0 = math.floor(window.col_off) - 1
        r0 = math.floor(window.row_off) - 1
        c1 = math.ceil(window.col_off + window.width) + 1
        r1 = math.ceil(window.row_off + window.height) + 1
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, src.width), min(r1, src.height)
        if c1 <= c0 or r1 <= r0:
            return out
        window = Window(c0, r0, c1 - c0, r1 - r0)
        data = src.read(1, window=window).astype(np.int32)
        nodata = self.source.nodata
        rasterio.warp.reproject(
            data,
            out,
            src_transform=src.window_transform(window),
            src_crs=src.crs,
            src_nodata=nodata if nodata is not None and math.isfinite(nodata) else None,
            dst_transform=grid.transform,
            dst_crs=f"EPSG:{grid.epsg}",
            dst_nodata=self.fill,
            resampling=Resampling.nearest,
        )
        return out

    def close(self) -> None:
        """Release the dataset."""
        self.src.close()


def _resolution_m(src: rasterio.DatasetReader) -> float:
    res = abs(src.transform.a)
    if src.crs.is_geographic:
        return res * _METRES_PER_DEGREE
    return res * (src.crs.linear_units_factor[1] if src.crs.linear_units_factor else 1.0)


def embedded_source() -> RasterSource:
    """The MODIS IGBP 2019 land-cover layer shipped with geosample (0.05°, about 5.6 km)."""
    return RasterSource(
        layers.layer_path(EMBEDDED_FILE), name="modis-igbp@embedded", scheme=EMBEDDED_SCHEME, year=EMBEDDED_YEAR,
        embedded=True,
    )  # fmt: skip


# --------------------------------------------------------------------------------------- vectors


class VectorSource:
    """A polygon layer with a class column, rasterised onto each chip's grid.

    Where polygons overlap, the smaller one wins (it is drawn last), so a
    building inside a residential area or a pond inside a park keeps its own
    class. Ground under no polygon is no data.
    """

    def __init__(self, path: str | Path, column: str, *, scheme: str | None, resolution_m: float | None) -> None:
        path = Path(path)
        self.path = path
        self.column = column
        self.scheme = scheme
        self.name = f"{path.name}:{column}@vector"
        gdf = layers.read_vector(path, what="label vector")
        if column not in gdf.columns:
            names = ", ".join(c for c in gdf.columns if c != gdf.geometry.name) or "none"
            raise SourceError(f"label vector {path} has no column {column!r}; its columns are: {names}")
        gdf = gdf[gdf[column].notna()]
        polygonal = gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon", "GeometryCollection"])
        gdf = gdf[polygonal]
        if gdf.empty:
            raise SourceError(f"label vector {path} has no polygons with a value in column {column!r}")
        raw = gdf[column].astype(str).str.strip()
        if scheme == "osm":
            raw = raw.where(raw.str.contains("="), column + "=" + raw)
        values, codes = np.unique(raw.to_numpy(), return_inverse=True)
        self.slots = Slots((*[str(v) for v in values], "<nodata>"))
        # Largest first, so smaller features are drawn over larger ones.
        geoms = gdf.geometry.to_numpy()
        order = np.argsort(-shapely.area(geoms), kind="stable")
        self.geometries = geoms[order]
        self.slot_ids = codes[order].astype(np.int32)
        self.tree = shapely.STRtree(self.geometries)
        self.res_m = resolution_m
        self._lock = threading.Lock()

    def reader(self) -> VectorReader:  # noqa: D102
        return VectorReader(self)

    def part(self, grids: Sequence[LabelGrid]) -> VectorPart:
        """Only the polygons under ``grids``, in the layer's drawing order (so they rasterise the same)."""
        boxes = shapely.polygons([_lonlat_box(g) for g in grids]) if grids else np.array([], dtype=object)
        hits = np.unique(self.tree.query(boxes, predicate="intersects")[1]) if len(boxes) else np.array([], int)
        return VectorPart(
            f"{self.path}:{self.column}", self.geometries[hits], self.slot_ids[hits], len(self.slots.values)
        )


@dataclasses.dataclass(frozen=True)
class VectorPart:
    """Some polygons of a vector source (largest first) with their slots: what a task's chips meet."""

    name: str
    geometries: np.ndarray
    slot_ids: np.ndarray
    n_slots: int

    @property
    def key(self) -> Hashable:  # noqa: D102
        return None  # nothing to keep open

    @property
    def tree(self) -> shapely.STRtree:
        """The polygons' index (built once per part)."""
        tree = self.__dict__.get("_tree")
        if tree is None:
            tree = shapely.STRtree(self.geometries)
            object.__setattr__(self, "_tree", tree)
        return tree

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_tree"}

    def reader(self) -> VectorReader:  # noqa: D102
        return VectorReader(self)

    def env(self) -> contextlib.AbstractContextManager[Any]:  # noqa: D102
        return contextlib.nullcontext()


def _lonlat_box(grid: LabelGrid) -> np.ndarray:
    """The chip square's corners in lon/lat (a closed ring)."""
    left, bottom, right, top = grid.bounds
    ring_x = np.array([left, right, right, left, left])
    ring_y = np.array([bottom, bottom, top, top, bottom])
    lon, lat = _to_crs(grid.epsg).transform(ring_x, ring_y, direction="INVERSE")
    return np.column_stack([lon, lat])


class VectorReader:
    """Rasterises the polygons under one chip onto its grid."""

    def __init__(self, source: VectorSource | VectorPart) -> None:
        self.source = source
        self.n_slots = source.n_slots if isinstance(source, VectorPart) else len(source.slots.values)

    def counts(self, grid: LabelGrid) -> np.ndarray:  # noqa: D102
        src = self.source
        box = shapely.polygons(_lonlat_box(grid))
        hits = np.sort(src.tree.query(box, predicate="intersects"))
        nodata = self.n_slots - 1
        if hits.size == 0:
            values = np.full((grid.size, grid.size), nodata, dtype=np.int32)
        else:
            transformer = _to_crs(grid.epsg)
            projected = shapely.transform(
                src.geometries[hits], lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1]))
            )
            values = rasterio.features.rasterize(
                zip(projected, src.slot_ids[hits].tolist(), strict=True),
                out_shape=(grid.size, grid.size),
                transform=grid.transform,
                fill=nodata,
                dtype=np.int32,
            )
        return count_regions(values, self.n_slots)


# --------------------------------------------------------------------------------------- parsing


def open_source(
    spec: str,
    *,
    scheme: str | None,
    schemes: Sequence[str],
    resolution_m: float | None = None,
    stac: str | None = None,
    asset: str | None = None,
    samples: Any = None,
    sign: str | None = None,
    allow_local_assets: bool = False,
    max_year_gap: int = 2,
) -> LabelSource:
    """The label source named by ``--source``: ``embedded``, a raster path, ``PATH:COLUMN`` or ``stac:COLLECTION``.

    Raises:
        SourceError: If the source cannot be read or has no CRS, or a vector lacks the column.
        ConfigError: If a scheme is needed and missing, or not one of ``schemes``.
    """
    from geosample.errors import ConfigError

    if scheme is not None and scheme not in schemes:
        raise ConfigError(
            f"--scheme {scheme!r} is not a crosswalk of this taxonomy; choose one of: {', '.join(schemes)}"
        )
    if spec == EMBEDDED:
        if scheme not in (None, EMBEDDED_SCHEME):
            raise ConfigError(f"the embedded source is MODIS IGBP; use --scheme {EMBEDDED_SCHEME} or leave it out")
        return embedded_source()
    if spec.startswith("stac:"):
        from geosample.labels.stac_source import StacSource

        return StacSource(
            spec[5:], stac=stac, asset=asset, samples=samples, scheme=_need_scheme(scheme, spec, schemes), sign=sign,
            allow_local_assets=allow_local_assets,
            max_year_gap=max_year_gap,
        )  # fmt: skip
    path, column = Path(spec), None
    if not path.exists() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if Path(head).exists():
            path, column = Path(head), tail
    if not path.exists():
        raise SourceError(f"label source {spec} does not exist; give 'embedded', a raster, PATH:COLUMN or stac:ID")
    if column is not None or _is_vector(path):
        if column is None:
            raise SourceError(f"label vector {path} needs its class column: --source {path}:COLUMN")
        return VectorSource(path, column, scheme=_need_scheme(scheme, spec, schemes), resolution_m=resolution_m)
    return RasterSource(path, name=f"{path.name}@file", scheme=_need_scheme(scheme, spec, schemes))


def _need_scheme(scheme: str | None, spec: str, schemes: Sequence[str]) -> str:
    if scheme is None:
        from geosample.errors import ConfigError

        raise ConfigError(
            f"--source {spec} needs --scheme, the crosswalk from its values to the taxonomy; "
            f"one of: {', '.join(schemes)}"
        )
    return scheme


_VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".parquet", ".geoparquet", ".gml", ".kml", ".zip"}


def _is_vector(path: Path) -> bool:
    return path.suffix.lower() in _VECTOR_SUFFIXES


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

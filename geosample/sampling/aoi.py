"""The area of interest: every way a user can name one, normalised once."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geosample import layers
from geosample.errors import AOIError, LayerError
from geosample.sampling.strata import Points

_ISO_LIST = re.compile(r"^\s*[A-Za-z]{3}(\s*,\s*[A-Za-z]{3})*\s*$")
_WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)


@dataclasses.dataclass(frozen=True)
class AOI:
    """An area of interest in EPSG:4326.

    Either a set of rows of the embedded countries layer (``world``, ISO
    codes), tested through the country lookup every sample needs anyway, or
    a polygonal geometry tested with a prepared ``contains_xy``.
    """

    label: str
    """How the user named it."""
    country_rows: np.ndarray | None = None
    """Positions in :func:`geosample.layers.countries`, for country-based AOIs."""
    geometry: BaseGeometry | None = None
    """Polygonal geometry, for geometry-based AOIs."""

    def contains(self, points: Points) -> np.ndarray:
        """Whether each point lies inside the AOI."""
        if self.country_rows is not None:
            return np.isin(points.country, self.country_rows)
        assert self.geometry is not None
        return shapely.contains_xy(self.geometry, points.lon, points.lat)

    def shapes(self, tolerance: float = 0.0) -> list[BaseGeometry]:
        """Polygons covering the AOI, for rasterising its footprint.

        With ``tolerance`` ≥ the simplified outlines' (0.02°), country-based
        AOIs use those outlines, which rasterise much faster.
        """
        if self.country_rows is not None:
            detailed = tolerance < layers.SIMPLIFIED_TOLERANCE_DEG
            table = layers.countries().geometry if detailed else layers.land_polygons()
            return list(table.values[self.country_rows])
        assert self.geometry is not None
        return [self.geometry]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north)."""
        return tuple(shapely.total_bounds(np.asarray(self.shapes(), dtype=object)))  # type: ignore[return-value]


def parse_aoi(spec: str | Path | BaseGeometry | None = "world") -> AOI:
    """Normalise ``world``, a file path, ISO alpha-3 codes, ``bbox:W,S,E,N`` or a geometry."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "world")):
        table = layers.countries()
        return AOI("world", country_rows=np.flatnonzero(table["continent"].to_numpy() != "Antarctica"))
    if isinstance(spec, BaseGeometry):
        return AOI("geometry", geometry=_polygonal(spec, "the AOI geometry"))
    text = str(spec).strip()
    if text.lower().startswith("bbox:"):
        return AOI(text, geometry=_parse_bbox(text[5:]))
    path = Path(text)
    if path.exists():
        return _from_file(path)
    if _ISO_LIST.match(text) and not path.suffix:
        return _from_iso_codes(text)
    if path.suffix:
        raise AOIError(f"AOI file {path} does not exist; check the path")
    raise AOIError(
        f"cannot read --aoi {text!r}; give 'world', a vector file, ISO 3166 alpha-3 codes like 'KEN,TZA', "
        "or 'bbox:W,S,E,N'"
    )


def _parse_bbox(text: str) -> BaseGeometry:
    parts = [p.strip() for p in text.split(",")]
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise AOIError(f"bbox:{text} is not four numbers; use bbox:W,S,E,N in degrees, e.g. bbox:5,45,10,48") from None
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise AOIError(f"bbox:{text} is outside -180..180 / -90..90; use degrees of longitude and latitude")
    if south >= north:
        raise AOIError(f"bbox:{text} has south {south} not below north {north}; the order is W,S,E,N")
    if west == east:
        raise AOIError(f"bbox:{text} has zero width; the order is W,S,E,N")
    if west < east:
        return shapely.box(west, south, east, north)
    # West > east: the box crosses the antimeridian.
    return shapely.MultiPolygon([shapely.box(west, south, 180, north), shapely.box(-180, south, east, north)])


def _from_iso_codes(text: str) -> AOI:
    codes = [c.strip().upper() for c in text.split(",")]
    table = layers.countries()
    known = set(table["iso3"]) | set(table["adm0_a3"])
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise AOIError(
            f"unknown ISO 3166 alpha-3 code(s) in --aoi: {', '.join(unknown)}; use codes such as FRA, KEN, BRA"
        )
    rows = np.flatnonzero(table["iso3"].isin(codes).to_numpy() | table["adm0_a3"].isin(codes).to_numpy())
    return AOI(",".join(codes), country_rows=rows)


def _from_file(path: Path) -> AOI:
    try:
        gdf = layers.read_vector(path, what="AOI")
    except LayerError as exc:
        raise AOIError(str(exc)) from None
    if gdf.empty:
        raise AOIError(f"AOI file {path} has no features with geometry; draw at least one polygon")
    return AOI(str(path), geometry=_polygonal(shapely.union_all(gdf.geometry.values), f"AOI file {path}"))


def _polygonal(geom: BaseGeometry, what: str) -> BaseGeometry:
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon | shapely.MultiPolygon)]
    polygonal = shapely.union_all(parts) if parts else shapely.Polygon()
    polygonal = shapely.intersection(polygonal, _WORLD)
    if polygonal.is_empty or polygonal.area == 0:
        raise AOIError(f"{what} has no polygon area (points or lines only, or empty); give polygons")
    shapely.prepare(polygonal)
    return polygonal

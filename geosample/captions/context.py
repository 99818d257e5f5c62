"""What a caption backend knows about one sample: a :class:`SampleContext` built from the dataset's files.

The context gathers, per sample: the chip and its preview (``chips.parquet``),
labels at every taxonomy level with class names and fractions, per-region
fractions (``labels.parquet``), the place (country and continent from the
embedded Natural Earth layer, the nearest GeoNames place and city with
distance and direction), the Köppen-Geiger climate, the date, month and local
season, and the sensor, resolution and chip size. :meth:`SampleContext.to_facts`
turns it into the JSON that prompts and caches use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from geosample.captions.gazetteer import Place

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

QUADRANTS = ("nw", "ne", "sw", "se")
REGIONS = (*QUADRANTS, "centre")
"""Layout regions of ``quadrant_fractions``: the four quadrants and the central square."""
CITY_POPULATION = 100_000
"""Least population of the "nearest city" (the nearest place has at least 1000 people)."""
TROPIC_DEG = 23.44
"""Within the tropics the temperate seasons are not named."""
CLIMATE_NAMES = {"A": "tropical", "B": "arid", "C": "temperate", "D": "continental", "E": "polar"}
"""Köppen-Geiger main classes."""
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_SEASON_OF_MONTH = {12: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 3, 10: 3, 11: 3}
_SEASONS = {True: ("winter", "spring", "summer", "autumn"), False: ("summer", "autumn", "winter", "spring")}
_SENSORS = (
    ("sentinel-2", "Sentinel-2 MSI"),
    ("sentinel-1", "Sentinel-1 SAR"),
    ("hls", "Harmonized Landsat Sentinel-2"),
    ("landsat", "Landsat"),
    ("naip", "NAIP aerial"),
    ("modis", "MODIS"),
    ("cop-dem", "Copernicus DEM"),
    ("nasadem", "NASADEM"),
)
_LANDSAT_IDS = {"LC09": "Landsat 9 OLI", "LC08": "Landsat 8 OLI", "LE07": "Landsat 7 ETM+", "LT05": "Landsat 5 TM",
                "LT04": "Landsat 4 TM"}  # fmt: skip


OBSERVED_CLASSES = ("water", "vegetation", "bare", "snow_ice", "built")
"""Observed cover classes of ``chips.parquet``'s ``observed`` column (DESIGN.md)."""
OBSERVED_WORDS = {"water": "open water", "vegetation": "vegetation", "bare": "bare ground",
                  "snow_ice": "snow and ice", "built": "built-up surfaces"}  # fmt: skip
"""Observed classes in words."""
COARSE_FACTOR = 8
"""A map whose cells are coarser than 1/8 of the chip side describes the chip's neighbourhood, not the chip."""
EMBEDDED_MODIS_M = 0.05 * 111_320.0
"""Cell size of the embedded MODIS layer at the equator (0.05°), used when ``source_resolution_m`` is absent."""


class ClassShare(NamedTuple):
    """A taxonomy class and its share of an area (the whole chip or one region); a tuple, cheap by the million."""

    code: str
    name: str
    """The class name, lower-cased for running text (acronyms kept)."""
    fraction: float


@dataclasses.dataclass(frozen=True)
class SampleContext:
    """Everything known about one sample that a caption may state.

    Fields are None (or empty) where the dataset does not say: no labels, no
    chip, no place within reach.
    """

    sample_id: str
    lon: float
    lat: float
    chip_size_m: float
    """Side of the square chip on the ground, metres."""
    epsg: int | None = None
    continent: str | None = None
    country: str | None = None
    """Natural Earth country name at the chip centre (None at sea)."""
    country_iso3: str | None = None
    place: Place | None = None
    """The nearest GeoNames place of at least 1000 people."""
    city: Place | None = None
    """The nearest GeoNames place of at least :data:`CITY_POPULATION` people."""
    climate: str | None = None
    """Köppen-Geiger main class letter at the centre (A–E)."""
    start_date: dt.date | None = None
    """First day of the sample's planned imagery window."""
    end_date: dt.date | None = None
    date: dt.date | None = None
    """Acquisition date of the chip's source item, when fetched."""
    collection: str | None = None
    item_id: str | None = None
    sensor: str | None = None
    """Human name of the sensor, from the collection and item ids."""
    resolution_m: float | None = None
    width: int | None = None
    height: int | None = None
    bands: tuple[str, ...] = ()
    cloud_cover: float | None = None
    chip_path: Path | None = None
    preview_path: Path | None = None
    taxonomy: str | None = None
    """``<id>@<version>`` of the labels' taxonomy (None without labels)."""
    levels: tuple[str, ...] = ()
    classes: Mapping[str, tuple[ClassShare, ...]] = dataclasses.field(default_factory=dict)
    """Level -> the sample's labels at that level with their whole-chip fractions, largest first."""
    regions: Mapping[str, Mapping[str, tuple[ClassShare, ...]]] = dataclasses.field(default_factory=dict)
    """Level -> region (:data:`REGIONS`) -> every class present there with its fraction, largest first."""
    shares: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    """Level -> every class present in the chip (label or not) -> its whole-chip fraction; change captions use it."""
    valid_fraction: float | None = None
    centre_landcover: str | None = None
    """MODIS IGBP class at the chip centre, in words (from the plan or the embedded layer)."""
    label_source: str | None = None
    """Where the labels come from (``label_source`` of ``labels.parquet``)."""
    map_resolution_m: float | None = None
    """Cell size of the labels' map on the ground (``source_resolution_m``; the embedded MODIS layer's when absent)."""
    map_year: int | None = None
    """Year of the map the labels come from (``label_year``), when known."""
    period: tuple[dt.date, dt.date] | None = None
    """First and last day of the chip's source item when it spans a range or is a mosaic (no single date)."""
    observed: Mapping[str, float] | None = None
    """Observed cover of the chip's valid, cloud-free pixels (``observed``): class -> share; None when not observed."""
    observed_regions: Mapping[str, Mapping[str, float]] | None = None
    """Quadrant -> observed class -> share (``observed_quadrants``)."""
    cloud_fraction: float | None = None
    """Share of the chip's valid pixels measured as cloud or shadow."""
    surroundings: Surroundings | None = None
    """What the embedded MODIS map shows around the site."""

    @property
    def map_is_coarse(self) -> bool:
        """Whether the labels' map is coarser than 1/8 of the chip: it then describes the neighbourhood."""
        return self.map_resolution_m is not None and self.map_resolution_m > self.chip_size_m / COARSE_FACTOR

    @property
    def has_observed(self) -> bool:
        """Whether the chip's cover was observed (at least one class share)."""
        return bool(self.observed)

    @property
    def has_labels(self) -> bool:
        """Whether land-cover labels are known."""
        return bool(self.levels) and any(self.classes.get(level) for level in self.levels)

    @property
    def hemisphere(self) -> str:
        """``northern`` or ``southern``."""
        return "northern" if self.lat >= 0 else "southern"

    @property
    def year(self) -> int | None:
        """Year of the acquisition, or of the planned window when it lies within one year."""
        if self.date is not None:
            return self.date.year
        start, end = self.span
        if start is not None and end is not None and start.year == end.year:
            return start.year
        return None

    @property
    def span(self) -> tuple[dt.date | None, dt.date | None]:
        """The days the image may come from: its item's range (or mosaic span), else the planned window."""
        if self.period is not None:
            return self.period
        return self.start_date, self.end_date

    @property
    def month(self) -> int | None:
        """Month (1–12) of the acquisition, or of the planned window when it lies within one month."""
        if self.date is not None:
            return self.date.month
        start, end = self.span
        if start is not None and end is not None and (start.year, start.month) == (end.year, end.month):
            return start.month
        return None

    @property
    def season(self) -> str | None:
        """Local meteorological season (hemisphere-aware), when known; None in the tropics."""
        if abs(self.lat) < TROPIC_DEG:
            return None
        if self.date is not None:
            block = _SEASON_OF_MONTH[self.date.month]
        else:
            start, end = self.span
            if start is None or end is None or (end - start).days > 92:
                return None
            months = pd.date_range(pd.Timestamp(start).replace(day=1), pd.Timestamp(end), freq="MS").month
            blocks = {_SEASON_OF_MONTH[int(m)] for m in months}
            if len(blocks) != 1:
                return None
            block = blocks.pop()
        return _SEASONS[self.lat >= 0][block]

    def labels_at(self, level: str) -> tuple[ClassShare, ...]:
        """The labels at ``level`` (empty if unknown)."""
        return self.classes.get(level, ())

    def to_facts(self) -> dict[str, Any]:
        """The context as JSON-ready facts (no file paths), for prompts and cache keys."""
        time: dict[str, Any] = {
            "acquired": self.date.isoformat() if self.date else None,
            "image_period": [d.isoformat() for d in self.period] if self.period else None,
            "planned_window": [d.isoformat() if d else None for d in (self.start_date, self.end_date)],
            "year": self.year,
            "month": MONTHS[self.month - 1] if self.month else None,
            "season": self.season,
            "hemisphere": self.hemisphere,
        }
        facts: dict[str, Any] = {
            "sample_id": self.sample_id,
            "location": {
                "lon": round(self.lon, 5),
                "lat": round(self.lat, 5),
                "country": self.country,
                "continent": self.continent,
                "nearest_place": self.place.to_dict() if self.place else None,
                "nearest_city": self.city.to_dict() if self.city else None,
            },
            "climate": {"koppen": self.climate, "name": CLIMATE_NAMES.get(self.climate or "")}
            if self.climate
            else None,
            "time": time,
            "imagery": {
                "sensor": self.sensor,
                "collection": self.collection,
                "resolution_m": self.resolution_m,
                "chip_size_m": self.chip_size_m,
                "pixels": [self.width, self.height] if self.width else None,
                "bands": list(self.bands),
                "cloud_cover": self.cloud_cover,
            },
        }
        if self.has_observed:
            facts["observed_cover"] = {
                "what": "share of the chip's valid, cloud-free pixels in each cover class, measured on the image",
                "chip": {OBSERVED_WORDS.get(k, k): round(v, 3) for k, v in (self.observed or {}).items()},
                "quadrants": {
                    q: {OBSERVED_WORDS.get(k, k): round(v, 3) for k, v in shares.items()}
                    for q, shares in (self.observed_regions or {}).items()
                },
                "cloud_fraction": self.cloud_fraction,
            }
        if self.has_labels:
            scale = (
                f"a map of {round(self.map_resolution_m)} m cells, coarser than 1/{COARSE_FACTOR} of the chip: "
                "its fractions describe the cells around the chip (its neighbourhood), not the chip"
                if self.map_is_coarse
                else "fractions of the chip's area"
            )
            facts["land_cover_map"] = {
                "source": self.label_source,
                "resolution_m": self.map_resolution_m,
                "year": self.map_year,
                "describes": "neighbourhood" if self.map_is_coarse else "chip",
                "note": scale,
                "taxonomy": self.taxonomy,
                "labels": {
                    level: [{"name": c.name, "fraction": round(c.fraction, 3)} for c in self.labels_at(level)]
                    for level in self.levels
                },
                "layout": _layout_facts(self),
            }
        else:
            facts["land_cover_map"] = {"modis_class_at_centre": self.centre_landcover}
        if self.surroundings is not None:
            facts["surroundings"] = self.surroundings.to_facts()
        return facts


@dataclasses.dataclass(frozen=True)
class NearestCover:
    """The nearest cell of a class that is not under the chip, in the surroundings' map."""

    code: str
    name: str
    distance_km: float
    """From the site to the nearest point of that cell."""
    direction: str
    """Compass direction from the site."""


@dataclasses.dataclass(frozen=True)
class Surroundings:
    """The land cover around a site, from the embedded MODIS 2019 map (0.05° cells), named in the taxonomy."""

    source: str
    near_km: float
    """Radius of the near window (half its side), km."""
    wide_km: float
    near: tuple[ClassShare, ...]
    """Classes of the near window's cells with their shares, largest first."""
    wide: tuple[ClassShare, ...]
    sectors: Mapping[str, ClassShare]
    """Compass direction -> the class holding most cells of that sector of the near window (share: of the window)."""
    under: tuple[ClassShare, ...]
    """Classes of the cells under the chip (fraction: share of the near window)."""
    nearest: tuple[NearestCover, ...]
    """Classes not under the chip, nearest first."""

    @property
    def codes(self) -> set[str]:
        """Every class these facts name."""
        return {c.code for c in (*self.near, *self.wide, *self.sectors.values(), *self.under)} | {
            n.code for n in self.nearest
        }

    def to_facts(self) -> dict[str, Any]:
        """JSON-ready facts."""
        return {
            "source": self.source,
            "what": "land cover of the map's cells around the site, not of the chip itself",
            "cells_under_chip": [c.name for c in self.under],
            f"within_{round(self.near_km)}_km": {c.name: round(c.fraction, 3) for c in self.near},
            f"within_{round(self.wide_km)}_km": {c.name: round(c.fraction, 3) for c in self.wide},
            "by_direction": {direction: c.name for direction, c in self.sectors.items()},
            "nearest_other_cover": [
                {"name": n.name, "distance_km": round(n.distance_km, 1), "direction": n.direction} for n in self.nearest
            ],
        }


def _layout_facts(context: SampleContext) -> dict[str, list[dict[str, Any]]]:
    """Per region, the finest-level labels present there (classes below the label threshold are left out)."""
    finest = context.levels[-1]
    labels = {c.code for c in context.labels_at(finest)}
    regions = context.regions.get(finest, {})
    return {
        region: [
            {"name": c.name, "fraction": round(c.fraction, 3)} for c in regions.get(region, ()) if c.code in labels
        ]
        for region in REGIONS
    }


def display_name(name: str) -> str:
    """A class name for running text: lower case, keeping acronyms (``CORINE``) and mixed-case words."""
    words = []
    for word in name.split(" "):
        if len(word) > 1 and (word.isupper() or any(ch.isupper() for ch in word[1:])):
            words.append(word)
        else:
            words.append(word.lower())
    return " ".join(words)


def sensor_name(collection: str | None, item_id: str | None) -> str | None:
    """A readable sensor name from a STAC collection id and item id (the collection id if unknown)."""
    if not collection:
        return None
    lowered = collection.lower()
    item = (item_id or "").upper()
    if "landsat" in lowered and item[:4] in _LANDSAT_IDS:
        return _LANDSAT_IDS[item[:4]]
    if "sentinel-2" in lowered and item[:3] in ("S2A", "S2B", "S2C"):
        return f"Sentinel-{item[1:3]} MSI"
    for prefix, name in _SENSORS:
        if prefix in lowered:
            return name
    return collection


def build_contexts(ds: str | Path, plan: pd.DataFrame) -> list[SampleContext]:
    """One :class:`SampleContext` per row of ``plan`` (a subset of ``DS/plan.parquet``), in its order.

    Warns once (:class:`~geosample.errors.DataQualityWarning`) when the dataset
    has no labels or no chips, since the captions then carry fewer facts. For
    large datasets, :class:`~geosample.captions._sources.ContextBuilder` makes
    them a batch at a time.
    """
    from geosample.captions._sources import ContextBuilder

    builder = ContextBuilder(ds, plan)
    return builder.batch(0, len(builder))


def load_labels_taxonomy(ds: str | Path, keys: list[str]) -> Taxonomy:
    """The taxonomy named in ``labels.parquet``: the file recorded by ``geosample label``, else a shipped one."""
    from geosample.captions._sources import labels_taxonomy

    return labels_taxonomy(Path(ds), keys)

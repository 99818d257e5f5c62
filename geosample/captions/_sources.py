"""Reading a dataset's files into sample contexts, a batch at a time.

:class:`ContextBuilder` does the whole-dataset work once and vectorised (the
country and climate at every centre, the nearest places, the label and chip
rows by sample) and then makes :class:`~geosample.captions.context.SampleContext`
objects only for the batch being captioned, so memory stays flat however many
samples there are.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geosample import layers
from geosample._dataset import CHIPS_FILE, LABELS_FILE, read_config, read_table
from geosample.captions.context import (
    CITY_POPULATION,
    CLIMATE_NAMES,
    REGIONS,
    ClassShare,
    SampleContext,
    display_name,
    sensor_name,
)
from geosample.captions.gazetteer import Gazetteer
from geosample.errors import DataQualityWarning, DatasetError, GeosampleError

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

_IGBP_WORDS = {"urban_and_built_up": "urban and built-up land", "cropland_natural_vegetation_mosaic":
               "cropland and natural vegetation mosaic", "snow_and_ice": "snow and ice"}  # fmt: skip


class ContextBuilder:
    """Sample contexts for the rows of a plan table, made on demand by position."""

    def __init__(self, ds: str | Path, plan: pd.DataFrame) -> None:
        self.ds = Path(ds)
        plan = plan.reset_index(drop=True)
        self.ids = plan["sample_id"].astype(str).tolist()
        self.lon = plan["lon"].to_numpy(dtype=np.float64)
        self.lat = plan["lat"].to_numpy(dtype=np.float64)
        self.size = plan["chip_size_m"].to_numpy(dtype=np.float64)
        epsg = pd.to_numeric(plan["epsg"], errors="coerce") if "epsg" in plan else pd.Series(np.nan, index=plan.index)
        self.epsg = [None if pd.isna(v) else int(v) for v in epsg]
        self.start = _dates(plan, "start_datetime")
        self.end = _dates(plan, "end_datetime")
        self._where = _Locations(plan, self.lon, self.lat)
        self._labels = _Labels.read(self.ds, self.ids)
        self._chips = _Chips.read(self.ds, self.ids, self.size)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, start: int, stop: int) -> list[SampleContext]:
        """Contexts of plan rows ``start`` to ``stop`` (exclusive)."""
        out = []
        for i in range(start, min(stop, len(self.ids))):
            sample_id = self.ids[i]
            labels = self._labels.facts(sample_id) if self._labels is not None else {}
            chips = self._chips.facts(sample_id) if self._chips is not None else {}
            out.append(
                SampleContext(
                    sample_id=sample_id,
                    lon=float(self.lon[i]),
                    lat=float(self.lat[i]),
                    chip_size_m=float(self.size[i]),
                    epsg=self.epsg[i],
                    start_date=self.start[i],
                    end_date=self.end[i],
                    **self._where.facts(i),
                    **labels,
                    **chips,
                )
            )
        return out


def _dates(plan: pd.DataFrame, column: str) -> list[dt.date | None]:
    if column not in plan:
        return [None] * len(plan)
    values = pd.to_datetime(plan[column], utc=True)
    return [None if pd.isna(v) else v.date() for v in values]


class _Locations:
    """Country, continent, climate, MODIS class at the centre and nearest places, looked up for all rows at once."""

    def __init__(self, plan: pd.DataFrame, lon: np.ndarray, lat: np.ndarray) -> None:
        countries = layers.countries()
        row = layers.country_index().lookup(lon, lat)
        has = row >= 0
        take = np.where(has, row, 0)
        self.country = np.where(has, countries["name"].to_numpy(dtype=object)[take], None)
        self.iso3 = np.where(has, countries["iso3"].to_numpy(dtype=object)[take], None)
        continent = np.where(has, countries["continent"].to_numpy(dtype=object)[take], None)
        self.continent = _column_or(plan, "continent", continent)
        self.climate = _column_or(plan, "climate", _classes(layers.climate_sampler(), layers.CLIMATE_CLASSES, lon, lat))
        self.landcover = _column_or(
            plan, "landcover", _classes(layers.landcover_sampler(), layers.IGBP_CLASSES, lon, lat)
        )
        self.gazetteer = Gazetteer.default()
        self.near = self.gazetteer.nearest(lon, lat)
        self.big = self.gazetteer.nearest(lon, lat, min_population=CITY_POPULATION)

    def facts(self, i: int) -> dict[str, Any]:
        cover = self.landcover[i]
        near, big = self.near, self.big
        return {
            "continent": self.continent[i],
            "country": self.country[i],
            "country_iso3": self.iso3[i],
            "climate": self.climate[i] if self.climate[i] in CLIMATE_NAMES else None,
            "centre_landcover": _IGBP_WORDS.get(cover, cover.replace("_", " ")) if cover else None,
            "place": self.gazetteer.place(int(near.index[i]), near.distance_km[i], near.bearing_deg[i]),
            "city": self.gazetteer.place(int(big.index[i]), big.distance_km[i], big.bearing_deg[i]),
        }


def _classes(sampler: Any, names: Mapping[int, str], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Class names of a categorical layer at the points (None where it has no data)."""
    values, valid = sampler.sample(lon, lat)
    table = np.full(256, None, dtype=object)
    for value, name in names.items():
        table[value] = name
    return np.where(valid, table[np.clip(values.astype(np.int64), 0, 255)], None)


def _column_or(plan: pd.DataFrame, column: str, fallback: np.ndarray) -> np.ndarray:
    """The plan's stratum column where it has a value, else the fallback (the plan's ``none`` means no data)."""
    if column not in plan:
        return fallback
    values = plan[column].astype(object).to_numpy()
    missing = pd.isna(values) | (values == "none")
    return np.where(missing, fallback, values)


def labels_taxonomy(ds: Path, keys: list[str]) -> Taxonomy:
    """The taxonomy named in ``labels.parquet``: the file recorded by ``geosample label``, else a shipped one."""
    from geosample.labels.taxonomy import load_taxonomy

    if len(keys) != 1:
        raise DatasetError(
            f"{ds / LABELS_FILE} mixes taxonomies ({', '.join(keys)}); re-run 'geosample label {ds} --overwrite'"
        )
    key = keys[0]
    recorded = (read_config(ds).get("label") or {}).get("taxonomy")
    for spec in [recorded, key] if recorded else [key]:
        try:
            taxonomy = load_taxonomy(spec)
        except GeosampleError:
            continue
        if taxonomy.key == key:
            return taxonomy
    where = f" (recorded as {recorded})" if recorded else ""
    raise DatasetError(
        f"the labels of {ds} use taxonomy {key}{where}, which cannot be found; "
        f"restore that taxonomy file or re-run 'geosample label {ds} --overwrite'"
    )


class _Labels:
    """The labels rows by sample, parsed into class shares when a context is made."""

    def __init__(self, taxonomy: Taxonomy, rows: dict[str, tuple]) -> None:
        self.taxonomy = taxonomy
        self.levels = tuple(taxonomy.levels)
        self.rows = rows
        self._at: dict[tuple[str, str], str] = {}
        self._names: dict[str, str] = {}

    @classmethod
    def read(cls, ds: Path, ids: list[str]) -> _Labels | None:
        table = read_table(ds, LABELS_FILE, hint=f"geosample label {ds}")
        if table is None:
            warnings.warn(
                f"{ds} has no {LABELS_FILE}: captions use the plan (and chips) only, without land-cover classes; "
                f"run 'geosample label {ds}' first for richer captions",
                DataQualityWarning,
                stacklevel=4,
            )
            return None
        taxonomy = labels_taxonomy(ds, sorted(table["taxonomy"].dropna().unique().tolist()))
        wanted = set(ids)
        table = table[table["sample_id"].isin(wanted)]
        missing = len(wanted - set(table["sample_id"]))
        if missing:
            warnings.warn(
                f"{missing} of {len(ids)} samples have no row in {LABELS_FILE}; their captions carry no land-cover "
                f"classes (re-run 'geosample label {ds} --overwrite' after changing the plan)",
                DataQualityWarning,
                stacklevel=4,
            )
        depth_columns = [f"l{d}" for d in range(1, len(taxonomy.levels) + 1)]
        columns = ["fractions", "quadrant_fractions", *depth_columns]
        empty = np.full(len(table), None, dtype=object)
        arrays = [table[c].to_numpy(dtype=object) if c in table else empty for c in [*columns, "valid_fraction"]]
        rows = dict(zip(table["sample_id"].astype(str), zip(*arrays, strict=True), strict=True))
        return cls(taxonomy, rows)

    def facts(self, sample_id: str) -> dict[str, Any]:
        row = self.rows.get(sample_id)
        if row is None:
            return {}
        fractions_json, quadrants_json, *codes_per_level, valid = row
        fractions = json.loads(fractions_json) if isinstance(fractions_json, str) else {}
        quadrants = json.loads(quadrants_json) if isinstance(quadrants_json, str) else {}
        classes = {}
        for level, codes in zip(self.levels, codes_per_level, strict=True):
            whole = self._shares(fractions, level)
            codes = [] if codes is None else list(codes)
            classes[level] = tuple(ClassShare(c, self._name(c), whole.get(c, 0.0)) for c in codes)
        regions = _LazyLevels(self.levels, lambda level: self._regions(quadrants, level))
        shares = _LazyLevels(self.levels, lambda level: types.MappingProxyType(self._shares(fractions, level)))
        return {
            "taxonomy": self.taxonomy.key,
            "levels": self.levels,
            "classes": types.MappingProxyType(classes),
            "regions": types.MappingProxyType(regions),
            "shares": types.MappingProxyType(shares),
            "valid_fraction": None if valid is None or pd.isna(valid) else float(valid),
        }

    def _regions(
        self, quadrants: Mapping[str, Mapping[str, float]], level: str
    ) -> Mapping[str, tuple[ClassShare, ...]]:
        out = {}
        for region in REGIONS:
            shares = self._shares(quadrants.get(region, {}), level)
            out[region] = tuple(ClassShare(code, self._name(code), fraction) for code, fraction in shares.items())
        return types.MappingProxyType(out)

    def _name(self, code: str) -> str:
        if code not in self._names:
            taxon = self.taxonomy.classes.get(code)
            self._names[code] = display_name(taxon.name) if taxon is not None else code
        return self._names[code]

    def _code_at(self, code: str, level: str) -> str:
        """The class standing for ``code`` at ``level``: its ancestor there, or itself when it is coarser."""
        key = (code, level)
        if key not in self._at:
            ancestor = self.taxonomy.ancestor(code, level) if code in self.taxonomy.classes else None
            self._at[key] = code if ancestor is None else ancestor
        return self._at[key]

    def _shares(self, fractions: Mapping[str, float], level: str) -> dict[str, float]:
        """Code at ``level`` -> summed fraction, largest first (ties by code)."""
        total: dict[str, float] = {}
        for code, value in fractions.items():
            at = self._code_at(code, level)
            total[at] = total.get(at, 0.0) + float(value)
        return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


class _LazyLevels(Mapping[str, Any]):
    """Level -> region (or whole-chip) shares, rolled up on first use (most captions need one or two levels)."""

    def __init__(self, levels: tuple[str, ...], make: Callable[[str], Any]) -> None:
        self._levels = levels
        self._make = make
        self._done: dict[str, Any] = {}

    def __getitem__(self, level: str) -> Any:
        if level not in self._levels:
            raise KeyError(level)
        if level not in self._done:
            self._done[level] = self._make(level)
        return self._done[level]

    def __iter__(self) -> Iterator[str]:
        return iter(self._levels)

    def __len__(self) -> int:
        return len(self._levels)

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{level!r}: {dict(self[level])!r}' for level in self._levels)}}}"


class _Chips:
    """The first ``ok`` row of ``chips.parquet`` per sample (several collections: the first in file order)."""

    def __init__(self, ds: Path, rows: dict[str, dict[str, Any]], sizes: dict[str, float]) -> None:
        self.ds = ds
        self.rows = rows
        self.sizes = sizes

    @classmethod
    def read(cls, ds: Path, ids: list[str], chip_size: np.ndarray) -> _Chips | None:
        table = read_table(ds, CHIPS_FILE, hint=f"geosample fetch {ds}")
        if table is None:
            warnings.warn(
                f"{ds} has no {CHIPS_FILE}: captions describe the plan and labels only, with no image or acquisition "
                f"date; run 'geosample fetch {ds}' first for image-based captions",
                DataQualityWarning,
                stacklevel=4,
            )
            return None
        wanted = set(ids)
        ok = table[(table["status"] == "ok") & table["sample_id"].isin(wanted)]
        ok = ok.drop_duplicates("sample_id", keep="first")
        rows = {rec["sample_id"]: rec for rec in ok.to_dict("records")}
        missing = sum(1 for rec in rows.values() if _present(rec.get("path")) and not (ds / str(rec["path"])).exists())
        if missing:
            warnings.warn(
                f"{missing} chips listed as ok in {CHIPS_FILE} are missing from {ds}; "
                f"their captions carry no image (re-run 'geosample fetch {ds}')",
                DataQualityWarning,
                stacklevel=4,
            )
        return cls(ds, rows, dict(zip(ids, chip_size.tolist(), strict=True)))

    def facts(self, sample_id: str) -> dict[str, Any]:
        rec = self.rows.get(sample_id)
        if rec is None:
            return {}
        chip = self.ds / str(rec["path"]) if _present(rec.get("path")) else None
        chip = chip if chip is not None and chip.exists() else None
        preview = self.ds / str(rec["preview"]) if _present(rec.get("preview")) else None
        preview = preview if preview is not None and preview.exists() else None
        width = int(rec["width"]) if _present(rec.get("width")) else None
        height = int(rec["height"]) if _present(rec.get("height")) else None
        resolution = float(rec["resolution"]) if _present(rec.get("resolution")) else None
        if resolution is None and width:
            resolution = self.sizes[sample_id] / width
        bands = rec.get("bands")
        cloud = rec.get("cloud_cover")
        return {
            "collection": rec.get("collection"),
            "item_id": rec.get("item_id"),
            "sensor": sensor_name(rec.get("collection"), rec.get("item_id")),
            "date": _utc_date(rec.get("item_datetime")),
            "resolution_m": resolution,
            "width": width,
            "height": height,
            "bands": tuple(str(b) for b in bands) if bands is not None else (),
            "cloud_cover": float(cloud) if _present(cloud) else None,
            "chip_path": chip,
            "preview_path": preview,
        }


def _utc_date(value: object) -> dt.date | None:
    if not _present(value):
        return None
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp).date()


def _present(value: object) -> bool:
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True

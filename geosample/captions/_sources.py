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
from geosample.captions import _neighbourhood as nb
from geosample.captions.context import (
    CITY_POPULATION,
    CLIMATE_NAMES,
    EMBEDDED_MODIS_M,
    OBSERVED_CLASSES,
    QUADRANTS,
    REGIONS,
    ClassShare,
    NearestCover,
    SampleContext,
    Surroundings,
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
        self._namer = CoverNames(self._labels.taxonomy if self._labels is not None else None)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, start: int, stop: int) -> list[SampleContext]:
        """Contexts of plan rows ``start`` to ``stop`` (exclusive)."""
        out = []
        if self._chips is not None:
            self._chips.load(self.ids[start:stop])
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
                    surroundings=self._namer.surroundings(
                        nb.neighbourhood(float(self.lon[i]), float(self.lat[i]), float(self.size[i]))
                    ),
                )
            )
        return out


class CoverNames:
    """Names of the embedded MODIS map's IGBP classes in the labels' taxonomy (its ``modis-igbp`` crosswalk).

    Without labels, or with a taxonomy that has no such crosswalk, the IGBP
    class names themselves are used.
    """

    def __init__(self, taxonomy: Taxonomy | None) -> None:
        self.by_value: dict[int, tuple[str, str]] = {}
        mapping = dict(taxonomy.mappings.get("modis-igbp", {})) if taxonomy is not None else {}
        for value, igbp in layers.IGBP_CLASSES.items():
            code = mapping.get(str(value), mapping.get(value)) if mapping else None  # type: ignore[call-overload]
            if code is not None and taxonomy is not None and str(code) in taxonomy.classes:
                self.by_value[value] = (str(code), display_name(taxonomy.classes[str(code)].name))
            else:
                self.by_value[value] = (f"igbp:{value}", _IGBP_WORDS.get(igbp, igbp.replace("_", " ")))

    def share(self, value: int, fraction: float) -> ClassShare:
        """A :class:`ClassShare` for an IGBP value."""
        code, name = self.by_value.get(value, (f"igbp:{value}", f"class {value}"))
        return ClassShare(code, name, fraction)

    def merged(self, shares: Mapping[int, float]) -> tuple[ClassShare, ...]:
        """Shares by taxonomy class (IGBP values mapping to one class are summed), largest first."""
        total: dict[tuple[str, str], float] = {}
        for value, fraction in shares.items():
            c = self.share(value, fraction)
            total[(c.code, c.name)] = total.get((c.code, c.name), 0.0) + fraction
        out = [ClassShare(code, name, f) for (code, name), f in total.items()]
        return tuple(sorted(out, key=lambda c: (-c.fraction, c.code)))

    def surroundings(self, n: nb.Neighbourhood) -> Surroundings:
        """The neighbourhood with its classes named."""
        near = self.merged(n.near)
        near_share = {c.code: c.fraction for c in near}
        under_codes: list[str] = []
        for value in n.under:
            code = self.share(value, 0.0).code
            if code not in under_codes:
                under_codes.append(code)
        nearest: list[NearestCover] = []
        for found in n.nearest:
            c = self.share(found.value, 0.0)
            if c.code not in under_codes and all(x.code != c.code for x in nearest):
                nearest.append(NearestCover(c.code, c.name, found.distance_km, found.direction))
        return Surroundings(
            source=nb.SOURCE,
            near_km=n.near_km,
            wide_km=n.wide_km,
            near=near,
            wide=self.merged(n.wide),
            sectors={d: self.share(v, near_share.get(self.share(v, 0.0).code, 0.0)) for d, v in n.sectors.items()},
            under=tuple(self.share(v, near_share.get(self.share(v, 0.0).code, 0.0)) for v in n.under),
            nearest=tuple(nearest),
        )


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
        extra = ["valid_fraction", "label_source", "source_resolution_m", "label_year"]
        arrays = [table[c].to_numpy(dtype=object) if c in table else empty for c in [*columns, *extra]]
        rows = dict(zip(table["sample_id"].astype(str), zip(*arrays, strict=True), strict=True))
        return cls(taxonomy, rows)

    def facts(self, sample_id: str) -> dict[str, Any]:
        row = self.rows.get(sample_id)
        if row is None:
            return {}
        fractions_json, quadrants_json, *codes_per_level, valid, source, resolution, year = row
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
            "label_source": str(source) if _present(source) else None,
            "map_resolution_m": map_resolution(source, resolution),
            "map_year": int(year) if _present(year) else None,
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
    """The first ``ok`` row of ``chips.parquet`` per sample (several collections: the first in file order).

    The rows stay in their table and become dicts a batch of samples at a time (:meth:`load`): a dict of every
    sample's chip row at once costs kilobytes a sample (every cell a Python object).
    """

    def __init__(self, ds: Path, table: pd.DataFrame, sizes: dict[str, float]) -> None:
        self.ds = ds
        self.table = table.reset_index(drop=True)
        self.position = dict(zip(self.table["sample_id"], range(len(self.table)), strict=True))
        self.rows: dict[str, dict[str, Any]] = {}
        self.sizes = sizes

    def load(self, ids: list[str]) -> None:
        """Turn the rows of ``ids`` (the next batch) into dicts, in place of the previous batch's."""
        at = [self.position[s] for s in ids if s in self.position]
        self.rows = {rec["sample_id"]: rec for rec in self.table.iloc[at].to_dict("records")}

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
        missing = sum(1 for path in ok["path"] if _present(path) and not (ds / str(path)).exists())
        if missing:
            warnings.warn(
                f"{missing} chips listed as ok in {CHIPS_FILE} are missing from {ds}; "
                f"their captions carry no image (re-run 'geosample fetch {ds}')",
                DataQualityWarning,
                stacklevel=4,
            )
        return cls(ds, ok, dict(zip(ids, chip_size.tolist(), strict=True)))

    def facts(self, sample_id: str) -> dict[str, Any]:
        if sample_id not in self.rows and sample_id in self.position:  # not in the loaded batch
            self.load([sample_id])
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
        measured = rec.get("cloud_fraction")
        date, period = image_time(rec.get("item_datetime"), rec.get("item_start_datetime"),
                                  rec.get("item_end_datetime"))  # fmt: skip
        return {
            "collection": rec.get("collection"),
            "item_id": rec.get("item_id"),
            "sensor": sensor_name(rec.get("collection"), rec.get("item_id")),
            "date": date,
            "period": period,
            "observed": observed_json(rec.get("observed")),
            "observed_regions": observed_quadrants_json(rec.get("observed_quadrants")),
            "cloud_fraction": float(measured) if _present(measured) else None,
            "resolution_m": resolution,
            "width": width,
            "height": height,
            "bands": tuple(str(b) for b in bands) if bands is not None else (),
            "cloud_cover": float(cloud) if _present(cloud) else None,
            "chip_path": chip,
            "preview_path": preview,
        }


def map_resolution(source: object, resolution: object) -> float | None:
    """The labels' map cell size: ``source_resolution_m``, else the embedded MODIS layer's for its source name."""
    if _present(resolution):
        return float(resolution)  # type: ignore[arg-type]
    if _present(source) and str(source).startswith("modis-igbp@embedded"):
        return EMBEDDED_MODIS_M
    return None


def image_time(single: object, start: object, end: object) -> tuple[dt.date | None, tuple[dt.date, dt.date] | None]:
    """The acquisition date (a single ``datetime``, or a range within one day), else the item's period.

    The contract of ``chips.parquet``: a caption may name an acquisition date
    only when ``item_datetime`` is set and there is no range (or the range is
    one day); otherwise it names the period.
    """
    first, last = _utc_date(start), _utc_date(end)
    day = _utc_date(single)
    if first is not None and last is not None and first != last:
        return None, (first, last)
    if day is None and first is not None and first == last:
        return None, (first, last)
    return day, None


def observed_json(value: object, keys: tuple[str, ...] = OBSERVED_CLASSES) -> dict[str, float] | None:
    """An ``observed`` JSON object as class -> share (only the contract's classes), None when absent."""
    if not _present(value):
        return None
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        return None
    out = {str(k): float(v) for k, v in data.items() if str(k) in keys and v is not None and np.isfinite(float(v))}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))) or None


def observed_quadrants_json(value: object) -> dict[str, dict[str, float]] | None:
    """An ``observed_quadrants`` JSON object as quadrant -> class -> share."""
    if not _present(value):
        return None
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        return None
    out = {q: observed_json(data.get(q)) or {} for q in QUADRANTS if q in data}
    return out or None


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


def fact_classes(ds: str | Path, plan: pd.DataFrame, taxonomy: Taxonomy | None, ids: set[str]) -> dict[str, set[str]]:
    """Per sample of ``ids``, the class codes its facts give besides its labels (for the hallucination check).

    These are the classes of the embedded MODIS map around the site (named in
    the taxonomy) and the observed cover classes of its chip that name a class
    (open water, bare ground, snow and ice, built-up surfaces).
    """
    from geosample.captions.template import OBSERVED_CODES

    rows = plan[plan["sample_id"].astype(str).isin(ids)]
    namer = CoverNames(taxonomy)
    out: dict[str, set[str]] = {}
    for sample_id, lon, lat, size in zip(rows["sample_id"].astype(str), rows["lon"], rows["lat"],
                                         rows["chip_size_m"], strict=True):  # fmt: skip
        out[sample_id] = namer.surroundings(nb.neighbourhood(float(lon), float(lat), float(size))).codes
    chips = read_table(Path(ds), CHIPS_FILE, hint=f"geosample fetch {ds}")
    if chips is not None and "observed" in chips:
        ok = chips[(chips["status"] == "ok") & chips["sample_id"].astype(str).isin(ids)]
        for sample_id, value in zip(ok["sample_id"].astype(str), ok["observed"], strict=True):
            observed = observed_json(value) or {}
            out.setdefault(sample_id, set()).update(OBSERVED_CODES[k] for k in observed if k in OBSERVED_CODES)
    return out

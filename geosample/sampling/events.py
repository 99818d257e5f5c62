"""Event-centred sampling: sites on and around dated events, each with a before and an after window.

A catalogue (CSV with lon/lat/date/type columns, GeoJSON, GeoPackage,
GeoParquet) lists events as points or polygons with a date (or start and
end) and a type. For each event, candidate sites are H3 cells at the sample
resolution under random points of its footprint (within ``event_radius_m`` of
a point event, whose own cell comes first), thinned by the spacing rule (at
most ``max_per_parent`` per parent cell and event). Sites are then allocated
across strata made of the event dimensions (``event_type``, ``event_year``)
and the ordinary ones (``continent``, ``climate``, ...) at the site centre,
equally by default, and within a stratum round-robin across its events.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geosample import layers
from geosample.errors import AOIError, CapacityWarning, ConfigError, GeosampleWarning
from geosample.sampling import _h3, sampler, spacing
from geosample.sampling.allocation import apportion, stratum_weights
from geosample.sampling.config import EVENT_DIMENSIONS, PlanConfig

PHASES = ("before", "after")
_LON = ("lon", "lng", "long", "longitude", "x")
_LAT = ("lat", "latitude", "y")
_DATE = ("date", "event_date", "start", "start_date", "datetime")
_END = ("end", "end_date")
_TYPE = ("type", "event_type", "kind", "category")
_ID = ("event_id", "id", "name")
_CANDIDATES_PER_EVENT = 64


class EventWarning(GeosampleWarning):
    """Some events were left out (outside the AOI or the period)."""


@dataclasses.dataclass(frozen=True)
class EventSites:
    """The sites drawn around events, and the strata they were balanced over."""

    sites: pd.DataFrame
    """One row per site: ``site_id``, ``h3``, ``lon``, ``lat``, ``stratum``, the dimensions, the event columns."""
    strata: pd.DataFrame
    """One row per stratum, as :func:`geosample.sampling._report.balance_report` expects."""
    meta: dict
    candidates: pd.DataFrame | None = None
    """Every candidate site (the sites' columns, ``_event``, ``_cell``, ``_chosen``), for the reserves."""


def read_events(path: str | Path) -> gpd.GeoDataFrame:
    """A catalogue as ``event_id``, ``event_type``, ``event_start``, ``event_end`` (dates) and a footprint.

    Raises:
        ConfigError: If a needed column is missing or dates do not parse; rows are named (1-based, header excluded).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--events {path} does not exist; give a CSV, GeoJSON, GeoPackage or GeoParquet file")
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        table = _read_csv(path)
    else:
        table = layers.read_vector(path, what="events")
    table = table.reset_index(drop=True)
    columns = {c.lower(): c for c in table.columns}
    date_col = _pick(columns, _DATE)
    if date_col is None:
        raise ConfigError(
            f"--events {path} has no date column; add one named date (or start and end), YYYY-MM-DD "
            f"(columns: {', '.join(c for c in table.columns if c != 'geometry')})"
        )
    type_col = _pick(columns, _TYPE)
    if type_col is None:
        raise ConfigError(f"--events {path} has no type column; add one named type (e.g. flood, wildfire)")
    start = _parse_dates(table[date_col], path, date_col)
    end_col = _pick(columns, _END)
    end = _parse_dates(table[end_col], path, end_col, allow_missing=True) if end_col else start.copy()
    end = end.fillna(start)
    backwards = np.flatnonzero((end < start).to_numpy())
    if backwards.size:
        raise ConfigError(f"--events {path}: the end is before the start in rows {_rows(backwards)}; swap them")
    kinds = table[type_col].astype("string").str.strip()
    missing = np.flatnonzero(kinds.isna().to_numpy() | (kinds == "").to_numpy())
    if missing.size:
        raise ConfigError(f"--events {path}: no event type in rows {_rows(missing)}; fill in the {type_col} column")
    id_col = _pick(columns, _ID)
    ids = table[id_col].astype(str) if id_col else pd.Series([str(i + 1) for i in range(len(table))])
    if ids.duplicated().any():
        dup = np.flatnonzero(ids.duplicated(keep=False).to_numpy())
        raise ConfigError(f"--events {path}: event ids repeat in rows {_rows(dup)}; make {id_col} unique")
    return gpd.GeoDataFrame(
        {
            "event_id": ids.to_numpy(),
            "event_type": kinds.to_numpy(dtype=object),
            "event_start": start.dt.date.to_numpy(),
            "event_end": end.dt.date.to_numpy(),
        },
        geometry=table.geometry.to_numpy(),
        crs="EPSG:4326",
    )


def _read_csv(path: Path) -> gpd.GeoDataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--events {path} is not a readable CSV ({exc.__class__.__name__}); check its format"
        ) from None
    columns = {c.lower().strip(): c for c in frame.columns}
    lon_col, lat_col = _pick(columns, _LON), _pick(columns, _LAT)
    if "geometry" in columns or "wkt" in columns:
        text = frame[columns.get("geometry") or columns["wkt"]]
        try:
            geometry = shapely.from_wkt(text.to_numpy(dtype=object))
        except shapely.errors.GEOSException:
            raise ConfigError(f"--events {path}: the geometry column holds text that is not WKT") from None
    elif lon_col and lat_col:
        lon = pd.to_numeric(frame[lon_col], errors="coerce")
        lat = pd.to_numeric(frame[lat_col], errors="coerce")
        bad = np.flatnonzero((lon.isna() | lat.isna() | (lon.abs() > 180) | (lat.abs() > 90)).to_numpy())
        if bad.size:
            raise ConfigError(f"--events {path}: rows {_rows(bad)} have no valid {lon_col}/{lat_col} in degrees")
        geometry = shapely.points(lon.to_numpy(), lat.to_numpy())
    else:
        raise ConfigError(f"--events {path} needs lon and lat columns (degrees, EPSG:4326) or a WKT geometry column")
    return gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")


def _pick(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((columns[n] for n in names if n in columns), None)


def _parse_dates(values: pd.Series, path: Path, column: str, *, allow_missing: bool = False) -> pd.Series:
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna() & ~(allow_missing & (text.isna() | (text == "")))
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        shown = ", ".join(f"row {i + 1}: {text.iloc[i]!r}" for i in rows[:5])
        raise ConfigError(
            f"--events {path}: column {column} has dates that do not parse ({shown}"
            f"{', ...' if rows.size > 5 else ''}); use YYYY-MM-DD"
        )
    return parsed.dt.tz_convert(None).dt.normalize()


def _rows(index: np.ndarray) -> str:
    shown = ", ".join(str(i + 1) for i in index[:8])
    return shown + (", ..." if index.size > 8 else "")


# ----------------------------------------------------------------------------------------- windows


def phase_windows(events: pd.DataFrame, cfg: PlanConfig) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per phase, the first and last day of each event's window (dates)."""
    start = pd.to_datetime(events["event_start"])
    end = pd.to_datetime(events["event_end"])
    gap = pd.Timedelta(days=cfg.gap_days)
    return {
        "before": (start - gap - pd.Timedelta(days=cfg.before_days), start - gap - pd.Timedelta(days=1)),
        "after": (end + gap + pd.Timedelta(days=1), end + gap + pd.Timedelta(days=cfg.after_days)),
    }


def usable_events(events: gpd.GeoDataFrame, cfg: PlanConfig, aoi: sampler.AOI) -> gpd.GeoDataFrame:
    """The events whose windows fit in the period and whose footprint meets the AOI; warn about the others.

    Raises:
        ConfigError: If no event's windows fit in ``--start``..``--end``.
        AOIError: If no event lies inside the AOI.
    """
    windows = phase_windows(events, cfg)
    first = windows["before"][0].dt.date
    last = windows["after"][1].dt.date
    in_time = ((first >= cfg.start) & (last <= cfg.end)).to_numpy()
    if not in_time.any():
        raise ConfigError(
            f"no event's before/after windows fit between --start {cfg.start} and --end {cfg.end} "
            f"(events run from {events['event_start'].min()} to {events['event_end'].max()}); widen the period"
        )
    if not in_time.all():
        _warn_left_out(events, ~in_time, f"their windows reach outside --start {cfg.start} .. --end {cfg.end}")
    inside = _meets_aoi(events.geometry.to_numpy(), aoi)
    if not inside.any():
        raise AOIError(f"no event of the catalogue lies inside the AOI {aoi.label!r}; widen --aoi or check the file")
    if not inside.all():
        _warn_left_out(events, ~inside & in_time, f"they lie outside the AOI {aoi.label!r}")
    return events[in_time & inside]


def _meets_aoi(footprints: np.ndarray, aoi: sampler.AOI) -> np.ndarray:
    """Whether each footprint touches the AOI: its representative point is inside, or it meets the AOI's polygons."""
    points = shapely.point_on_surface(footprints)
    inside = aoi.contains(sampler.Points(shapely.get_x(points), shapely.get_y(points)))
    if not inside.all():
        tree = shapely.STRtree(np.asarray(aoi.shapes(), dtype=object))
        hits = tree.query(footprints[~inside], predicate="intersects")
        rest = np.flatnonzero(~inside)
        inside[rest[np.unique(hits[0])]] = True
    return inside


def _warn_left_out(events: pd.DataFrame, mask: np.ndarray, why: str) -> None:
    if not mask.any():
        return
    ids = events["event_id"].to_numpy()[mask]
    shown = ", ".join(map(str, ids[:5])) + (", ..." if ids.size > 5 else "")
    warnings.warn(f"left out {ids.size} event(s) ({shown}): {why}", EventWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------- candidates


def candidate_points(
    geometry: shapely.Geometry, radius_m: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points on the event: in its polygon(s), or within ``radius_m`` of a point (the point first)."""
    if shapely.get_type_id(geometry) in (0, 4):  # Point, MultiPoint
        parts = shapely.get_parts(geometry)
        lon0 = np.repeat(shapely.get_x(parts), math.ceil(n / len(parts)))[:n]
        lat0 = np.repeat(shapely.get_y(parts), math.ceil(n / len(parts)))[:n]
        r = radius_m * np.sqrt(rng.random(n))
        theta = rng.random(n) * 2 * np.pi
        r[: len(parts)] = 0.0  # the event's own location first
        dlat = np.degrees(r * np.sin(theta) / 6_371_008.8)
        dlon = np.degrees(r * np.cos(theta) / (6_371_008.8 * np.maximum(np.cos(np.radians(lat0)), 1e-6)))
        lon = (lon0 + dlon + 180.0) % 360.0 - 180.0
        return lon, np.clip(lat0 + dlat, -90.0, 90.0)
    polygons = [p for p in shapely.get_parts(geometry) if shapely.get_type_id(p) in (3, 6) and p.area > 0]
    if not polygons:
        centre = shapely.point_on_surface(geometry)
        return candidate_points(centre, radius_m, n, rng)
    areas = np.array([p.area for p in polygons])
    counts = np.bincount(rng.choice(len(polygons), size=n, p=areas / areas.sum()), minlength=len(polygons))
    lons, lats = [], []
    for polygon, k in zip(polygons, counts, strict=True):
        if k == 0:
            continue
        west, south, east, north = polygon.bounds
        got_lon, got_lat = np.empty(0), np.empty(0)
        for _ in range(50):  # rejection sampling; each round draws enough for the polygon's fill of its box
            fill = max(polygon.area / max((east - west) * (north - south), 1e-18), 0.01)
            m = int(math.ceil(2 * k / fill)) + 8
            x = rng.uniform(west, east, m)
            y = rng.uniform(south, north, m)
            keep = shapely.contains_xy(polygon, x, y)
            got_lon, got_lat = np.concatenate([got_lon, x[keep]]), np.concatenate([got_lat, y[keep]])
            if got_lon.size >= k:
                break
        if got_lon.size == 0:  # a sliver: its representative point stands for it
            point = shapely.point_on_surface(polygon)
            got_lon, got_lat = np.array([point.x]), np.array([point.y])
        lons.append(got_lon[:k])
        lats.append(got_lat[:k])
    return np.concatenate(lons), np.concatenate(lats)


def event_parent_res(chip_size_m: float, sample_res: int) -> int:
    """The finest H3 resolution whose cells are at least a chip wide: one site per parent barely overlaps another."""
    for res in range(sample_res, -1, -1):
        if math.sqrt(_h3.mean_cell_area_km2(res)) * 1000.0 >= chip_size_m:
            return res
    return 0


# ------------------------------------------------------------------------------------------ drawing


def draw_event_sites(
    cfg: PlanConfig, events: gpd.GeoDataFrame, classifier: sampler.Classifier, rng: np.random.Generator
) -> EventSites:
    """Candidate sites per event, thinned and allocated across strata (see the module docstring)."""
    chip = max(cfg.chip_size)
    radius = cfg.event_radius_m if cfg.event_radius_m is not None else chip
    parent_res = cfg.parent_res if cfg.parent_res is not None else event_parent_res(chip, cfg.res)
    ordinary = [d for d in cfg.strata if d not in EVENT_DIMENSIONS]
    cand = _candidates(events, classifier, radius, parent_res, cfg, rng)
    labels = classifier.labels()
    if cand.empty:
        raise AOIError(
            "no site around the events passed the AOI and layer tests (sea or outside the AOI); "
            "use --no-land-only for events at sea, or check the AOI"
        )
    # Stratum of each candidate: the event dimensions and the ordinary ones, in --strata order.
    values = {
        "event_type": cand["event_type"].to_numpy(dtype=object),
        "event_year": np.array([str(d.year) for d in cand["event_start"]], dtype=object),
    }
    for i, name in enumerate(ordinary):
        values[name] = np.array([labels[s][i] for s in cand["_stratum"]], dtype=object)
    keys = pd.Series(["/".join(t) for t in zip(*(values[d] for d in cfg.strata), strict=True)])
    strata_names, cand_stratum = np.unique(keys.to_numpy(dtype=object), return_inverse=True)
    n_strata = len(strata_names)
    per_stratum_events = pd.DataFrame({"s": cand_stratum, "e": cand["_event"]}).drop_duplicates().groupby("s").size()
    events_per_stratum = per_stratum_events.reindex(range(n_strata), fill_value=0).to_numpy(dtype=float)
    label_tuples = [tuple(name.split("/")) for name in strata_names]
    weights = stratum_weights(cfg.allocation, label_tuples, list(cfg.strata), events_per_stratum, None)
    capacity = np.bincount(cand_stratum, minlength=n_strata)
    targets = apportion(cfg.samples, weights, rng)
    final = _redistribute(targets, capacity, weights, cfg.samples, rng)
    chosen = _round_robin(cand_stratum, cand["_event"].to_numpy(), cand["_order"].to_numpy(), final, rng)
    sites = cand.iloc[chosen].copy()
    inclusion, stratum_km2 = event_inclusion(cand, cand_stratum, chosen, cfg.res)
    sites["inclusion_prob"] = inclusion
    sites["stratum"] = strata_names[cand_stratum[chosen]]
    for name in cfg.strata:
        sites[name] = values[name][chosen]
    sites = sites.sort_values(["stratum", "site_id"], kind="stable").reset_index(drop=True)
    achieved = np.bincount(cand_stratum[chosen], minlength=n_strata)
    limited = (capacity < targets) & (achieved < targets)
    if limited.any():
        warnings.warn(
            f"{int(limited.sum())} event strata had fewer candidate sites than their share; the remainder went "
            "to the others (see report/balance.json)",
            CapacityWarning,
            stacklevel=3,
        )
    if achieved.sum() < cfg.samples:
        warnings.warn(
            f"the events hold only {int(achieved.sum())} sites under the spacing rule (parent resolution "
            f"{parent_res}); asked for {cfg.samples}",
            CapacityWarning,
            stacklevel=3,
        )
    strata_table = pd.DataFrame(
        {
            "stratum": strata_names,
            **{d: [lab[i] for lab in label_tuples] for i, d in enumerate(cfg.strata)},
            "area_km2": stratum_km2.reindex(range(n_strata), fill_value=0.0).to_numpy(),
            "cells": stratum_km2.reindex(range(n_strata), fill_value=0.0).to_numpy() / _h3.mean_cell_area_km2(cfg.res),
            "events": events_per_stratum.astype(np.int64),
            "weight": weights,
            "target": targets,
            "final_target": final,
            "achieved": achieved,
            "capacity_limited": limited,
            "limit_reason": np.where(limited, "capacity", ""),
        }
    )
    meta = {
        "events": {
            "file": str(cfg.events),
            "used": int(events.shape[0]),
            "with_sites": int(sites["event_id"].nunique()),
            "before_days": cfg.before_days,
            "after_days": cfg.after_days,
            "gap_days": cfg.gap_days,
            "radius_m": radius,
        },
        "resolutions": {"sample": cfg.res, "parent": parent_res},
    }
    keep = ["site_id", "h3", "lon", "lat", "stratum", *cfg.strata, "event_id", "event_type", "event_start",
            "event_end", "inclusion_prob"]  # fmt: skip
    everyone = cand.assign(stratum=strata_names[cand_stratum], **{n: values[n] for n in cfg.strata},
                           _chosen=np.isin(np.arange(len(cand)), chosen), inclusion_prob=np.nan)  # fmt: skip
    everyone.iloc[chosen, everyone.columns.get_loc("inclusion_prob")] = inclusion
    return EventSites(sites[list(dict.fromkeys(keep))], strata_table, meta, everyone)


def _candidates(
    events: gpd.GeoDataFrame,
    classifier: sampler.Classifier,
    radius_m: float,
    parent_res: int,
    cfg: PlanConfig,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Every event's candidate sites: distinct cells, thinned and classified.

    Thinned per parent cell and by the minimum distance, greedily in draw
    order (so a point event's own cell comes first).
    """
    chord = spacing.chord(cfg.spacing_m) if cfg.spacing_m > 0 else 0.0
    rows = []
    for e, event in enumerate(events.itertuples(index=False)):
        lon, lat = candidate_points(event.geometry, radius_m, _CANDIDATES_PER_EVENT, rng)
        cells = _h3.cells_from_points(lon, lat, cfg.res)
        _, first = np.unique(cells, return_index=True)
        cells = cells[np.sort(first)]
        parents = _h3.parent(cells, parent_res)
        rank = pd.Series(parents).groupby(parents).cumcount().to_numpy()
        cells = cells[rank < cfg.max_per_parent]
        if chord > 0:
            cells = cells[spacing.greedy_spacing(spacing.unit_vectors(*_h3.centres(cells)), chord)]
        rows.append(
            pd.DataFrame(
                {"_cell": cells, "_event": e, "_order": np.arange(cells.size), "_event_candidates": cells.size,
                 "_event_km2": footprint_km2(event.geometry, radius_m)}
            )
        )  # fmt: skip
    cand = pd.concat(rows, ignore_index=True)
    lon, lat = _h3.centres(cand["_cell"].to_numpy())
    stratum, _ = classifier.classify(lon, lat)
    cand["lon"], cand["lat"], cand["_stratum"] = lon, lat, stratum
    cand = cand[stratum >= 0].reset_index(drop=True)
    info = events.reset_index(drop=True).iloc[cand["_event"].to_numpy()]
    for column in ("event_id", "event_type", "event_start", "event_end"):
        cand[column] = info[column].to_numpy()
    hexes = _h3.to_hex(cand["_cell"].to_numpy())
    cand["h3"] = hexes
    cand["site_id"] = [f"{h}-e{e}" for h, e in zip(hexes, cand["_event"], strict=True)]
    return cand


def footprint_km2(geometry: shapely.Geometry, radius_m: float) -> float:
    """Area where an event's sites may lie: its polygons' geodesic area, or a disk of ``radius_m`` per point."""
    if shapely.get_type_id(geometry) in (0, 4):
        return len(shapely.get_parts(geometry)) * math.pi * (radius_m / 1000.0) ** 2
    area_m2, _ = _GEOD.geometry_area_perimeter(shapely.make_valid(geometry))
    return abs(area_m2) / 1e6


def event_inclusion(cand: pd.DataFrame, stratum: np.ndarray, chosen: np.ndarray, res: int) -> tuple:
    """Inclusion probability of each chosen site, and each stratum's estimated area (km²).

    Within a stratum sites are taken event by event, so the probability is
    per event and stratum: ``π = n_{e,h} / N_{e,h}``, with ``n_{e,h}`` the
    sites taken from event ``e`` in stratum ``h`` and ``N_{e,h}`` the cells of
    the event's footprint there (its area, in cells at the sample resolution,
    times the share of its candidates that fell in ``h``). Capped at 1.
    """
    event = cand["_event"].to_numpy()
    key = pd.MultiIndex.from_arrays([event, stratum])
    share = pd.Series(1.0, index=key).groupby(level=[0, 1]).sum()
    per_event = cand.groupby("_event")[["_event_candidates", "_event_km2"]].first()
    e = share.index.get_level_values(0)
    area = share / per_event["_event_candidates"].reindex(e).to_numpy() * per_event["_event_km2"].reindex(e).to_numpy()
    taken = pd.Series(1.0, index=key[chosen]).groupby(level=[0, 1]).sum()
    cells = area.reindex(key[chosen]).to_numpy() / _h3.mean_cell_area_km2(res)
    prob = np.clip(taken.reindex(key[chosen]).to_numpy() / np.maximum(cells, 1.0), 0.0, 1.0)
    stratum_km2 = area.groupby(level=1).sum()
    return prob, stratum_km2


_GEOD = pyproj.Geod(ellps="WGS84")


def _redistribute(
    targets: np.ndarray, capacity: np.ndarray, weights: np.ndarray, total: int, rng: np.random.Generator
) -> np.ndarray:
    """Cap every stratum at its capacity and hand the excess to strata that still have room."""
    final = np.minimum(targets, capacity)
    for _ in range(len(targets) + 1):
        short = min(total, int(capacity.sum())) - int(final.sum())
        room = capacity - final
        if short <= 0 or not (room > 0).any():
            break
        extra = apportion(short, np.where(room > 0, np.maximum(weights, 1e-12), 0.0), rng)
        final = np.minimum(final + extra, capacity)
    return final


def _round_robin(
    stratum: np.ndarray, event: np.ndarray, order: np.ndarray, quota: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Pick ``quota[s]`` candidates of each stratum, taking events in turn (random event order), each in its order."""
    chosen = []
    shuffled = rng.permutation(int(event.max()) + 1)
    for s in np.flatnonzero(quota):
        idx = np.flatnonzero(stratum == s)
        # Rank of each candidate within its event, then interleave: every event's 1st, then every 2nd, ...
        within = pd.Series(order[idx]).groupby(event[idx]).rank(method="first").to_numpy() - 1
        sequence = idx[np.lexsort((shuffled[event[idx]], within))]
        chosen.append(sequence[: quota[s]])
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)


def event_rows(sites: pd.DataFrame, cfg: PlanConfig) -> pd.DataFrame:
    """Two rows per site, ``before`` and ``after``, with their windows; ``site_id`` is shared."""
    windows = phase_windows(sites, cfg)
    parts = []
    for phase in PHASES:
        first, last = windows[phase]
        rows = sites.copy()
        rows["start_datetime"] = pd.to_datetime(first).dt.tz_localize("UTC")
        rows["end_datetime"] = pd.to_datetime(last).dt.tz_localize("UTC") + pd.Timedelta(seconds=86_399)
        rows["time_bin"] = [str(d.year) for d in rows["start_datetime"]]
        rows["phase"] = phase
        rows["id_suffix"] = f"-{phase}"
        parts.append(rows)
    out = pd.concat(parts, ignore_index=True)
    out["event_date"] = pd.to_datetime(out.pop("event_start")).dt.tz_localize("UTC")
    out["event_end"] = pd.to_datetime(out["event_end"]).dt.tz_localize("UTC")
    return out

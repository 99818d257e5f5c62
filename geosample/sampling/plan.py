"""``geosample.plan``: a globally balanced, hierarchical H3 sample of sites."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from geosample import __version__, layers
from geosample._dataset import read_config, write_section, writing
from geosample.errors import AOIError, CapacityError, CapacityWarning, DatasetError
from geosample.sampling import _h3, events, reserves, sampler
from geosample.sampling._geometry import chip_footprints, utm_epsg
from geosample.sampling._report import balance_report, spacing_report
from geosample.sampling.allocation import apportion, stratum_weights
from geosample.sampling.aoi import parse_aoi
from geosample.sampling.config import EVENT_DIMENSIONS, PlanConfig
from geosample.sampling.spacing import SpacingIndex
from geosample.sampling.strata import build_dimensions
from geosample.sampling.timebins import (
    Bin,
    assign_windows,
    bin_label,
    bin_of,
    local_season,
    make_bins,
    revisit_bins,
    revisit_offset,
)

PLAN_FILE = "plan.parquet"
PLAN_GPKG = "plan.gpkg"
RESERVE_FILE = "reserve.parquet"


def plan(
    out: str | Path | None = None,
    *,
    config: PlanConfig | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    **settings: Any,
) -> gpd.GeoDataFrame:
    """Plan a balanced sample of sites and, with ``out``, write the dataset's plan files.

    Args:
        out: Dataset folder ``DS``; writes ``plan.parquet``, ``plan.gpkg``,
            ``reserve.parquet`` (the reserve sites, unless ``reserve=0``),
            ``report/balance.json``, ``report/map.png``, ``report/time.png``
            and the ``plan`` section of ``geosample.yaml``. ``None`` only
            computes.
        config: A ready :class:`PlanConfig`; otherwise ``settings`` build one
            (``samples=500, aoi="KEN", strata="climate,landcover"``, ...).
        overwrite: Replace a plan made with other settings.
        progress: Show a progress bar (default: when stderr is a terminal).
        **settings: :class:`PlanConfig` fields, when ``config`` is not given.

    Returns:
        One row per sample (GeoDataFrame, EPSG:4326); ``.attrs["balance"]``
        holds the balance report.
    """
    cfg = config if config is not None else PlanConfig.from_mapping(settings)
    if out is not None:
        _check_dataset(Path(out), cfg, overwrite)
    samples, reserve, report = _compute(cfg, progress)
    if len(reserve):
        reserves.check_ids(samples["sample_id"], reserve["sample_id"])
    if out is not None:
        write_plan(Path(out), samples, report, cfg, reserve)
    samples.attrs["balance"] = report
    return samples


def _check_dataset(ds: Path, cfg: PlanConfig, overwrite: bool) -> None:
    if ds.exists() and not ds.is_dir():
        raise DatasetError(f"--out {ds} is a file; give a folder for the dataset")
    recorded = read_config(ds).get("plan") if ds.exists() else None
    if recorded and not overwrite and (ds / PLAN_FILE).exists():
        defaults = PlanConfig().to_dict()  # a setting added since the plan was made counts as its default
        if {k: recorded.get(k, defaults[k]) for k in cfg.to_dict()} != cfg.to_dict():
            raise DatasetError(
                f"{ds} already holds a plan made with other settings; use --overwrite to replace it "
                "(later stages' files then no longer match) or choose a new --out folder"
            )


def _compute(cfg: PlanConfig, progress: bool | None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, dict[str, Any]]:
    """The plan's samples, its reserve samples and the balance report."""
    if cfg.events is not None:
        return _compute_events(cfg)
    seeds = np.random.SeedSequence(cfg.seed).spawn(5)  # the fifth, the reserves', leaves the plan as it was
    rng_atlas, rng_draw, rng_alloc, rng_time, rng_reserve = (np.random.default_rng(s) for s in seeds)
    aoi = parse_aoi(cfg.aoi)
    dims = build_dimensions(cfg.strata)
    bins = make_bins(cfg.start, cfg.end, cfg.time_bins, cfg.window_days)
    bins = revisit_bins(bins, cfg.start, cfg.end, cfg.window_days, cfg.revisits, cfg.revisit_step, cfg.revisit_interval)
    classifier = sampler.Classifier(aoi, dims, cfg.land_only)
    dim_names = [d.name for d in dims]

    atlas_res = min(sampler.choose_atlas_res(aoi, cfg.res), cfg.parent_res if cfg.parent_res is not None else 15)
    heterogeneity = cfg.allocation == "heterogeneity"
    atlas, lsi = sampler.build_atlas(classifier, atlas_res, cfg.res, rng_atlas, heterogeneity=heterogeneity)
    if atlas.cell_of_entry.size == 0:
        where = "land with data in every stratum layer" if cfg.land_only else "points"
        fix = "; use --no-land-only to sample water" if cfg.land_only and atlas.rejected.get("sea") else ""
        raise AOIError(f"the AOI {aoi.label!r} has no {where} ({atlas.n_probes} probes tried){fix}")
    labels = classifier.labels()
    n_strata = len(labels)
    area = atlas.stratum_area_km2(n_strata)
    parent_res = (
        cfg.parent_res
        if cfg.parent_res is not None
        else sampler.auto_parent_res(atlas.valid_area_km2, cfg.samples, cfg.max_per_parent, atlas_res, cfg.res)
    )
    sampler.check_capacity(cfg.samples, atlas.valid_area_km2, parent_res, cfg.max_per_parent, aoi.label)
    spacing = _check_spacing(cfg, atlas, aoi.label, rng_atlas)

    proposal = lsi if heterogeneity else None
    hetero_area = None
    if lsi is not None:
        entry_area = atlas.area_km2[atlas.cell_of_entry] * atlas.share_of_entry * lsi[atlas.cell_of_entry]
        hetero_area = np.bincount(atlas.stratum_of_entry, weights=entry_area, minlength=n_strata)
    weights = stratum_weights(cfg.allocation, labels, dim_names, area, hetero_area)
    targets = apportion(cfg.samples, weights, rng_alloc)

    bar = _progress_bar(cfg.samples, progress)
    with bar if bar is not None else nullcontext():
        update = bar.update if bar is not None else None
        drawer = _Drawer(cfg, classifier, atlas, parent_res, proposal, rng_draw, update, spacing)
        result = drawer.draw(targets)
        final_target, result = _redistribute(drawer, weights, targets, result, rng_alloc)

    achieved = np.bincount(result.stratum, minlength=n_strata)
    limited = result.exhausted & (achieved < final_target)
    if limited.any():
        warnings.warn(
            f"{int(limited.sum())} strata could not hold their share (their parent cells ran out, or candidates "
            "rarely landed in them); their remainder went to the others (see report/balance.json)",
            CapacityWarning,
            stacklevel=3,
        )
    site_area = _h3.cell_areas_km2(result.cells)
    inclusion, _ = sampler.inclusion_probabilities(result.cells, result.stratum, atlas, proposal, site_area)
    sites = _site_table(cfg, result, labels, dim_names, bins, rng_time, inclusion)

    def reserve_inclusion(cells: np.ndarray, strata: np.ndarray) -> np.ndarray:
        area = _areas(cells, result.cells, site_area)  # the plan's sites come first: their areas are known
        return sampler.inclusion_probabilities(cells, strata, atlas, proposal, area)[0]

    samples = _sample_rows(cfg, _revisit_rows(cfg, sites))
    reserve = reserves.plan_reserves(
        per_site=cfg.reserve, sites=sites, stratum_ids={"/".join(lab): i for i, lab in enumerate(labels)},
        draw=dataclasses.replace(drawer, rng=rng_reserve, progress=None).draw, used=_used(result),
        bins=bins, start=cfg.start, end=cfg.end, window_days=cfg.window_days, keep_season=cfg.time_bins == "season",
        inclusion=reserve_inclusion, rng=rng_reserve,
    )  # fmt: skip
    strata_table = pd.DataFrame(
        {
            "stratum": ["/".join(lab) for lab in labels],
            **{d: [lab[i] for lab in labels] for i, d in enumerate(dim_names)},
            "area_km2": area,
            "cells": area / _h3.mean_cell_area_km2(cfg.res),
            "weight": weights,
            "target": targets,
            "final_target": final_target,
            "achieved": achieved,
            "capacity_limited": limited,
            "limit_reason": np.where(limited, np.where(result.rare, "rare", "capacity"), ""),
        }
    )
    strata_table = strata_table[(strata_table["weight"] > 0) | (strata_table["achieved"] > 0)]
    strata_table = strata_table.sort_values("stratum", kind="stable").reset_index(drop=True)
    meta = {
        "geosample_version": __version__,
        "aoi": aoi.label,
        "n_samples": int(len(samples)),
        "resolutions": {"sample": cfg.res, "parent": parent_res, "atlas": atlas_res},
        "max_per_parent": cfg.max_per_parent,
        "allocation": cfg.allocation,
        "atlas": {
            "cells": int(atlas.cells.size),
            "probes_per_cell": atlas.probes_per_cell,
            "valid_area_km2": round(atlas.valid_area_km2, 1),
            "capacity_estimate": sampler.capacity(atlas.valid_area_km2, parent_res, cfg.max_per_parent),
        },
        "draw": {"rounds": result.rounds, "candidates": result.candidates},
        "spacing": spacing_report(samples, cfg.spacing_m, cfg.max_per_parent, parent_res),
    }
    report = balance_report(sites, strata_table, dim_names, meta)
    return samples, _reserve_rows(cfg, report, sites, reserve, _revisit_rows), report


def _areas(cells: np.ndarray, known: np.ndarray, known_area: np.ndarray) -> np.ndarray:
    """Areas (km²) of ``cells``, reusing ``known_area`` where ``cells`` begins with the ``known`` cells."""
    if cells.size >= known.size and np.array_equal(cells[: known.size], known):
        return np.concatenate([known_area, _h3.cell_areas_km2(cells[known.size :])])
    return _h3.cell_areas_km2(cells)


def _reserve_rows(
    cfg: PlanConfig, report: dict[str, Any], sites: pd.DataFrame, draw: reserves.ReserveDraw, rows: Callable
) -> gpd.GeoDataFrame:
    """The reserve sites as sample rows (``rows``: site table → rows per window), and their part of the report."""
    reserves.add_to_report(report, draw.report(sites.groupby("stratum").size()))
    reserves.warn_short(draw)
    if draw.sites.empty:
        return gpd.GeoDataFrame({"sample_id": pd.Series([], dtype=object)}, geometry=[], crs="EPSG:4326")
    table = _sample_rows(cfg, rows(cfg, draw.sites))
    rank = table.pop(reserves.RANK_COLUMN)
    table.insert(table.columns.get_loc("geometry"), reserves.RANK_COLUMN, rank.astype(np.int64))
    return table


def _check_spacing(
    cfg: PlanConfig, atlas: sampler.Atlas, aoi_label: str, rng: np.random.Generator
) -> SpacingIndex | None:
    """The minimum-distance index for the draw; refuse a distance the AOI cannot hold ``--samples`` at."""
    distance = cfg.spacing_m
    if distance <= 0:
        return None
    if not sampler.spacing_fits(cfg.samples, atlas, distance):
        room = sampler.spacing_capacity(atlas, distance, rng)
        if cfg.samples > room:
            raise CapacityError(
                f"the AOI {aoi_label!r} holds about {room} site(s) at least {distance:g} m apart "
                f"(--min-distance-m), fewer than --samples {cfg.samples}; ask for at most {room}, "
                "or give a smaller --min-distance-m (0 turns the distance rule off; chips may then overlap)"
            )
    return SpacingIndex(distance)


def _compute_events(cfg: PlanConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, dict[str, Any]]:
    """An event-centred plan: sites around the catalogue's events, a before and an after row each."""
    seeds = np.random.SeedSequence(cfg.seed).spawn(2)  # the second, the reserves', leaves the plan as it was
    rng, rng_reserve = (np.random.default_rng(s) for s in seeds)
    aoi = parse_aoi(cfg.aoi)
    ordinary = tuple(d for d in cfg.strata if d not in EVENT_DIMENSIONS)
    classifier = sampler.Classifier(aoi, build_dimensions(ordinary) if ordinary else [], cfg.land_only)
    catalogue = events.usable_events(events.read_events(cfg.events), cfg, aoi)
    drawn = events.draw_event_sites(cfg, catalogue, classifier, rng)
    samples = _sample_rows(cfg, events.event_rows(drawn.sites, cfg))
    sites = drawn.sites.assign(time_bin=[str(d.year) for d in drawn.sites["event_start"]])
    meta = {
        "geosample_version": __version__,
        "aoi": aoi.label,
        "n_samples": int(len(samples)),
        "max_per_parent": cfg.max_per_parent,
        "allocation": cfg.allocation,
        **drawn.meta,
        "spacing": spacing_report(samples, cfg.spacing_m, cfg.max_per_parent, drawn.meta["resolutions"]["parent"]),
    }
    report = balance_report(sites, drawn.strata, list(cfg.strata), meta)
    assert drawn.candidates is not None
    reserve = reserves.event_reserves(drawn.candidates, list(drawn.sites.columns), cfg.reserve, rng_reserve)
    return samples, _reserve_rows(cfg, report, sites, reserve, lambda c, s: events.event_rows(s, c)), report


@dataclasses.dataclass
class _Drawer:
    """The fixed arguments of :func:`sampler.draw` for one plan."""

    cfg: PlanConfig
    classifier: sampler.Classifier
    atlas: sampler.Atlas
    parent_res: int
    proposal: np.ndarray | None
    rng: np.random.Generator
    progress: Callable[[int], object] | None
    spacing: SpacingIndex | None = None
    """Every site taken so far, for the minimum distance (shared by all draws of the plan)."""

    def draw(self, targets: np.ndarray, used: tuple[np.ndarray, ...] | None = None) -> sampler.DrawResult:
        """Draw ``targets`` more sites, besides ``used`` ones."""
        return sampler.draw(
            self.classifier, self.atlas, targets, sample_res=self.cfg.res, parent_res=self.parent_res,
            max_per_parent=self.cfg.max_per_parent, rng=self.rng, proposal_weight=self.proposal, used=used,
            progress=self.progress, spacing=self.spacing,
        )  # fmt: skip


def _redistribute(
    drawer: _Drawer, weights: np.ndarray, targets: np.ndarray, result: sampler.DrawResult, rng: np.random.Generator
) -> tuple[np.ndarray, sampler.DrawResult]:
    """Give capacity-limited strata's remainder to the others until the total is met."""
    cfg, parent_res = drawer.cfg, drawer.parent_res
    n_strata = targets.size
    final_target = targets.copy()
    exhausted = result.exhausted.copy()
    for _ in range(n_strata + 1):
        achieved = np.bincount(result.stratum, minlength=n_strata)
        short = cfg.samples - int(achieved.sum())
        if short <= 0:
            break
        open_ = ~exhausted & (weights > 0)
        if not open_.any():
            distance = f", --min-distance-m {cfg.spacing_m:g}" if cfg.spacing_m > 0 else ""
            raise CapacityError(
                f"the AOI {drawer.classifier.aoi.label!r} holds about {int(achieved.sum())} sample(s) "
                "under the spacing rules "
                f"(parent resolution {parent_res}, --max-per-parent {cfg.max_per_parent}{distance}), fewer than "
                f"--samples {cfg.samples}; ask for at most {int(achieved.sum())}, or {sampler.finer_hint(parent_res)}"
                + (" or a smaller --min-distance-m" if distance else "")
            )
        budget = cfg.samples - int(achieved[~open_].sum())
        final_target = np.where(open_, apportion_preferring(budget, weights * open_, achieved, rng), final_target)
        need = np.where(open_, np.maximum(final_target - achieved, 0), 0)
        if need.sum() > short:
            need = apportion(short, need.astype(float), rng)
            final_target = np.where(open_, achieved + need, final_target)
        more = drawer.draw(need, used=_used(result))
        exhausted |= more.exhausted & (need > 0)
        rare = result.rare | (more.rare & (need > 0))
        result = sampler.DrawResult(
            more.cells, more.stratum, exhausted, result.rounds + more.rounds, result.candidates + more.candidates, rare,
            more.lon, more.lat,
        )  # fmt: skip
    return final_target, result


def _used(result: sampler.DrawResult) -> tuple[np.ndarray, ...]:
    """The sites of ``result`` as the ``used`` sites of a later draw: cells, strata and, when known, centres."""
    if result.lon is None or result.lat is None:
        return result.cells, result.stratum
    return result.cells, result.stratum, result.lon, result.lat


def apportion_preferring(total: int, weights: np.ndarray, have: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apportion, breaking remainder ties towards strata that already have more."""
    base = apportion(total, weights, rng)
    exact = total * weights / weights.sum()
    floor = np.floor(exact).astype(np.int64)
    extra = int(base.sum() - floor.sum())
    if extra == 0:
        return base
    remainder = np.round(exact - floor, 12)
    order = np.lexsort((rng.permutation(weights.size), -have, -remainder))
    order = order[weights[order] > 0]
    out = floor.copy()
    out[order[:extra]] += 1
    return out


def _site_table(
    cfg: PlanConfig,
    result: sampler.DrawResult,
    labels: list[tuple[str, ...]],
    dim_names: list[str],
    bins: list[Bin],
    rng: np.random.Generator,
    inclusion: np.ndarray,
) -> pd.DataFrame:
    """One row per site: cell, centre, stratum values, time window and inclusion probability."""
    order = np.argsort(result.cells, kind="stable")
    cells = result.cells[order]
    strata = result.stratum[order]
    if result.lon is not None and result.lat is not None:  # the centres the draw measured
        lon, lat = result.lon[order], result.lat[order]
    else:
        lon, lat = _h3.centres(cells)
    site = pd.DataFrame({"site_id": _h3.to_hex(cells), "lon": lon, "lat": lat})
    site["stratum"] = np.array(["/".join(lab) for lab in labels], dtype=object)[strata]
    for i, d in enumerate(dim_names):
        site[d] = np.array([lab[i] for lab in labels], dtype=object)[strata]
    windows = assign_windows(strata, lat, bins, cfg.start, cfg.end, cfg.window_days, rng)
    site = pd.concat([site, windows], axis=1)
    if cfg.time_bins != "season":
        site = site.drop(columns="season")
    site["inclusion_prob"] = inclusion[order]
    return site


def _revisit_rows(cfg: PlanConfig, sites: pd.DataFrame) -> pd.DataFrame:
    """``revisits`` rows per site, their windows shifted by whole steps; ``revisit_index`` numbers them."""
    if cfg.revisits <= 1:
        return sites
    parts = []
    north = sites["lat"].to_numpy() >= 0
    for index in range(cfg.revisits):
        rows = sites.copy()
        offset = revisit_offset(cfg.revisit_step, cfg.revisit_interval, index)
        starts = rows["start_datetime"] + offset
        if cfg.window_days is not None:
            ends = starts + pd.Timedelta(days=cfg.window_days) - pd.Timedelta(seconds=1)
        else:  # the whole bin the shifted window falls in, clipped to the period
            spans = [bin_of(day, cfg.time_bins, n).span(n)[:2] for day, n in zip(starts, north, strict=True)]
            starts = pd.to_datetime([max(first, cfg.start) for first, _ in spans], utc=True)
            ends = pd.to_datetime([min(last, cfg.end) for _, last in spans], utc=True) + pd.Timedelta(seconds=86_399)
        rows["start_datetime"], rows["end_datetime"] = starts, ends
        rows["time_bin"] = [bin_label(day, cfg.time_bins) for day in rows["start_datetime"]]
        if cfg.time_bins == "season":
            rows["season"] = [local_season(label[-3:], n) for label, n in zip(rows["time_bin"], north, strict=True)]
        rows["revisit_index"] = np.int64(index)
        rows["id_suffix"] = f"-r{index}"
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def _sample_rows(cfg: PlanConfig, sites: pd.DataFrame) -> gpd.GeoDataFrame:
    epsg = utm_epsg(sites["lon"].to_numpy(), sites["lat"].to_numpy())
    suffix = sites.pop("id_suffix") if "id_suffix" in sites else ""
    parts = []
    for size in cfg.chip_size:
        rows = sites.copy()
        rows.insert(0, "sample_id", rows["site_id"] + f"-{size:g}m" + suffix)
        if "h3" not in rows:
            rows.insert(2, "h3", rows["site_id"])
        rows.insert(3, "h3_res", np.int64(cfg.res))
        rows["chip_size_m"] = float(size)
        rows["epsg"] = epsg.astype(np.int64)
        if "inclusion_prob" in rows:  # beside geometry, as DESIGN.md lists it
            rows["inclusion_prob"] = rows.pop("inclusion_prob")
        # A UTM-straight edge of a few km is straight in lon/lat to well under a
        # millimetre; large chips get up to 8 segments per edge.
        densify = int(np.clip(np.ceil(size / 5000.0), 1, 8))
        rows["geometry"] = chip_footprints(rows["lon"].to_numpy(), rows["lat"].to_numpy(), epsg, float(size), densify)
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True).sort_values("sample_id", kind="stable").reset_index(drop=True)
    return gpd.GeoDataFrame(table, geometry="geometry", crs="EPSG:4326")


def _progress_bar(total: int, enabled: bool | None) -> tqdm | None:
    if enabled is False:
        return None
    return tqdm(total=total, desc="plan", unit="site", disable=None if enabled is None else not enabled, leave=False)


def _chronological_bins(sites: pd.DataFrame, cfg: PlanConfig) -> tuple[pd.DataFrame, list[str]]:
    """Bins in time order; season bins by local season, the unit they are balanced in."""
    bins = make_bins(cfg.start, cfg.end, cfg.time_bins, cfg.window_days)
    if cfg.time_bins != "season":
        return sites, [b.span(True)[2] for b in bins]
    labelled = sites.assign(time_bin=sites["time_bin"].str[:4] + " " + sites["season"])
    return labelled, [f"{b.year} {b.season}" for b in bins]


def write_plan(
    ds: Path,
    samples: gpd.GeoDataFrame,
    report: dict[str, Any],
    cfg: PlanConfig,
    reserve: gpd.GeoDataFrame | None = None,
) -> None:
    """Write every plan file into ``ds`` (and ``reserve.parquet`` when there are reserves), each finished first."""
    with writing(ds, "plan", create=True):  # one writer; a killed run's .plan-*; a failed first run leaves no DS
        _write_plan(ds, samples, report, cfg, reserve)


def _write_plan(
    ds: Path, samples: gpd.GeoDataFrame, report: dict[str, Any], cfg: PlanConfig, reserve: gpd.GeoDataFrame | None
) -> None:
    from geosample._gpkg import write_styled_gpkg
    from geosample.sampling._plots import plot_sample_map, plot_time_bins

    staging = Path(tempfile.mkdtemp(prefix=".plan-", dir=ds))
    try:
        (staging / "report").mkdir()
        samples.to_parquet(
            staging / PLAN_FILE, index=False, compression="zstd", schema_version="1.1.0", write_covering_bbox=True
        )
        names = [PLAN_FILE, PLAN_GPKG, "report/balance.json", "report/map.png", "report/time.png"]
        if reserve is not None and len(reserve):
            reserve.to_parquet(
                staging / RESERVE_FILE, index=False, compression="zstd", schema_version="1.1.0",
                write_covering_bbox=True,
            )  # fmt: skip
            names.append(RESERVE_FILE)
        write_styled_gpkg(samples, staging / PLAN_GPKG, "samples", category_column="stratum")
        (staging / "report" / "balance.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        first_site = samples.drop_duplicates("site_id")
        plot_sample_map(
            first_site, layers.land_polygons(), staging / "report" / "map.png", dimensions=list(report["dimensions"])
        )
        hue = first_site.columns[first_site.columns.get_loc("stratum") + 1]
        sites_by_bin, order = _chronological_bins(first_site, cfg)
        plot_time_bins(
            sites_by_bin, staging / "report" / "time.png", bin_column="time_bin", hue_column=hue, order=order
        )
        (ds / "report").mkdir(exist_ok=True)
        for name in names:
            (staging / name).replace(ds / name)
        if RESERVE_FILE not in names:  # a plan without reserves leaves none of an earlier plan's
            (ds / RESERVE_FILE).unlink(missing_ok=True)
        write_section(
            ds,
            "plan",
            {**cfg.to_dict(), "resolutions": report["resolutions"], "geosample_version": __version__},
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Splits: spatial blocks, whole sites, a buffer between splits, stratified, deterministic; checked independently."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from independent import cross_split_gaps, footprint_gap_m

from geosample.errors import ConfigError, DatasetError
from geosample.export.splits import SPLITS, Splits, h3_parents, make_splits, parse_fractions, split_cells, split_samples
from geosample.sampling._geometry import chip_footprints, utm_epsg

FRACTIONS = st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)).filter(lambda t: sum(t) > 0)


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-179.9, 179.9),
    res=st.integers(0, 15),
    up=st.integers(0, 15),
)
def test_h3_parents_match_h3py(lat: float, lon: float, res: int, up: int) -> None:
    cell = h3.latlng_to_cell(lat, lon, res)
    parent_res = max(0, res - up)
    assert format(int(h3_parents([cell], parent_res)[0]), "x") == h3.cell_to_parent(cell, parent_res)


def test_h3_parents_refuses_a_finer_resolution() -> None:
    with pytest.raises(DatasetError, match="at most 4"):
        h3_parents([h3.latlng_to_cell(10, 10, 4)], 6)


@settings(max_examples=150, deadline=None)
@given(
    strata=st.lists(st.integers(1, 25), min_size=1, max_size=25),
    weights=FRACTIONS,
    seed=st.integers(0, 2**32 - 1),
)
def test_split_cells_hold_the_shares_within_every_stratum_and_overall(
    strata: list[int], weights: tuple[int, int, int], seed: int
) -> None:
    share = np.asarray(weights, dtype=float) / sum(weights)
    stratum = np.repeat(np.arange(len(strata)), strata)
    size = np.ones(stratum.size)
    choice = split_cells(stratum, size, share, np.random.default_rng(seed))
    assert set(np.unique(choice)) <= set(np.flatnonzero(share > 0))  # a zero share gets nothing
    for s, n in enumerate(strata):
        counts = np.bincount(choice[stratum == s], minlength=3)
        assert np.abs(counts - share * n).max() < 1.5, (s, counts, share * n)
    total = np.bincount(choice, minlength=3)
    assert np.abs(total - share * stratum.size).max() < 1.5
    again = split_cells(stratum, size, share, np.random.default_rng(seed))
    assert np.array_equal(choice, again)


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=60), seed=st.integers(0, 1000))
def test_split_cells_with_cells_of_several_samples(sizes: list[int], seed: int) -> None:
    size = np.asarray(sizes, dtype=float)
    choice = split_cells(np.zeros(size.size, dtype=int), size, (0.6, 0.2, 0.2), np.random.default_rng(seed))
    counts = np.bincount(choice, weights=size, minlength=3)
    assert np.abs(counts - np.array([0.6, 0.2, 0.2]) * size.sum()).max() <= 1.5 * size.max()


def _synthetic_plan(seed: int, n_sites: int = 120, clusters: int = 6, spread_km: float = 15.0) -> gpd.GeoDataFrame:
    """Sites in a few tight clusters (so chips of different sites come within a buffer of each other),
    two chip sizes and two dates per site, strata of very different sizes (some of exactly 3 sites)."""
    rng = np.random.default_rng(seed)
    centre_lon, centre_lat = rng.uniform(-170, 170, clusters), rng.uniform(-55, 65, clusters)
    which = rng.integers(0, clusters, n_sites)
    lat = np.clip(centre_lat[which] + rng.normal(0, spread_km / 111, n_sites), -80, 80)
    lon = (centre_lon[which] + rng.normal(0, spread_km / 111, n_sites) / np.cos(np.radians(lat)) + 180) % 360 - 180
    strata = np.array(["big"] * n_sites, dtype=object)
    strata[rng.permutation(n_sites)[:3]] = "three"
    rest = np.flatnonzero(strata == "big")
    strata[rest[:2]] = "two"
    strata[rest[2:30]] = "mid"
    rows = []
    epsg = utm_epsg(lon, lat)
    for size in (1000.0, 2000.0):
        footprints = chip_footprints(lon, lat, epsg, size, 1)
        for date in ("2021", "2022"):
            for i in range(n_sites):
                site = f"s{i:03d}"
                rows.append({"sample_id": f"{site}-{size:g}m-{date}", "site_id": site, "stratum": strata[i],
                             "lon": lon[i], "lat": lat[i], "chip_size_m": size, "geometry": footprints[i]})  # fmt: skip
    return gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")


def _check_guarantees(plan: gpd.GeoDataFrame, result: Splits, buffer_m: float) -> None:
    """What the splits promise, checked without geosample's code."""
    split = result.split.dropna()
    kept = plan.loc[split.index]
    assert (kept.assign(split=split).groupby("site_id")["split"].nunique() == 1).all()
    dropped_sites = set(plan["site_id"]) - set(kept["site_id"])
    assert result.split.isna().groupby(plan["site_id"]).all().sum() == len(dropped_sites)  # whole sites only
    gaps = cross_split_gaps(plan, pd.Series(split.to_numpy(), index=kept["sample_id"].to_numpy()))
    assert all(g >= buffer_m - 1e-6 for g in gaps.values()), gaps
    for name, info in result.report["splits"].items():
        measured = gaps.get(name, np.inf)
        if np.isfinite(measured):
            assert info["min_distance_to_other_splits_m"] == pytest.approx(measured, abs=1.0)
        assert info["sites"] == kept.loc[split == name, "site_id"].nunique()
    assert sum(i["sites_dropped_for_buffer"] for i in result.report["splits"].values()) == len(dropped_sites)
    sites = kept.drop_duplicates("site_id").assign(split=split.reindex(kept.drop_duplicates("site_id").index))
    counts = plan.drop_duplicates("site_id")["stratum"].value_counts()
    open_splits = {SPLITS[k] for k, f in enumerate(result.report["fractions"].values()) if f > 0}
    missing = set(result.report["strata_missing_from_a_split"])
    for stratum in counts[counts >= 3].index:
        if stratum in missing:  # only if no three of its sites are farther than the buffer apart
            assert _spread(plan[plan["stratum"] == stratum], buffer_m) < len(open_splits), stratum
        else:
            assert set(sites.loc[sites["stratum"] == stratum, "split"]) >= open_splits, stratum


def _spread(rows: gpd.GeoDataFrame, buffer_m: float) -> int:
    """How many of these sites can be picked pairwise at least ``buffer_m`` apart (brute force, small sets)."""
    sites = rows.sort_values("chip_size_m").drop_duplicates("site_id", keep="last").geometry.to_numpy()
    assert len(sites) <= 12
    far = [[footprint_gap_m(a, b) >= buffer_m and a is not b for b in sites] for a in sites]
    best = 1
    for k in range(2, len(sites) + 1):
        if any(
            all(far[i][j] for i, j in itertools.combinations(c, 2))
            for c in itertools.combinations(range(len(sites)), k)
        ):
            best = k
        else:
            break
    return best


@settings(max_examples=10, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), buffer_m=st.sampled_from([0.0, 2000.0, 6000.0]), fractions=FRACTIONS)
def test_splits_keep_sites_whole_buffered_and_stratified(seed: int, buffer_m: float, fractions: tuple) -> None:
    share = tuple(np.asarray(fractions, dtype=float) / sum(fractions))
    if abs(sum(share) - 1) > 1e-9:
        share = (share[0] + 1 - sum(share), share[1], share[2])
    plan = _synthetic_plan(seed, n_sites=60)
    result = make_splits(plan, share, buffer_m=buffer_m, seed=seed)
    _check_guarantees(plan, result, buffer_m)


def test_dense_clusters_need_moves_and_the_report_counts_them() -> None:
    plan = _synthetic_plan(3, n_sites=150, clusters=3, spread_km=6.0)
    result = make_splits(plan, (0.6, 0.2, 0.2), buffer_m=2000, seed=1)
    _check_guarantees(plan, result, 2000)
    report = result.report
    assert sum(i["sites_dropped_for_buffer"] for i in report["splits"].values()) > 0  # chips packed: some go
    assert report["block"]["rule"] == "chosen from the data"
    assert make_splits(plan, (0.6, 0.2, 0.2), buffer_m=2000, seed=1).split.equals(result.split)
    assert not make_splits(plan, (0.6, 0.2, 0.2), buffer_m=2000, seed=2).split.equals(result.split)


def test_block_size_is_honoured_and_blocks_stay_whole() -> None:
    plan = _synthetic_plan(5, n_sites=200, clusters=8, spread_km=40.0)
    result = make_splits(plan, (0.8, 0.1, 0.1), block_km=60, buffer_m=0, seed=0)
    res = result.report["block"]["h3_res"]
    assert result.report["block"]["rule"] == "--split-block-km"
    width = np.sqrt(h3.average_hexagon_area(res, "km^2"))
    assert 60 / 2.65 < width < 60 * 2.65  # the nearest H3 size (cells grow 2.65x per resolution)
    sites = plan.drop_duplicates("site_id").assign(split=result.split.drop_duplicates().reindex(
        plan.drop_duplicates("site_id").index))  # fmt: skip
    sites["split"] = result.split.loc[sites.index].to_numpy()
    sites["block"] = [h3.latlng_to_cell(y, x, res) for x, y in zip(sites["lon"], sites["lat"], strict=True)]
    moved = sum(i["sites_moved_for_coverage"] + i["sites_moved_for_buffer"] for i in result.report["splits"].values())
    straddling = (sites.groupby("block")["split"].nunique() > 1).sum()
    assert straddling <= moved  # only moved sites leave their block's split
    _check_guarantees(plan, result, 0.0)


def test_a_stratum_inside_one_unit_is_covered_by_dropping_a_neighbour() -> None:
    """Three sites of a stratum round a fourth site, each within the buffer of it but not of each other:
    all four are one unit; two of the three move out alone, and the one in the middle is dropped."""
    plan = _synthetic_plan(11, n_sites=40, clusters=4)
    lon0, lat0 = float(plan["lon"].iloc[0]) + 0.5, float(plan["lat"].iloc[0]) + 0.5
    star = {"x0": (0.0, 0.0), "a1": (0.0, 3.0), "a2": (2.6, -1.5), "a3": (-2.6, -1.5)}  # km east, north
    rows = []
    for site, (east, north) in star.items():
        lat = lat0 + north / 111.2
        lon = lon0 + east / (111.2 * np.cos(np.radians(lat0)))
        for size in (1000.0, 2000.0):
            (footprint,) = chip_footprints(np.array([lon]), np.array([lat]), utm_epsg([lon], [lat]), size, 1)
            stratum = "mid" if site == "x0" else "star"
            rows.append({"sample_id": f"{site}-{size:g}m", "site_id": site, "stratum": stratum,
                         "lon": lon, "lat": lat, "chip_size_m": size, "geometry": footprint})  # fmt: skip
    plan = gpd.GeoDataFrame(pd.concat([plan, pd.DataFrame(rows)], ignore_index=True), geometry="geometry", crs=4326)
    result = make_splits(plan, (0.5, 0.25, 0.25), buffer_m=1500, seed=0)
    _check_guarantees(plan, result, 1500)
    assert result.report["strata_missing_from_a_split"] == []
    assert result.split[plan["site_id"] == "x0"].isna().all()
    assert sum(i["sites_dropped_for_buffer"] for i in result.report["splits"].values()) >= 1


def test_split_of_the_real_plan(planned_ds: Path) -> None:
    plan = gpd.read_parquet(planned_ds / "plan.parquet")
    result = make_splits(plan, seed=0)
    assert result.split.index.equals(plan.index) and set(result.split) <= set(SPLITS)
    counts = result.split.value_counts()
    assert abs(counts.get("train", 0) - 0.8 * len(plan)) <= 3
    _check_guarantees(plan, result, 2560)
    assert split_samples(plan, seed=0).equals(result.split)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buffer_m": -1}, "--split-buffer-m -1"),
        ({"block_km": 0}, "--split-block-km 0"),
        ({"block_km": 10, "res": 4}, "not both"),
        ({"res": 16}, "out of range"),
    ],
)
def test_bad_split_settings(planned_ds: Path, kwargs: dict, message: str) -> None:
    plan = gpd.read_parquet(planned_ds / "plan.parquet")
    with pytest.raises(ConfigError, match=message):
        make_splits(plan, **kwargs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.8,0.2", "three numbers"),
        ("0.8,0.1,0.2", "sum to 1"),
        ("a,b,c", "three numbers"),
        ("1.2,-0.1,-0.1", "at least 0"),
    ],
)
def test_bad_fractions(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_fractions(value)


def test_parse_fractions_accepts_lists_and_zero_shares() -> None:
    assert parse_fractions([0.9, 0.1, 0]) == (0.9, 0.1, 0.0)
    assert parse_fractions("0.7, 0.15, 0.15") == (0.7, 0.15, 0.15)


def test_kenya_as_a_user_would(tmp_path: Path, run_cli) -> None:
    """plan --aoi KEN, then export: the GeoPackage's splits keep the buffer, whole sites and every stratum."""
    ds = tmp_path / "ken"
    code, out, err = run_cli("plan", "-o", ds, "--aoi", "KEN", "-n", 120, "--seed", 5, "--no-progress", "-q")
    assert code == 0, err
    code, out, err = run_cli("export", ds, "-f", "gpkg", "--split-buffer-m", 3000)
    assert code == 0, err
    assert "buffer 3000 m" in out
    layer = gpd.read_file(ds / "export" / "gpkg" / f"{ds.name}.gpkg", layer="samples")
    plan = gpd.read_parquet(ds / "plan.parquet")
    split = layer.set_index("sample_id")["split"]
    gaps = cross_split_gaps(plan, split)
    assert set(gaps) == set(SPLITS) and min(gaps.values()) >= 3000
    report = json.loads((ds / "report" / "splits.json").read_text())
    for name, gap in gaps.items():
        assert report["splits"][name]["min_distance_to_other_splits_m"] == pytest.approx(gap, abs=1.0)
    sites = plan.drop_duplicates("site_id").set_index("site_id")
    kept = layer.drop_duplicates("site_id").set_index("site_id")["split"]
    counts = sites["stratum"].value_counts()
    for stratum in counts[counts >= 3].index:
        if stratum not in report["strata_missing_from_a_split"]:
            assert set(kept.reindex(sites.index[sites["stratum"] == stratum]).dropna()) == set(SPLITS), stratum

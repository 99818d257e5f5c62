"""``geosample.plan`` checked against independent computations on the real embedded layers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import shapely
from independent import strata_at, utm_epsg_scalar
from pyproj import Geod

import geosample
from geosample.errors import CapacityWarning

pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.CapacityWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, gpd.GeoDataFrame, dict]:
    ds = tmp_path_factory.mktemp("world")
    geosample.plan(ds, samples=1500, seed=3, progress=False)
    return ds, gpd.read_parquet(ds / "plan.parquet"), json.loads((ds / "report" / "balance.json").read_text())


def test_writes_every_file(world: tuple) -> None:
    ds, _, _ = world
    for name in (
        "plan.parquet",
        "plan.gpkg",
        "report/balance.json",
        "report/map.png",
        "report/time.png",
        "geosample.yaml",
    ):
        assert (ds / name).stat().st_size > 0, name
    assert not [p for p in ds.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_columns_follow_the_design(world: tuple) -> None:
    _, plan, _ = world
    expected = ["sample_id", "site_id", "h3", "h3_res", "lon", "lat", "stratum", "continent", "climate", "landcover",
                "time_bin", "start_datetime", "end_datetime", "chip_size_m", "epsg", "inclusion_prob",
                "geometry"]  # fmt: skip
    assert [c for c in plan.columns if c != "bbox"] == expected
    assert plan["sample_id"].is_unique
    assert plan.crs.to_epsg() == 4326
    assert str(plan["start_datetime"].dtype) == "datetime64[ms, UTC]" or "UTC" in str(plan["start_datetime"].dtype)
    assert plan["h3_res"].eq(9).all()
    assert plan["stratum"].eq(plan["continent"] + "/" + plan["climate"] + "/" + plan["landcover"]).all()


def test_every_site_is_on_land_in_the_aoi(world: tuple) -> None:
    _, plan, _ = world
    truth = strata_at(plan["lon"].to_numpy(), plan["lat"].to_numpy())
    assert pd.notna(truth["country"]).all(), "a sample lies at sea"
    assert (truth["continent"] != "Antarctica").all()


def test_strata_equal_the_layers_at_the_centre(world: tuple) -> None:
    _, plan, _ = world
    truth = strata_at(plan["lon"].to_numpy(), plan["lat"].to_numpy())
    for dim in ("continent", "climate", "landcover"):
        mismatch = plan[dim].to_numpy() != truth[dim]
        assert not mismatch.any(), (
            f"{dim}: {plan.loc[mismatch, [dim, 'lon', 'lat']].head()} vs {truth[dim][mismatch][:5]}"
        )


def test_centre_is_the_cell_centre(world: tuple) -> None:
    _, plan, _ = world
    centres = np.array([h3.cell_to_latlng(c) for c in plan["h3"]])
    np.testing.assert_allclose(plan["lat"], centres[:, 0], atol=1e-9)
    np.testing.assert_allclose(plan["lon"], centres[:, 1], atol=1e-9)
    assert all(h3.is_valid_cell(c) and h3.get_resolution(c) == 9 for c in plan["h3"])


def test_spacing_rule_holds(world: tuple) -> None:
    _, plan, report = world
    parent_res = report["resolutions"]["parent"]
    parents = plan["h3"].map(lambda c: h3.cell_to_parent(c, parent_res))
    assert parents.value_counts().max() == 1


def test_equal_allocation_is_balanced_within_one(world: tuple) -> None:
    _, plan, report = world
    counts = plan.groupby("stratum").size()
    strata = pd.DataFrame(report["strata"]).set_index("stratum")
    assert counts.sum() == 1500
    achieved = strata["achieved"]
    assert (counts.reindex(achieved.index, fill_value=0) == achieved).all()
    free = achieved[~strata["capacity_limited"] & (strata["final_target"] > 0)]
    assert free.max() - free.min() <= 1
    limited = strata[strata["capacity_limited"]]
    assert (limited["achieved"] <= free.min()).all()
    assert report["summary"]["n_strata_capacity_limited"] == len(limited)


def test_utm_epsg_is_right(world: tuple) -> None:
    _, plan, _ = world
    expected = [utm_epsg_scalar(x, y) for x, y in zip(plan["lon"], plan["lat"], strict=True)]
    assert plan["epsg"].tolist() == expected


def test_footprints_are_valid_chips_around_the_centre(world: tuple) -> None:
    _, plan, _ = world
    assert plan.geometry.is_valid.all()
    assert shapely.contains_xy(plan.geometry.values, plan["lon"], plan["lat"]).all()
    geod = Geod(ellps="WGS84")
    areas = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in plan.geometry])
    np.testing.assert_allclose(areas, 2560.0**2, rtol=0.02)


def test_time_windows_are_balanced_within_strata(world: tuple) -> None:
    _, plan, report = world
    assert (plan["start_datetime"] >= pd.Timestamp("2020-01-01", tz="UTC")).all()
    assert (plan["end_datetime"] < pd.Timestamp("2025-01-01", tz="UTC")).all()
    assert (plan["start_datetime"].dt.year.astype(str) == plan["time_bin"]).all()
    per = plan.groupby(["stratum", "time_bin"]).size().unstack(fill_value=0)
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1
    assert sorted(report["time_bins"]) == ["2020", "2021", "2022", "2023", "2024"]


def test_same_seed_same_bytes_new_seed_new_plan(tmp_path: Path) -> None:
    settings = {"samples": 120, "aoi": "KEN,TZA", "progress": False}
    geosample.plan(tmp_path / "a", seed=11, **settings)
    geosample.plan(tmp_path / "b", seed=11, **settings)
    geosample.plan(tmp_path / "c", seed=12, **settings)
    a, b, c = ((tmp_path / x / "plan.parquet").read_bytes() for x in "abc")
    assert a == b
    assert a != c
    assert (tmp_path / "a" / "report" / "balance.json").read_bytes() == (
        tmp_path / "b" / "report" / "balance.json"
    ).read_bytes()


def test_iso_aoi_and_multi_scale(tmp_path: Path) -> None:
    plan = geosample.plan(tmp_path, samples=80, aoi="KEN,TZA", chip_size=[1280, 5120], progress=False)
    truth = strata_at(plan["lon"].to_numpy(), plan["lat"].to_numpy())
    assert set(truth["country"]) <= {"KEN", "TZA"}
    assert len(plan) == 160 and plan["site_id"].nunique() == 80
    pairs = plan.groupby("site_id")
    assert (pairs["chip_size_m"].apply(sorted).map(tuple) == (1280.0, 5120.0)).all()
    assert (pairs["start_datetime"].nunique() == 1).all() and (pairs["stratum"].nunique() == 1).all()
    geod = Geod(ellps="WGS84")
    for size in (1280.0, 5120.0):
        rows = plan[plan["chip_size_m"] == size]
        areas = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in rows.geometry])
        np.testing.assert_allclose(areas, size**2, rtol=0.02)


def test_antimeridian_footprints_are_valid_multipolygons() -> None:
    plan = geosample.plan(
        samples=40, aoi="bbox:179.6,-17.5,-179.6,-16.5", strata="landcover", land_only=False,
        chip_size=[20000], res=7, progress=False, min_distance_m=0,  # 40 such chips overlap in this box
    )  # fmt: skip
    assert plan.geometry.is_valid.all()
    crossing = plan[plan.geometry.geom_type == "MultiPolygon"]
    assert len(crossing) > 0
    for geom in crossing.geometry:
        for part in geom.geoms:
            west, _, east, _ = part.bounds
            assert east - west < 1.0, "footprint wraps around the globe"
    lon = plan["lon"].to_numpy()
    assert ((lon >= 179.6) | (lon <= -179.6)).all()


def test_polar_samples_use_ups_and_contain_their_centre() -> None:
    plan = geosample.plan(
        samples=30, aoi="bbox:-180,85,180,90", strata="landcover", land_only=False, res=6, progress=False
    )
    assert (plan["lat"] > 85).all()
    assert (plan["epsg"] == 32661).all()
    assert plan.geometry.is_valid.all()
    assert shapely.contains_xy(plan.geometry.values, plan["lon"], plan["lat"]).all()


def test_pentagon_cells_are_sampled_validly() -> None:
    pentagon = h3.get_pentagons(2)[0]
    lat, lon = h3.cell_to_latlng(pentagon)
    aoi = f"bbox:{lon - 0.5},{lat - 0.5},{lon + 0.5},{lat + 0.5}"
    plan = geosample.plan(samples=60, aoi=aoi, strata="landcover", land_only=False, res=8, progress=False)
    assert all(h3.is_valid_cell(c) for c in plan["h3"])
    assert any(h3.cell_to_parent(c, 2) == pentagon for c in plan["h3"])
    assert ((plan["lon"] - lon).abs() <= 0.5).all() and ((plan["lat"] - lat).abs() <= 0.5).all()


def test_seasons_follow_the_hemisphere() -> None:
    plan = geosample.plan(
        samples=200, aoi="BRA,USA", strata="country", time_bins="season", start="2021-01-01",
        end="2022-12-31", window_days=30, progress=False,
    )  # fmt: skip
    south = plan[plan["lat"] < 0]
    north = plan[plan["lat"] >= 0]
    assert (south.loc[south["season"] == "summer", "time_bin"].str.endswith("DJF")).all()
    assert (north.loc[north["season"] == "summer", "time_bin"].str.endswith("JJA")).all()
    length = plan["end_datetime"] - plan["start_datetime"]
    assert (length == pd.Timedelta(days=30) - pd.Timedelta(seconds=1)).all()
    assert (plan["start_datetime"] >= pd.Timestamp("2021-01-01", tz="UTC")).all()
    assert (plan["end_datetime"] <= pd.Timestamp("2023-01-01", tz="UTC")).all()
    months = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}
    for row in plan.itertuples():
        block = row.time_bin.split("-")[1]
        assert row.start_datetime.month in months[block] and row.end_datetime.month in months[block]
    per = plan.groupby(["stratum", "season"]).size().unstack(fill_value=0)
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1


def test_user_raster_and_vector_strata(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    raster = tmp_path / "zones.tif"
    data = np.where(np.arange(100)[None, :] < 50, 7, 9).astype("uint8").repeat(100, axis=0)
    with rasterio.open(raster, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(30, 5, 0.1, 0.1)) as dst:  # fmt: skip
        dst.write(data, 1)
    vector = tmp_path / "halves.gpkg"
    gpd.GeoDataFrame(
        {"zone": ["north", "south"]},
        geometry=[shapely.box(30, 0, 40, 5), shapely.box(30, -5, 40, 0)],
        crs="EPSG:4326",
    ).to_crs("EPSG:3857").to_file(vector)
    plan = geosample.plan(samples=60, aoi="bbox:31,-4,39,4", strata=f"zone={raster},half={vector}:zone", progress=False)
    assert (plan["zone"].to_numpy() == np.where(plan["lon"] < 35, "7", "9")).all()
    assert (plan["half"].to_numpy() == np.where(plan["lat"] > 0, "north", "south")).all()
    assert set(plan["stratum"]) == {"7/north", "9/north", "7/south", "9/south"}
    assert plan.groupby("stratum").size().max() - plan.groupby("stratum").size().min() <= 1


def test_proportional_and_csv_allocations(tmp_path: Path) -> None:
    plan = geosample.plan(samples=300, aoi="ESP,PRT", strata="country", allocation="proportional", progress=False)
    report = plan.attrs["balance"]
    strata = pd.DataFrame(report["strata"]).set_index("stratum")
    share = strata["area_km2"] / strata["area_km2"].sum()
    assert (strata["target"] - 300 * share).abs().max() <= 1
    weights = tmp_path / "weights.csv"
    weights.write_text("country,weight\nESP,1\nPRT,3\n")
    plan = geosample.plan(samples=200, aoi="ESP,PRT", strata="country", allocation=str(weights), progress=False)
    counts = plan.groupby("country").size()
    assert counts["PRT"] == 150 and counts["ESP"] == 50


def test_heterogeneity_allocation_favours_fragmented_land() -> None:
    plan = geosample.plan(samples=200, aoi="FRA", strata="country", allocation="heterogeneity", progress=False)
    assert len(plan) == 200


def test_capacity_limited_strata_are_reported() -> None:
    with pytest.warns(CapacityWarning):
        plan = geosample.plan(samples=300, aoi="ITA,SMR", strata="country", parent_res=6, progress=False)
    report = plan.attrs["balance"]
    strata = {s["stratum"]: s for s in report["strata"]}
    # San Marino (61 km²) spans a handful of res-6 cells (36 km² each), far short of its equal share.
    assert strata["SMR"]["capacity_limited"] and 1 <= strata["SMR"]["achieved"] <= 6
    assert strata["SMR"]["target"] == 150 and strata["SMR"]["final_target"] == 150
    assert not strata["ITA"]["capacity_limited"]
    assert len(plan) == 300 and strata["ITA"]["achieved"] == 300 - strata["SMR"]["achieved"]
    assert report["summary"]["shortfall_redistributed"] == 150 - strata["SMR"]["achieved"]


def test_window_inside_clipped_bins() -> None:
    plan = geosample.plan(samples=50, aoi="KEN", strata="climate", time_bins="month", start="2021-03-15",
                          end="2021-06-10", window_days=10, progress=False)  # fmt: skip
    assert (plan["start_datetime"] >= pd.Timestamp("2021-03-15", tz="UTC")).all()
    assert (plan["end_datetime"] <= pd.Timestamp(dt.date(2021, 6, 10), tz="UTC") + pd.Timedelta(days=1)).all()
    assert set(plan["time_bin"]) <= {"2021-03", "2021-04", "2021-05", "2021-06"}

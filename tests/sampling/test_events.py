"""Event-centred plans (--events) and revisit series (--revisits), checked independently."""

from __future__ import annotations

import datetime as dt
import json
import math

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import shapely
import yaml
from click.testing import CliRunner

from geosample import PlanConfig, plan
from geosample.cli import cli

EVENTS_CSV = """event_id,type,date,end,lon,lat
fire-gr,wildfire,2021-08-03,2021-08-10,23.30,38.90
fire-ca,wildfire,2021-07-13,,-121.20,40.05
flood-de,flood,2021-07-14,2021-07-16,7.10,50.53
flood-de-again,flood,2023-07-01,,7.10,50.53
volcano-lp,volcano,2021-09-19,2021-12-13,-17.84,28.57
old-flood,flood,2019-03-14,,34.84,-19.83
"""


def _haversine_m(lon1, lat1, lon2, lat2):
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * np.arcsin(np.sqrt(a))


@pytest.fixture(scope="module")
def point_plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    path = root / "events.csv"
    path.write_text(EVENTS_CSV)
    cfg = PlanConfig.from_mapping(
        {
            "events": str(path),
            "samples": 30,
            "event_radius_m": 10_000,
            "before_days": 60,
            "after_days": 30,
            "gap_days": 5,
        }
    )
    with pytest.warns(UserWarning, match="old-flood"):
        samples = plan(root / "DS", config=cfg, progress=False)
    return root, samples


def test_event_rows_share_site_and_carry_event_columns(point_plan) -> None:
    root, samples = point_plan
    for column in ("event_id", "event_type", "event_date", "phase", "site_id"):
        assert column in samples
    assert set(samples["phase"]) == {"before", "after"}
    per_site = samples.groupby("site_id")["phase"].apply(sorted)
    assert all(p == ["after", "before"] for p in per_site)
    assert samples["sample_id"].is_unique
    assert "old-flood" not in set(samples["event_id"])  # its before window starts before --start


def test_windows_follow_the_event_dates(point_plan) -> None:
    _, samples = point_plan
    raw = pd.read_csv(__import__("io").StringIO(EVENTS_CSV)).set_index("event_id")
    for row in samples.itertuples():
        event = raw.loc[row.event_id]
        start = dt.date.fromisoformat(event["date"])
        end = dt.date.fromisoformat(event["end"]) if isinstance(event["end"], str) else start
        if row.phase == "before":
            assert row.end_datetime.date() == start - dt.timedelta(days=6)
            assert row.start_datetime.date() == start - dt.timedelta(days=65)
        else:
            assert row.start_datetime.date() == end + dt.timedelta(days=6)
            assert row.end_datetime.date() == end + dt.timedelta(days=35)
        assert row.end_datetime.time() == dt.time(23, 59, 59)


def test_sites_lie_near_their_event_and_respect_the_spacing_rule(point_plan) -> None:
    _, samples = point_plan
    raw = pd.read_csv(__import__("io").StringIO(EVENTS_CSV)).set_index("event_id")
    sites = samples.drop_duplicates("site_id")
    edge_m = h3.average_hexagon_edge_length(9, unit="m")
    dist = _haversine_m(
        sites["lon"],
        sites["lat"],
        raw.loc[sites["event_id"], "lon"].to_numpy(),
        raw.loc[sites["event_id"], "lat"].to_numpy(),
    )
    assert (dist <= 10_000 + 2 * edge_m).all()
    parent_res = json.loads((point_plan[0] / "DS" / "report" / "balance.json").read_text())["resolutions"]["parent"]
    parents = [h3.cell_to_parent(c, parent_res) for c in sites["h3"]]
    counts = pd.Series(list(zip(sites["event_id"], parents, strict=True))).value_counts()
    assert counts.max() <= 1
    # Each point event's own cell is one of its sites.
    for event_id, event in raw.drop(index="old-flood").iterrows():
        own = h3.latlng_to_cell(event["lat"], event["lon"], 9)
        assert own in set(sites.loc[sites["event_id"] == event_id, "h3"])


def test_two_events_at_one_place_get_their_own_sites(point_plan) -> None:
    _, samples = point_plan
    a = samples[samples["event_id"] == "flood-de"]
    b = samples[samples["event_id"] == "flood-de-again"]
    assert len(a) and len(b)
    assert not set(a["site_id"]) & set(b["site_id"])
    assert set(a["h3"]) & set(b["h3"])  # same ground, separate series


def test_balanced_across_event_types(point_plan) -> None:
    root, samples = point_plan
    report = json.loads((root / "DS" / "report" / "balance.json").read_text())
    sites = samples.drop_duplicates("site_id")
    per_stratum = sites.groupby("stratum").size()
    strata = {s["stratum"]: s for s in report["strata"]}
    for stratum, n in per_stratum.items():
        assert n == strata[stratum]["achieved"]
    # Equal allocation: every stratum gets its share unless its events ran out of room.
    full = [s for s in report["strata"] if not s["capacity_limited"]]
    assert max(s["achieved"] for s in full) - min(s["achieved"] for s in full) <= 1 or len(full) <= 1
    assert report["events"]["radius_m"] == 10_000


def test_polygon_events_across_the_antimeridian(tmp_path) -> None:
    # Fiji straddles 180°: one burn scar given as two parts split at the antimeridian (RFC 7946), one on Viti Levu.
    east = shapely.box(179.92, -16.95, 180.0, -16.80)  # Taveuni, both sides of 180°
    west = shapely.box(-180.0, -16.95, -179.85, -16.75)
    viti = shapely.box(177.40, -17.70, 177.60, -17.50)
    gdf = gpd.GeoDataFrame(
        {"event_id": ["am", "viti"], "type": ["wildfire", "flood"], "date": ["2022-03-01", "2022-04-01"]},
        geometry=[shapely.MultiPolygon([east, west]), viti],
        crs=4326,
    )
    path = tmp_path / "events.geojson"
    gdf.to_file(path)
    samples = plan(
        tmp_path / "DS",
        config=PlanConfig.from_mapping({"events": str(path), "samples": 8, "land_only": False, "aoi": "FJI"}),
        progress=False,
    )
    assert set(samples["event_id"]) == {"am", "viti"}
    for row in samples.drop_duplicates("site_id").itertuples():
        footprint = gdf.set_index("event_id").geometry[row.event_id]
        cell = shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(row.h3)])
        if row.event_id == "am":
            assert abs(row.lon) > 179.8 and -16.96 < row.lat < -16.74
        else:
            assert cell.intersects(footprint)
    assert samples.geometry.is_valid.all()
    assert (samples.geometry.area < 0.01).all()  # split at 180°, never a band around the globe


@pytest.mark.parametrize(
    ("csv", "words"),
    [
        ("event_id,type,lon,lat\na,flood,7,50\n", ["no date column"]),
        (
            "event_id,type,date,lon,lat\na,flood,2021-01-05,7,50\nb,flood,soon,7,50\nc,flood,2021-02-30,7,50\n",
            ["row 2: 'soon'", "row 3: '2021-02-30'", "YYYY-MM-DD"],
        ),
        ("event_id,date,lon,lat\na,2021-01-05,7,50\n", ["no type column"]),
        ("event_id,type,date,lon,lat\na,flood,2021-06-05,-70,-40\n", ["no event", "AOI"]),
    ],
)
def test_bad_event_files(tmp_path, csv: str, words: list[str]) -> None:
    path = tmp_path / "events.csv"
    path.write_text(csv)
    result = CliRunner().invoke(cli, ["plan", "-o", str(tmp_path / "DS"), "--events", str(path), "--aoi", "DEU"])
    assert result.exit_code != 0
    message = str(result.exception)
    for word in words:
        assert word in message, message
    assert not (tmp_path / "DS").exists()


def test_negative_before_days_is_refused(tmp_path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("event_id,type,date,lon,lat\na,flood,2021-06-05,7,50\n")
    result = CliRunner().invoke(cli, ["plan", "-o", str(tmp_path / "DS"), "--events", str(path), "--before-days", "-3"])
    assert result.exit_code != 0 and "--before-days" in str(result.exception)
    assert not (tmp_path / "DS").exists()


# ----------------------------------------------------------------------------------------- revisits


def test_revisits_are_series_of_shifted_windows(tmp_path) -> None:
    samples = plan(
        tmp_path / "DS",
        config=PlanConfig.from_mapping(
            {"samples": 12, "aoi": "bbox:5,40,25,55", "revisits": 3, "start": "2018-01-01", "end": "2024-12-31"}
        ),
        progress=False,
    )
    assert len(samples) == 36
    for _, group in samples.groupby("site_id"):
        group = group.sort_values("revisit_index")
        assert list(group["revisit_index"]) == [0, 1, 2]
        years = [ts.year for ts in group["start_datetime"]]
        assert years == list(range(years[0], years[0] + 3))
        assert list(group["time_bin"]) == [str(y) for y in years]
        assert (group["end_datetime"].dt.year <= 2024).all()
        assert group["h3"].nunique() == 1 and group["epsg"].nunique() == 1
    recorded = yaml.safe_load((tmp_path / "DS" / "geosample.yaml").read_text())["plan"]
    assert recorded["revisits"] == 3


def test_half_yearly_revisits_with_short_windows(tmp_path) -> None:
    samples = plan(
        config=PlanConfig.from_mapping(
            {
                "samples": 6,
                "aoi": "bbox:5,40,25,55",
                "revisits": 4,
                "revisit_step": "months",
                "revisit_interval": 6,
                "window_days": 30,
                "start": "2020-01-01",
                "end": "2023-12-31",
            }
        ),
        progress=False,
    )
    for _, group in samples.groupby("site_id"):
        starts = list(group.sort_values("revisit_index")["start_datetime"])
        for a, b in zip(starts, starts[1:], strict=False):
            months = (b.year - a.year) * 12 + b.month - a.month
            assert months == 6
        lengths = (group["end_datetime"] - group["start_datetime"]).dt.total_seconds()
        assert np.allclose(lengths, 30 * 86400 - 1)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--revisits", "4", "--start", "2022-01-01", "--end", "2024-12-31"], ["runs past --end"]),
        (["--revisits", "3", "--revisit-step", "months"], ["overlap"]),
        (["--revisits", "0"], ["--revisits"]),
    ],
)
def test_bad_revisits(tmp_path, args: list[str], words: list[str]) -> None:
    result = CliRunner().invoke(cli, ["plan", "-o", str(tmp_path / "DS"), "-n", "5", "--aoi", "bbox:5,40,25,55", *args])
    assert result.exit_code != 0
    for word in words:
        assert word in str(result.exception)
    assert not (tmp_path / "DS").exists()


def test_plain_plans_are_unchanged_by_the_new_settings(tmp_path) -> None:
    samples = plan(config=PlanConfig.from_mapping({"samples": 5, "aoi": "bbox:5,40,25,55"}), progress=False)
    assert "revisit_index" not in samples and "phase" not in samples
    assert all(not s.endswith(("-r0", "-before")) for s in samples["sample_id"])
    assert math.isclose(samples["chip_size_m"].iloc[0], 2560.0)


def test_shipped_catalogue_plans_offline(tmp_path) -> None:
    from pathlib import Path

    catalogue = Path(__file__).parents[2] / "data" / "examples" / "events.csv"
    samples = plan(
        tmp_path / "DS",
        config=PlanConfig.from_mapping(
            {"events": str(catalogue), "samples": 40, "start": "2018-01-01", "end": "2025-06-30"}
        ),
        progress=False,
    )
    raw = pd.read_csv(catalogue)
    assert set(samples["event_type"]) == set(raw["type"])
    assert samples.groupby("site_id").size().eq(2).all()

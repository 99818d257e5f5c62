"""Grouped searches: fewer requests than samples, the same matches as one search per sample, the documented order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pystac
import pystac_client
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.errors import SourceError
from geosample.stac.client import open_source
from geosample.stac.search import find_items, group_samples, h3_parents, mosaic_items, rank_items

UTC = dt.UTC


@settings(max_examples=100, deadline=None)
@given(
    lat=st.floats(-89, 89), lon=st.floats(-180, 180), res=st.integers(0, 15), parent=st.integers(0, 15)
)  # fmt: skip
def test_h3_parents_match_h3(lat: float, lon: float, res: int, parent: int) -> None:
    cell = h3.latlng_to_cell(lat, lon, res)
    want = h3.cell_to_parent(cell, parent) if parent <= res else cell
    assert h3_parents([cell], parent)[0] == want


@pytest.fixture
def dense(tmp_path: Path, gen: Any) -> gpd.GeoDataFrame:
    """40 samples on Andros, half in 2001 (the Landsat scene's year) and half in 2002."""
    rng = np.random.default_rng(5)
    points = list(zip(rng.uniform(-77.95, -77.7, 40), rng.uniform(24.3, 24.7, 40), strict=True))
    a = gen.make_plan(tmp_path / "A", points[:20], 3000.0, year=2001)
    b = gen.make_plan(tmp_path / "B", points[20:], 3000.0, year=2002)
    return gpd.GeoDataFrame(pd.concat([a, b], ignore_index=True), crs="EPSG:4326")


def test_groups_partition_the_samples(dense: gpd.GeoDataFrame) -> None:
    groups = group_samples(dense)
    rows = np.concatenate([g.rows for g in groups])
    assert sorted(rows.tolist()) == list(range(len(dense)))
    parents = h3_parents(dense["h3"].tolist(), 3)
    for g in groups:
        assert len(set(parents[g.rows])) == 1 and len(set(dense["time_bin"].iloc[g.rows])) == 1
        area = shapely.geometry.shape(g.geometry)
        assert all(area.covers(f) for f in dense.geometry.iloc[g.rows])
        assert g.start == dense["start_datetime"].iloc[g.rows].min()
        assert g.end == dense["end_datetime"].iloc[g.rows].max()
    assert len(groups) < len(dense) / 5


def test_one_search_per_group_same_matches_as_per_sample(dense: gpd.GeoDataFrame, stac_api: str) -> None:
    source = open_source(stac_api, page_size=2)  # tiny pages: results come from several pages
    found = find_items(source, "landsat-7-rgb", dense)
    assert source.searches == len(group_samples(dense))
    client = pystac_client.Client.open(stac_api)
    for row in dense.itertuples():
        search = client.search(
            collections=["landsat-7-rgb"], intersects=shapely.geometry.mapping(row.geometry),
            datetime=[row.start_datetime.isoformat(), row.end_datetime.isoformat()],
        )  # fmt: skip
        assert [i.id for i in found[row.sample_id]] == [i.id for i in search.items()]
    assert sum(bool(v) for v in found.values()) == 20


def test_unknown_collection_lists_the_known_ones(stac_api: str, dense: gpd.GeoDataFrame) -> None:
    with pytest.raises(SourceError, match=r"unknown --collection 'nope'.*landsat-7-rgb.*sentinel-2-l2a"):
        find_items(stac_api, "nope", dense)


def test_antimeridian_groups_search_boxes_not_a_band(tmp_path: Path, gen: Any) -> None:
    plan = gen.make_plan(tmp_path / "AM", [(179.999, -16.5), (-179.999, -16.52)], 5000.0)
    for group in group_samples(plan):
        shape = shapely.geometry.shape(group.geometry)
        west, _, east, _ = shape.bounds
        assert shape.area < 1.0  # a few km, not 360 degrees of longitude
        assert all(shape.covers(f) for f in plan.geometry.iloc[group.rows])
        assert west < -179 and east > 179


def _item(item_id: str, box: tuple[float, ...], when: str | None, cloud: float | None = None, **props: Any):
    geom = shapely.box(*box)
    properties = dict(props)
    if cloud is not None:
        properties["eo:cloud_cover"] = cloud
    moment = dt.datetime.fromisoformat(when).replace(tzinfo=UTC) if when else None
    return pystac.Item(item_id, shapely.geometry.mapping(geom), list(geom.bounds), moment, properties)


def test_rank_items_order() -> None:
    chip = shapely.box(0.4, 0.4, 0.6, 0.6)
    start, end = dt.datetime(2021, 1, 1, tzinfo=UTC), dt.datetime(2021, 12, 31, tzinfo=UTC)
    items = [
        _item("partial-clear", (0.5, 0, 1, 1), "2021-07-02", 0.0),
        _item("full-cloudy-mid", (0, 0, 1, 1), "2021-07-03", 60.0),
        _item("full-clear-early", (0, 0, 1, 1), "2021-01-10", 5.0),
        _item("full-clear-early-b", (0, 0, 1, 1), "2021-01-10", 5.0),
        _item("full-nocloud", (0, 0, 1, 1), "2021-03-01"),
        _item("outside", (2, 2, 3, 3), "2021-07-02", 0.0),
        _item("touching", (0.6, 0, 1, 1), "2021-07-02", 0.0),
        _item("too-late", (0, 0, 1, 1), "2022-02-01", 0.0),
        _item("ranged", (0, 0, 1, 1), None, start_datetime="2020-06-01T00:00:00Z", end_datetime="2021-02-01T00:00:00Z"),
    ]
    ids = [c.item.id for c in rank_items(chip, start, end, items, sort="cloud")]
    assert ids == ["full-clear-early", "full-clear-early-b", "full-cloudy-mid", "full-nocloud", "ranged",
                   "partial-clear"]  # fmt: skip
    ids = [c.item.id for c in rank_items(chip, start, end, items, sort="time")]
    assert ids[:2] == ["full-cloudy-mid", "full-nocloud"] and ids[-1] == "partial-clear"
    ids = [c.item.id for c in rank_items(chip, start, end, items, sort="time", max_cloud=50)]
    assert "full-cloudy-mid" not in ids and "full-nocloud" in ids  # no cloud cover: kept


def test_mosaic_items_cover_greedily() -> None:
    chip = shapely.box(0, 0, 1, 1)
    start, end = dt.datetime(2021, 1, 1, tzinfo=UTC), dt.datetime(2021, 12, 31, tzinfo=UTC)
    items = [
        _item("west", (-1, -1, 0.6, 2), "2021-05-01", 1.0),
        _item("inside-west", (0.1, 0.1, 0.5, 0.9), "2021-05-01", 2.0),
        _item("east", (0.5, -1, 2, 2), "2021-05-01", 3.0),
        _item("extra", (0, 0, 2, 2), "2021-05-01", 4.0),
    ]
    ranked = rank_items(chip, start, end, items)
    assert [c.item.id for c in ranked][0] == "extra"  # the only one covering it alone
    assert [c.item.id for c in mosaic_items(chip, ranked)] == ["extra"]
    partial = [c for c in ranked if c.item.id != "extra"]
    assert [c.item.id for c in mosaic_items(chip, partial)] == ["west", "east"]  # inside-west adds nothing

"""Sample contexts from the dataset's files, checked against independent reads of the same files."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from captions.conftest import LANDSAT, write_chips
from captions.truth import CLASSES, roll, season_of
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from geosample import layers
from geosample.captions._preview import chip_png, render_png, rgb_bands
from geosample.captions.context import SampleContext, build_contexts, display_name, sensor_name
from geosample.cli import cli
from geosample.errors import DataQualityWarning, DatasetError

pytestmark = pytest.mark.filterwarnings("ignore:.*has no chips.parquet:geosample.errors.DataQualityWarning")
TAXONOMY = Path(__file__).parents[2] / "taxonomy" / "geosample-lulc.yaml"


def _contexts(ds: Path) -> dict[str, SampleContext]:
    plan = gpd.read_parquet(ds / "plan.parquet")
    return {c.sample_id: c for c in build_contexts(ds, plan)}


def test_labels_locations_and_chips(chipped_ds: Path) -> None:
    contexts = _contexts(chipped_ds)
    plan = gpd.read_parquet(chipped_ds / "plan.parquet").set_index("sample_id")
    labels = pd.read_parquet(chipped_ds / "labels.parquet").set_index("sample_id")
    chips = pd.read_parquet(chipped_ds / "chips.parquet").set_index("sample_id")
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(plan["lon"], plan["lat"]), index=plan.index, crs=4326)
    countries = gpd.sjoin(points, layers.countries()[["name", "iso3", "geometry"]], predicate="within")
    for sample_id, context in contexts.items():
        row = labels.loc[sample_id]
        fractions = json.loads(row["fractions"])
        quadrants = json.loads(row["quadrant_fractions"])
        for depth, level in enumerate(("l1", "l2", "l3"), start=1):
            whole = roll(fractions, depth)
            shares = context.labels_at(level)
            assert [c.code for c in shares] == list(row[level])
            assert [c.name for c in shares] == [CLASSES[c][0] for c in row[level]]
            assert all(c.fraction == pytest.approx(whole[c.code]) for c in shares)
            for region, values in quadrants.items():
                rolled = roll(values, depth)
                got = {c.code: c.fraction for c in context.regions[level][region]}
                assert got == pytest.approx(rolled)
                assert [c.fraction for c in context.regions[level][region]] == sorted(got.values(), reverse=True)
        assert (
            context.country == countries.loc[sample_id, "name"]
            and context.country_iso3 == countries.loc[sample_id, "iso3"]
        )
        assert (
            context.continent == plan.loc[sample_id, "continent"] and context.climate == plan.loc[sample_id, "climate"]
        )
        assert context.centre_landcover.replace(" ", "_").startswith(plan.loc[sample_id, "landcover"][:6])
        assert context.epsg == plan.loc[sample_id, "epsg"] and context.chip_size_m == 2560.0
        chip = chips.loc[sample_id]
        assert context.date == chip["item_datetime"].date() and context.collection == "landsat-c2-l2"
        assert context.sensor == "Landsat 8 OLI" and context.resolution_m == 30.0
        assert context.bands == ("red", "green", "blue") and (context.width, context.height) == (85, 85)
        assert context.chip_path == chipped_ds / chip["path"]
        assert context.preview_path == (chipped_ds / chip["preview"] if pd.notna(chip["preview"]) else None)
        assert context.season == season_of(context.date.month, context.lat) and context.month == context.date.month
        facts = context.to_facts()
        text = json.dumps(facts)
        assert str(chipped_ds) not in text and facts["time"]["acquired"] == context.date.isoformat()
        assert facts["land_cover_map"]["labels"]["l3"][0]["name"] == context.labels_at("l3")[0].name
        # The embedded MODIS labels (0.05°) are far coarser than a 2.56 km chip: they describe its neighbourhood.
        assert facts["land_cover_map"]["describes"] == "neighbourhood" and context.map_is_coarse


def test_several_collections_first_ok_row_and_no_resolution_column(labelled_ds: Path) -> None:
    table = write_chips(labelled_ds, extra_failed_collection=True, collection="sentinel-2-l2a")
    table.drop(columns=["resolution"]).to_parquet(labelled_ds / "chips.parquet")
    ok = table[table["status"] == "ok"].set_index("sample_id")
    second = ok.reset_index().assign(collection="landsat-c2-l2", item_id="LC09_X")
    pd.concat([table.drop(columns=["resolution"]), second.drop(columns=["resolution"])]).to_parquet(
        labelled_ds / "chips.parquet"
    )
    for sample_id, context in _contexts(labelled_ds).items():
        # The failed row is skipped, and of the two ok rows the first (in file order) is used.
        assert context.collection == "sentinel-2-l2a" and context.item_id == ok.loc[sample_id, "item_id"]
        assert context.sensor == "sentinel-2-l2a" or context.sensor.startswith("Sentinel-2")
        assert context.resolution_m == pytest.approx(2560.0 / 85)  # from chip size and width


def test_missing_chip_files_warn_and_leave_no_image(labelled_ds: Path) -> None:
    table = write_chips(labelled_ds)
    (labelled_ds / table["path"].iloc[0]).unlink()
    with pytest.warns(DataQualityWarning, match="1 chips listed as ok in chips.parquet are missing"):
        contexts = _contexts(labelled_ds)
    first = contexts[table["sample_id"].iloc[0]]
    assert first.chip_path is None and chip_png(first) is None


def test_partial_labels_warn(labelled_ds: Path) -> None:
    labels = pd.read_parquet(labelled_ds / "labels.parquet")
    labels.iloc[3:].to_parquet(labelled_ds / "labels.parquet")
    with pytest.warns(DataQualityWarning, match="3 of 24 samples have no row in labels.parquet"):
        contexts = _contexts(labelled_ds)
    assert sum(not c.has_labels for c in contexts.values()) == 3


def test_taxonomy_from_the_recorded_file_or_a_clear_error(labelled_ds: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tax" / "geosample-lulc.yaml"
    copy.parent.mkdir()
    shutil.copy(TAXONOMY, copy)
    config = yaml.safe_load((labelled_ds / "geosample.yaml").read_text())
    config["label"]["taxonomy"] = str(copy)
    (labelled_ds / "geosample.yaml").write_text(yaml.safe_dump(config))
    assert all(c.taxonomy == "geosample-lulc@1.0.0" for c in _contexts(labelled_ds).values())
    labels = pd.read_parquet(labelled_ds / "labels.parquet")
    labels.assign(taxonomy="lost-taxonomy@2.0").to_parquet(labelled_ds / "labels.parquet")
    with pytest.raises(DatasetError, match="taxonomy lost-taxonomy@2.0 .* cannot be found; restore"):
        _contexts(labelled_ds)


@given(
    start=st.dates(dt.date(2019, 1, 1), dt.date(2024, 12, 31)),
    days=st.integers(0, 400),
    lat=st.floats(-80, 80),
)
def test_month_season_and_year_of_a_planned_window(start: dt.date, days: int, lat: float) -> None:
    end = start + dt.timedelta(days=days)
    context = SampleContext("s", 10.0, lat, 2560.0, start_date=start, end_date=end)
    every_day = [start + dt.timedelta(days=k) for k in range(days + 1)]
    months = {(d.year, d.month) for d in every_day}
    assert context.month == (start.month if len(months) == 1 else None)
    assert context.year == (start.year if len({d.year for d in every_day}) == 1 else None)
    seasons = {season_of(d.month, lat) for d in every_day}
    expected = seasons.pop() if len(seasons) == 1 and days <= 92 else None
    assert context.season == expected


def test_season_follows_the_hemisphere() -> None:
    july = dt.date(2021, 7, 14)
    assert SampleContext("n", 0, 50.0, 100.0, date=july).season == "summer"
    assert SampleContext("s", 0, -50.0, 100.0, date=july).season == "winter"
    assert SampleContext("t", 0, 5.0, 100.0, date=july).season is None  # tropics: no temperate season


def test_names_and_sensors() -> None:
    assert display_name("Non-irrigated arable land") == "non-irrigated arable land"
    assert display_name("CORINE forest classes") == "CORINE forest classes"
    assert sensor_name("sentinel-2-l2a", "S2B_MSIL2A_20200101") == "Sentinel-2B MSI"
    assert sensor_name("landsat-c2-l2", "LC09_L2SP_x") == "Landsat 9 OLI"
    assert sensor_name("my-drone-flights", None) == "my-drone-flights"
    assert sensor_name(None, None) is None


def test_rendered_preview_is_a_2_98_stretch_of_the_rgb_bands() -> None:
    image = np.asarray(Image.open(io.BytesIO(render_png(LANDSAT, max_side=10_000))))
    with rasterio.open(LANDSAT) as src:
        data = src.read().astype(float)
    valid = (data != 0).all(axis=0)
    assert image.shape == (*data.shape[1:], 4)
    assert (image[..., 3] == np.where(valid, 255, 0)).all()
    for b in range(3):
        lo, hi = np.percentile(data[b][valid], [2, 98])
        expected = np.clip(np.round((data[b] - lo) / (hi - lo) * 255), 0, 255)
        assert np.abs(image[..., b].astype(float) - expected).max() <= 1
    small = Image.open(io.BytesIO(render_png(LANDSAT, max_side=100)))
    assert max(small.size) == 100
    assert rgb_bands(["nir", "Blue", "green", "red"]) == [3, 2, 1]
    assert rgb_bands(["B02", "B03", "B04", "B08"]) == [2, 1, 0]
    assert rgb_bands(["a", "b"]) == [0] and rgb_bands(["x", "y", "z"]) == [0, 1, 2]


def _contract_columns(ds: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """chips.parquet and labels.parquet given the columns wt-fidelity's fetch and label add (contracts.md)."""
    chips = write_chips(ds)
    n = len(chips)
    observed, quadrants = [], []
    for i in range(n):
        if i % 2:
            observed.append(None)  # bands that support no observation
            quadrants.append(None)
            continue
        # Sample 0 is mostly open water, whatever its map says: the captions must say they disagree.
        water = 0.85 if i == 0 else 0.05 + 0.02 * i
        whole = {"water": water, "vegetation": round(0.9 - water, 4), "bare": 0.05}
        observed.append(json.dumps(whole))
        quadrants.append(json.dumps({"nw": {"water": 1.0, "vegetation": 0.0, "bare": 0.0},
                                     "ne": {"water": 0.2, "vegetation": 0.7, "bare": 0.1},
                                     "sw": whole, "se": {"water": 0.0, "vegetation": 0.9, "bare": 0.1}}))  # fmt: skip
    chips["nodata_fraction"] = 0.0
    chips["cloud_fraction"] = [0.01 * i if i % 2 == 0 else None for i in range(n)]
    chips["cloud_method"] = ["spectral" if i % 2 == 0 else None for i in range(n)]
    chips["observed"], chips["observed_quadrants"] = observed, quadrants
    # Every third item has only a range (item_datetime null): a period, never a date.
    ranged = np.arange(n) % 3 == 1
    chips["item_start_datetime"] = pd.to_datetime(np.where(ranged, "1999-04-15", None), utc=True)
    chips["item_end_datetime"] = pd.to_datetime(np.where(ranged, "2025-06-04", None), utc=True)
    chips.loc[ranged, "item_datetime"] = pd.NaT
    chips["replaces"] = None
    chips.to_parquet(ds / "chips.parquet", index=False)
    labels = pd.read_parquet(ds / "labels.parquet")
    labels["label_source"], labels["label_year"], labels["source_resolution_m"] = "esa-worldcover@stac", 2021, 10.0
    labels.to_parquet(ds / "labels.parquet", index=False)
    return chips, labels


def test_observed_cover_map_evidence_and_dates_from_the_contract_columns(labelled_ds: Path) -> None:
    from captions.test_template import OBSERVED_NAMES
    from captions.truth import check_quadrants, check_shares

    chips, labels = _contract_columns(labelled_ds)
    contexts = _contexts(labelled_ds)
    chips = chips.set_index("sample_id")
    for sample_id, context in contexts.items():
        row = chips.loc[sample_id]
        assert not context.map_is_coarse and context.map_year == 2021 and context.map_resolution_m == 10.0
        if pd.isna(row["item_datetime"]):
            assert context.date is None and context.period == (dt.date(1999, 4, 15), dt.date(2025, 6, 4))
        else:
            assert context.date == row["item_datetime"].date() and context.period is None
        assert (context.observed is None) == pd.isna(row["observed"])
    result = CliRunner().invoke(cli, ["caption", str(labelled_ds), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    labels = labels.set_index("sample_id")
    for sample_id, rows in table.groupby("sample_id"):
        texts = dict(zip(rows["focus"], rows["caption"], strict=True))
        evidence = dict(zip(rows["focus"], rows["evidence"], strict=True))
        chip = chips.loc[sample_id]
        finest = {CLASSES[c][0]: v for c, v in roll(json.loads(labels.loc[sample_id, "fractions"]), 3).items()
                  if c in labels.loc[sample_id, "l3"]}  # fmt: skip
        if pd.notna(chip["observed"]):
            seen = {OBSERVED_NAMES[k]: v for k, v in json.loads(chip["observed"]).items()}
            assert (
                evidence["composition"] == evidence["overview"] == "observed+map" and evidence["layout"] == "observed"
            )
            head, _, tail = texts["composition"].partition("; by the ESA WorldCover 2021 map, ")
            assert check_shares(head, seen) >= 2 and check_shares(tail.split("; the image")[0], finest) >= 1
            quads = {q: {OBSERVED_NAMES[k]: v for k, v in d.items()}
                     for q, d in json.loads(chip["observed_quadrants"]).items()}  # fmt: skip
            assert check_quadrants(texts["layout"], quads, set(OBSERVED_NAMES.values())) >= 1
            # Disagreement, worked out here: the cover each first-level map class would show, against the image.
            cover_of = {"1": "built", "2": "vegetation", "3": "vegetation", "4": "vegetation", "5": "vegetation",
                        "6": "bare", "7": "snow_ice", "8": "water"}  # fmt: skip
            image = json.loads(chip["observed"])
            implied: dict[str, float] = {}
            for code in labels.loc[sample_id, "l1"]:
                share = roll(json.loads(labels.loc[sample_id, "fractions"]), 1)[code]
                if cover_of[code] in image:
                    implied[cover_of[code]] = implied.get(cover_of[code], 0.0) + share
            tv = 0.5 * sum(abs(image[k] / sum(image.values()) - implied.get(k, 0.0) / sum(implied.values()))
                           for k in image) if implied else 0.0  # fmt: skip
            assert ("the image and the map disagree" in texts["composition"]) == (tv >= 0.5), (tv, texts)
        else:
            assert evidence["composition"] == "map" and "ESA WorldCover 2021" in texts["composition"]
            assert check_shares(texts["composition"], finest) >= 1
        assert evidence["surroundings"] == "map" and "MODIS 2019" in texts["surroundings"]
        if pd.isna(chip["item_datetime"]):
            assert "imaged on" not in texts["place"] and "period 15 April 1999 to 4 June 2025" in texts["place"]
        else:
            day = chip["item_datetime"]
            assert f"imaged on {day.day} {day:%B} {day.year}" in texts["place"]
    report = json.loads((labelled_ds / "report" / "captions.json").read_text())
    counts = report["quality"]["evidence"]
    observed = int(chips["observed"].notna().sum())
    assert counts["observed+map"] == 2 * observed and counts["observed"] == observed
    assert report["hallucination"]["flagged_captions"] == 0  # "open water" is a fact of the chip, not invented

"""The ``template`` backend on real labelled samples and on random facts: five distinct captions, all true."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from captions.conftest import write_chips
from captions.truth import (
    ALL_NAMES,
    CLASSES,
    Truth,
    check_class_names,
    check_composition,
    check_geography,
    check_layout,
    check_overview,
    class_names_in,
    haversine_bearing,
    roll,
    season_of,
)
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosample import layers
from geosample.captions._lexicon import Lexicon
from geosample.captions.context import ClassShare, SampleContext, build_contexts
from geosample.captions.gazetteer import Place, gazetteer_path
from geosample.captions.template import FOCUSES, TemplateCaptioner
from geosample.cli import cli
from geosample.labels.taxonomy import load_taxonomy

pytestmark = pytest.mark.filterwarnings("ignore:.*has no chips.parquet:geosample.errors.DataQualityWarning")


def _nearest(points: pd.DataFrame, places: pd.DataFrame, min_population: int) -> list[tuple[str, float, float, float]]:
    """Brute force: the nearest place to each point by the haversine formula over every place."""
    places = places[places["population"] >= min_population]
    plon, plat = np.radians(places["lon"].to_numpy(float)), np.radians(places["lat"].to_numpy(float))
    out = []
    for lon, lat in zip(points["lon"], points["lat"], strict=True):
        a = (
            np.sin((plat - np.radians(lat)) / 2) ** 2
            + np.cos(plat) * np.cos(np.radians(lat)) * np.sin((plon - np.radians(lon)) / 2) ** 2
        )
        i = int(np.argmin(a))
        rec = places.iloc[i]
        d, from_place = haversine_bearing(float(rec["lon"]), float(rec["lat"]), lon, lat)
        _, to_place = haversine_bearing(lon, lat, float(rec["lon"]), float(rec["lat"]))
        out.append((str(rec["name"]), d, from_place, to_place))
    return out


def real_truths(ds: Path) -> dict[str, Truth]:
    """Per sample, what is true, from the dataset's files by computations of this test's own."""
    plan = gpd.read_parquet(ds / "plan.parquet")
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    chips = pd.read_parquet(ds / "chips.parquet") if (ds / "chips.parquet").exists() else None
    places = pd.read_parquet(gazetteer_path())
    near = _nearest(plan, places, 1000)
    big = _nearest(plan, places, 100_000)
    joined = gpd.sjoin(plan[["sample_id", "geometry"]].set_geometry(gpd.points_from_xy(plan.lon, plan.lat), crs=4326),
                       layers.countries()[["name", "geometry"]], how="left", predicate="within")  # fmt: skip
    country = joined.drop_duplicates("sample_id").set_index("sample_id")["name"]
    out = {}
    for i, rec in enumerate(plan.itertuples(index=False)):
        row = labels.loc[rec.sample_id]
        fractions = json.loads(row["fractions"])
        quadrants = json.loads(row["quadrant_fractions"])
        truth = Truth(all_class_names=ALL_NAMES)
        for depth in (1, 2, 3):
            level = f"l{depth}"
            whole = roll(fractions, depth)
            truth.shares[level] = {CLASSES[c][0]: whole.get(c, 0.0) for c in row[level]}
            truth.label_names |= {CLASSES[c][0] for c in row[level]}
            truth.regions[level] = {
                region: {CLASSES[c][0]: v for c, v in roll(quadrants[region], depth).items()} for region in quadrants
            }
        for name, d, from_place, to_place in (near[i], big[i]):
            truth.places[name] = (d, from_place, to_place)
        truth.country = None if pd.isna(country[rec.sample_id]) else country[rec.sample_id]
        truth.climate = rec.climate
        if chips is not None:
            when = chips.set_index("sample_id").loc[rec.sample_id, "item_datetime"]
            truth.date = when.date()
            truth.season = season_of(truth.date.month, rec.lat)
        out[rec.sample_id] = truth
    return out


def _jaccard(a: str, b: str) -> float:
    ta, tb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(ta & tb) / len(ta | tb)


def _check_sample(captions: pd.DataFrame, truth: Truth, chip: dict | None, plan_row: pd.Series) -> None:
    assert list(captions["caption_index"]) == [0, 1, 2, 3, 4]
    assert list(captions["focus"]) == list(FOCUSES)
    texts = dict(zip(captions["focus"], captions["caption"], strict=True))
    assert len(set(texts.values())) == 5
    for a, b in itertools.combinations(texts.values(), 2):
        assert _jaccard(a, b) < 0.7, (a, b)
    for text in texts.values():
        check_class_names(text, truth)
    check_overview(texts["overview"], truth)
    assert check_composition(texts["composition"], truth) >= 1
    assert check_layout(texts["layout"], truth) >= 1
    assert check_geography(texts["geography"], truth) >= 1
    sensor = texts["sensor"]
    if chip is not None:
        assert "30 m" in sensor
        assert str(chip["width"]) in sensor or "landsat-c2-l2" in sensor or "Landsat 8" in sensor
        if "acquired" in sensor or "Captured" in sensor:
            assert f"{truth.date.day} {truth.date:%B} {truth.date.year}" in sensor
    else:
        start = pd.Timestamp(plan_row["start_datetime"]).date().isoformat()
        assert start in sensor or f"EPSG:{plan_row['epsg']}" in sensor or "km²" in sensor
        assert "2.56 km" in sensor or "6.55 km²" in sensor


@pytest.mark.parametrize("with_chips", [True, False], ids=["chips", "no-chips"])
def test_five_distinct_true_captions_per_real_sample(labelled_ds: Path, with_chips: bool) -> None:
    if with_chips:
        write_chips(labelled_ds, previews="half")
    result = CliRunner().invoke(cli, ["caption", str(labelled_ds), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    plan = gpd.read_parquet(labelled_ds / "plan.parquet").set_index("sample_id")
    truths = real_truths(labelled_ds)
    chips = pd.read_parquet(labelled_ds / "chips.parquet").set_index("sample_id") if with_chips else None
    assert set(table["sample_id"]) == set(plan.index) and len(table) == 5 * len(plan)
    for sample_id, captions in table.groupby("sample_id"):
        chip = chips.loc[sample_id].to_dict() if chips is not None else None
        _check_sample(captions, truths[sample_id], chip, plan.loc[sample_id])
    report = json.loads((labelled_ds / "report" / "captions.json").read_text())
    assert report["near_duplicates"]["near_duplicate_pairs"] == 0
    assert report["hallucination"]["checked"] and report["hallucination"]["flagged_captions"] == 0


def test_same_seed_same_captions_in_any_batch_order(labelled_ds: Path) -> None:
    plan = gpd.read_parquet(labelled_ds / "plan.parquet")
    contexts = build_contexts(labelled_ds, plan)
    forward = TemplateCaptioner(seed=7).caption(contexts, 5)
    backward = TemplateCaptioner(seed=7).caption(contexts[::-1], 5)[::-1]
    assert forward == backward
    in_batches = [
        c for i in range(0, len(contexts), 5) for c in TemplateCaptioner(seed=7).caption(contexts[i : i + 5], 5)
    ]
    assert in_batches == forward
    assert TemplateCaptioner(seed=8).caption(contexts, 5) != forward


def test_more_than_five_captions_stay_distinct(labelled_ds: Path) -> None:
    plan = gpd.read_parquet(labelled_ds / "plan.parquet")
    contexts = build_contexts(labelled_ds, plan.head(6))
    for captions in TemplateCaptioner().caption(contexts, 20):
        assert len(captions) == 20 and len(set(captions)) == 20
    with pytest.raises(ValueError, match="1 to 20"):
        TemplateCaptioner().caption(contexts, 21)


# Random facts: every caption must stay true whatever the shares, places and dates.

# Place names that contain class words: the hallucination check must take them for names.
PLACE_NAMES = ["Testville", "Lake Placid", "Forest Hills", "Rice Lake", "Sandy Beach"]
CITY_NAMES = ["Big City", "Port Louis", "Playa del Carmen", "Salt Lake City"]
LEXICON = Lexicon(load_taxonomy("geosample-lulc"))
FINE = [c for c in CLASSES if c.count(".") == 2] + ["4.2", "5", "8", "3"]


def _shares(codes: list[str], weights: list[float]) -> dict[str, float]:
    total = sum(weights)
    return {c: w / total for c, w in zip(codes, weights, strict=True) if w > 0}


@st.composite
def synthetic(draw: st.DrawFn) -> tuple[SampleContext, Truth]:
    codes = draw(st.lists(st.sampled_from(FINE), min_size=1, max_size=6, unique=True))
    fine = _shares(codes, draw(st.lists(st.floats(0.01, 1.0), min_size=len(codes), max_size=len(codes))))
    regions_fine = {}
    for region in ("nw", "ne", "sw", "se", "centre"):
        weights = draw(st.lists(st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]), min_size=len(codes), max_size=len(codes)))
        regions_fine[region] = _shares(codes, weights) if sum(weights) else {codes[0]: 1.0}
    min_fraction = draw(st.sampled_from([0.01, 0.05, 0.1]))
    lat = draw(st.floats(-70, 70))
    truth = Truth(all_class_names=ALL_NAMES)
    classes, regions = {}, {}
    for depth in (1, 2, 3):
        level = f"l{depth}"
        whole = roll(fine, depth)
        present = sorted((c for c, v in whole.items() if v >= min_fraction), key=lambda c: (-whole[c], c))
        classes[level] = tuple(ClassShare(c, CLASSES[c][0], whole[c]) for c in present)
        truth.shares[level] = {CLASSES[c][0]: whole[c] for c in present}
        truth.label_names |= {CLASSES[c][0] for c in present}
        regions[level] = {}
        truth.regions[level] = {}
        for region, shares in regions_fine.items():
            rolled = roll(shares, depth)
            ordered = sorted(rolled.items(), key=lambda kv: (-kv[1], kv[0]))
            regions[level][region] = tuple(ClassShare(c, CLASSES[c][0], v) for c, v in ordered)
            truth.regions[level][region] = {CLASSES[c][0]: v for c, v in rolled.items()}
    place = city = None
    if draw(st.booleans()):
        d, b = draw(st.floats(0.05, 250)), draw(st.floats(0, 359.99))
        name = draw(st.sampled_from(PLACE_NAMES))
        place = Place(name, "Upper Region", "Freedonia", "FD", "FRD", 2500, d, b)
        truth.places[name] = (d, b, (b + 180) % 360)
        if draw(st.booleans()):
            d2, b2 = draw(st.floats(d, 400)), draw(st.floats(0, 359.99))
            big = draw(st.sampled_from([n for n in CITY_NAMES if n != name]))
            city = Place(big, None, "Sylvania", "SY", "SYL", 250_000, d2, b2)
            truth.places[big] = (d2, b2, (b2 + 180) % 360)
    date = draw(st.none() | st.dates(dt.date(2015, 1, 1), dt.date(2025, 12, 31)))
    truth.date = date
    truth.season = season_of(date.month, lat) if date else None
    truth.climate = draw(st.sampled_from([None, "A", "B", "C", "D", "E"]))
    truth.country = draw(st.sampled_from([None, "Freedonia"]))
    context = SampleContext(
        sample_id=f"s{draw(st.integers(0, 10**6))}", lon=draw(st.floats(-179, 179)), lat=lat, chip_size_m=2560.0,
        epsg=32633, country=truth.country, country_iso3="FRD" if truth.country else None, continent="Europe",
        place=place, city=city, climate=truth.climate, date=date,
        start_date=dt.date(2020, 1, 1), end_date=dt.date(2020, 12, 31),
        collection="sentinel-2-l2a" if date else None, sensor="Sentinel-2A MSI" if date else None,
        resolution_m=10.0 if date else None, width=256, height=256, bands=("red", "green", "blue"),
        taxonomy="geosample-lulc@1.0.0", levels=("l1", "l2", "l3"), classes=classes, regions=regions,
    )  # fmt: skip
    return context, truth


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=synthetic(), seed=st.integers(0, 1000), n=st.integers(1, 20))
def test_template_captions_are_true_of_any_facts(sample: tuple[SampleContext, Truth], seed: int, n: int) -> None:
    context, truth = sample
    (captions,) = TemplateCaptioner(seed=seed).caption([context], n)
    assert len(captions) == n and len(set(captions)) == n
    levels = [[c.code for c in context.labels_at(level)] for level in context.levels]
    for k, text in enumerate(captions):
        focus = FOCUSES[k % 5]
        check_class_names(text, truth)
        assert LEXICON.unsupported(text, levels) == [], text
        if focus == "overview":
            check_overview(text, truth)
        elif focus == "composition":
            assert check_composition(text, truth) >= 1
        elif focus == "layout":
            # Without a region whose largest class is a label, the layout caption gives the footprint instead.
            assert check_layout(text, truth) >= 1 if class_names_in(text, truth) else "km" in text
        elif focus == "geography":
            assert check_geography(text, truth) >= (1 if context.place else 0)
    assert TemplateCaptioner(seed=seed).caption([context], n) == [captions]


def test_country_articles_and_verb_agreement() -> None:
    from geosample.captions import _words
    from geosample.captions.template import _with_article

    assert [_with_article(c) for c in ("Netherlands", "United Kingdom", "Cayman Is.", "Poland", "Isle of Man")] == [
        "the Netherlands", "the United Kingdom", "the Cayman Is.", "Poland", "Isle of Man"]  # fmt: skip
    assert _words.verbs("wetlands")["covers"] == "cover" and _words.verbs("mixed forest")["covers"] == "covers"
    assert _words.verbs("all four quadrants")["is"] == "are" and _words.verbs("the north")["is"] == "is"
    assert _words.opposite("north-east") == "south-west" and _words.utm_words(32734) == "UTM zone 34S (EPSG:32734)"
    assert _words.km(2560) == "2.56 km" and _words.metres(10.0) == "10 m" and _words.metres(0.6) == "0.6 m"

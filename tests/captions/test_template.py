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
import yaml
from captions.conftest import write_chips
from captions.truth import (
    ALL_NAMES,
    AMOUNT_BANDS,
    CLASSES,
    COMPASS8,
    SIZE_ORDER,
    Truth,
    check_class_names,
    check_geography,
    check_quadrants,
    check_shares,
    class_names_in,
    haversine_bearing,
    modis_around,
    parse_shares,
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
from geosample.captions.template import FOCUSES, TemplateCaptioner, share_list
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


VISUAL = ("overview", "composition", "layout", "surroundings")
_NO_PLACE = re.compile(r"Köppen|climate|imaged on|EPSG|UTM|km²|\b(?:19|20)\d\d-\d\d|\bfor 20\d\d\b|°[NS]")


def _arc(text: str) -> set[str]:
    """Compass sectors named by "to the north and east", "from south-west round to north", "on every side but X"."""
    text = text.strip()
    if text.startswith("on every side but the "):
        return set(COMPASS8) - {text.removeprefix("on every side but the ")}
    if text == "on every side":
        return set(COMPASS8)
    out: set[str] = set()
    for part in re.split(r", | and (?=from|to)", text):
        m = re.fullmatch(r"from ([a-z-]+) round to ([a-z-]+)", part)
        if m:
            k = COMPASS8.index(m.group(1))
            while True:
                out.add(COMPASS8[k % 8])
                if COMPASS8[k % 8] == m.group(2):
                    break
                k += 1
        else:
            out |= set(re.findall(r"[a-z]+(?:-[a-z]+)?", part.removeprefix("to the "))) - {"and"}
    return out


def check_sectors(text: str, around: dict) -> int:
    """ "X (N%) lies to the ..." (N: its share of the cells) against an independent reading of the MODIS map."""
    names = set(around["near"])
    name = "|".join(re.escape(n) for n in sorted(ALL_NAMES, key=len, reverse=True))
    checked = 0
    end = rf"(?=, (?:{name}) \(| and (?:{name}) \(|;|\.$)"
    for m in re.finditer(rf"({name}) \((\d+)%\) (?:lies|lie) (.*?){end}", text):
        cls, pct, where = m.group(1), int(m.group(2)), m.group(3)
        assert cls in names and pct == round(100 * around["near"][cls]), (cls, pct, around["near"], text)
        sectors = _arc(where)
        assert sectors and all(around["sectors"].get(s) == cls for s in sectors), (cls, sectors, around, text)
        checked += 1
    return checked


def check_nearest(text: str, around: dict) -> int:
    """ "the nearest X begins about N km to the D" against the nearest cell edge found cell by cell here."""
    name = "|".join(re.escape(n) for n in sorted(ALL_NAMES, key=len, reverse=True))
    checked = 0
    for m in re.finditer(rf"({name}) begins? (less than 1 km|about (\d+) km) to the ([a-z-]+)", text):
        distance, bearing = around["nearest"][m.group(1)]
        if m.group(3) is None:
            assert distance < 1.0, (m.group(0), distance)
        else:
            stated = int(m.group(3))
            # Whole km under 20 km, 5 km steps beyond.
            assert abs(stated - distance) <= (0.5 if distance < 20 else 2.5) + 1e-6, (m.group(0), distance)
        # The compass point of the bearing (a sector either side on a boundary).
        k = COMPASS8.index(m.group(4))
        diff = abs((k * 45 - bearing + 180) % 360 - 180)
        assert diff <= 22.5 + 1e-6, (m.group(0), bearing)
        checked += 1
    # Nearest first: no class not named is nearer than the last one named (the list runs in order of distance).
    return checked


def _check_sample(captions: pd.DataFrame, truth: Truth, plan_row: pd.Series, around: dict, chip: bool) -> None:
    assert list(captions["caption_index"]) == [0, 1, 2, 3, 4]
    assert list(captions["focus"]) == list(FOCUSES)
    texts = dict(zip(captions["focus"], captions["caption"], strict=True))
    evidence = dict(zip(captions["focus"], captions["evidence"], strict=True))
    assert len(set(texts.values())) == 5
    for a, b in itertools.combinations(texts.values(), 2):
        assert _jaccard(a, b) < 0.7, (a, b)
    known = truth.label_names | set(around["near"]) | set(ALL_NAMES)
    truth_all = Truth(all_class_names=ALL_NAMES, label_names=known)
    for focus in VISUAL:
        # Visual captions: cover only, from the map (MODIS labels are coarser than the chip: cells around it).
        text = texts[focus]
        assert evidence[focus] == "map" and "MODIS 2019" in text, text
        assert not _NO_PLACE.search(text) and (truth.country is None or truth.country not in text), text
        assert "the chip is" not in text.lower(), text
        check_class_names(text, truth_all)
    assert check_shares(texts["composition"], around["near"]) >= 1
    assert check_sectors(texts["layout"], around) >= 1
    # The overview names the chip's labels (the coarse cells under it, those over --min-fraction of the chip): every
    # one is a class of a cell under the chip by the independent reading; then where the nearest other covers begin.
    head = texts["overview"].split(";")[0]
    named = set(class_names_in(head, truth))
    assert named == set(truth.shares["l3"]) and named <= around["under"], (head, around["under"])
    for focus in ("overview", "layout", "surroundings"):
        assert check_nearest(texts[focus], around) >= (1 if around["nearest"] and focus != "layout" else 0)
    assert evidence["place"] == "none"
    assert check_geography(texts["place"], truth) >= 1
    year = pd.Timestamp(plan_row["start_datetime"]).year
    assert (f"for {year}" in texts["place"]) != chip, texts["place"]


@pytest.mark.parametrize("with_chips", [True, False], ids=["chips", "no-chips"])
def test_five_true_captions_per_real_sample(labelled_ds: Path, with_chips: bool) -> None:
    if with_chips:
        write_chips(labelled_ds, previews="half")
    result = CliRunner().invoke(cli, ["caption", str(labelled_ds), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    plan = gpd.read_parquet(labelled_ds / "plan.parquet").set_index("sample_id")
    truths = real_truths(labelled_ds)
    assert set(table["sample_id"]) == set(plan.index) and len(table) == 5 * len(plan)
    for sample_id, captions in table.groupby("sample_id"):
        row = plan.loc[sample_id]
        around = modis_around(row["lon"], row["lat"], row["chip_size_m"])
        _check_sample(captions, truths[sample_id], row, around, with_chips)
    report = json.loads((labelled_ds / "report" / "captions.json").read_text())
    assert report["near_duplicates"]["near_duplicate_pairs"] == 0
    assert report["hallucination"]["checked"] and report["hallucination"]["flagged_captions"] == 0
    assert report["quality"]["evidence"] == {"map": 4 * len(plan), "none": len(plan)}


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


def test_more_captions_than_focuses_and_the_focus_setting(labelled_ds: Path) -> None:
    plan = gpd.read_parquet(labelled_ds / "plan.parquet")
    contexts = build_contexts(labelled_ds, plan.head(6))
    for result in TemplateCaptioner().caption_results(contexts, 10):
        assert len(set(result.captions)) >= 8 and result.focus == list(FOCUSES) * 2
    with pytest.raises(ValueError, match="1 to 20"):
        TemplateCaptioner().caption(contexts, 21)
    mix = TemplateCaptioner(focus="composition,acquisition").caption_results(contexts, 4)
    assert all(r.focus == ["composition", "acquisition"] * 2 for r in mix)
    assert all("EPSG" not in t and "UTM" not in t for r in mix for t in r.captions)
    assert TemplateCaptioner(focus="layout").prompt_sha256 != TemplateCaptioner().prompt_sha256
    with pytest.raises(ValueError, match="--focus geometry: choose focuses among overview"):
        TemplateCaptioner(focus="overview,geometry")
    result = CliRunner().invoke(cli, ["caption", str(labelled_ds), "--focus", "layout,place", "-n", "2",
                                      "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    assert list(table["focus"].unique()) == ["layout", "place"]
    section = yaml.safe_load((labelled_ds / "geosample.yaml").read_text())["caption"]
    assert section["focus"] == ["layout", "place"]


# Share words: parsed back against random share vectors.

NAMES = ["arable land", "grassland", "mixed forest", "water bodies", "wetlands", "bare rock", "urban fabric"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=7).filter(lambda v: sum(v) > 0))
def test_share_words_are_calibrated_ordered_and_never_split_close_shares(weights: list[float]) -> None:
    total = sum(weights)
    shares = {NAMES[i]: v / total for i, v in enumerate(weights)}
    classes = [ClassShare(str(i), NAMES[i], v) for i, v in enumerate(shares.values())]
    text = share_list(classes, limit=7, exact=True)
    named = [n for members, _, _ in parse_shares(text, set(NAMES)) for n in members]
    assert sorted(named) == sorted(n for n, v in shares.items() if v >= 0.005), text
    check_shares(text, shares)
    # The shipped phrase table is the README's: bands that tile [0.005, 1] without overlap, largest first.
    from geosample.captions import _words

    assert [(p.text, round(p.low, 6), round(p.high, 6)) for p in _words.AMOUNTS] == [
        (p, round(AMOUNT_BANDS[p][0], 6), AMOUNT_BANDS[p][1]) for p in SIZE_ORDER]  # fmt: skip
    assert all(AMOUNT_BANDS[a][0] == AMOUNT_BANDS[b][1] for a, b in itertools.pairwise(SIZE_ORDER))


def test_dominance_words_only_above_one_half() -> None:
    from geosample.captions.template import cover_words

    half = [ClassShare("1", "grassland", 0.5), ClassShare("2", "wetlands", 0.5)]
    assert "mostly" not in cover_words(half) and "(about half each)" in cover_words(half)
    assert cover_words([ClassShare("1", "grassland", 0.51), ClassShare("2", "wetlands", 0.49)]).startswith("of ")
    assert cover_words([ClassShare("1", "grassland", 0.6), ClassShare("2", "wetlands", 0.4)]).startswith("mostly")


# Random facts of a chip with a fine map (and sometimes observed cover): every caption true whatever they are.

PLACE_NAMES = ["Testville", "Lake Placid", "Forest Hills", "Rice Lake", "Sandy Beach"]
CITY_NAMES = ["Big City", "Port Louis", "Playa del Carmen", "Salt Lake City"]
LEXICON = Lexicon(load_taxonomy("geosample-lulc"))
FINE = [c for c in CLASSES if c.count(".") == 2] + ["4.2", "5", "8", "3"]
OBSERVED_NAMES = {"water": "open water", "vegetation": "vegetation", "bare": "bare ground",
                  "snow_ice": "snow and ice", "built": "built-up surfaces"}  # fmt: skip


def _shares(codes: list[str], weights: list[float]) -> dict[str, float]:
    total = sum(weights)
    return {c: w / total for c, w in zip(codes, weights, strict=True) if w > 0}


@st.composite
def synthetic(draw: st.DrawFn) -> tuple[SampleContext, Truth, dict | None]:
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
    observed = quadrants = None
    if draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from(list(OBSERVED_NAMES)), min_size=1, max_size=5, unique=True))
        scale = draw(st.floats(0.5, 1.0))
        observed = {k: v * scale for k, v in _shares(kinds, draw(st.lists(st.floats(0.01, 1), min_size=len(kinds),
                                                                          max_size=len(kinds)))).items()}  # fmt: skip
        quadrants = {q: _shares(kinds, draw(st.lists(st.floats(0.0, 1), min_size=len(kinds), max_size=len(kinds))))
                     or {kinds[0]: 1.0} for q in ("nw", "ne", "sw", "se")}  # fmt: skip
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
        label_source="esa-worldcover@stac", map_resolution_m=10.0, map_year=2021,
        observed=observed, observed_regions=quadrants,
    )  # fmt: skip
    return context, truth, {"whole": observed, "quadrants": quadrants} if observed else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=synthetic(), seed=st.integers(0, 1000), n=st.integers(1, 10))
def test_template_captions_are_true_of_any_facts(sample: tuple, seed: int, n: int) -> None:
    context, truth, observed = sample
    (result,) = TemplateCaptioner(seed=seed).caption_results([context], n)
    captions = result.captions
    assert len(captions) == n and len(set(captions)) == n
    levels = [[c.code for c in context.labels_at(level)] for level in context.levels]
    finest = truth.shares["l3"]
    names_observed = {OBSERVED_NAMES[k]: v for k, v in (observed or {}).get("whole", {}).items()} if observed else {}
    for k, text in enumerate(captions):
        focus = FOCUSES[k % 5]
        assert LEXICON.unsupported(text, [*levels[:-1], [*levels[-1], "8", "6", "7", "1"]]) == [], text
        if focus in VISUAL:
            assert not _NO_PLACE.search(text) and "Freedonia" not in text, text
        if focus == "composition":
            if observed:
                assert result.evidence[k] == "observed+map"
                head, _, tail = text.partition("; by the ")
                assert check_shares(head, names_observed) >= 1
                assert check_shares(tail.split("; the image and the map")[0], finest) >= 1
            else:
                assert result.evidence[k] == "map" and check_shares(text, finest) >= 1
        elif focus == "layout":
            if observed:
                regions = {q: {OBSERVED_NAMES[c]: v for c, v in observed["quadrants"][q].items()}
                           for q in ("nw", "ne", "sw", "se")}  # fmt: skip
                assert result.evidence[k] in ("observed", "map")
                if result.evidence[k] == "observed":
                    assert check_quadrants(text, regions, set(OBSERVED_NAMES.values())) >= 1
            else:
                regions = {q: truth.regions["l3"][q] for q in ("nw", "ne", "sw", "se")}
                if result.evidence[k] == "map" and not check_quadrants(text, regions, ALL_NAMES):
                    # "No quadrant has a labelled class larger than all the others": true only if so.
                    assert re.search(r"no single labelled class|no quadrant has|none leading", text), text
                    for shares in regions.values():
                        top = max(shares.values())
                        leaders = [c for c, v in shares.items() if v == top]
                        assert len(leaders) > 1 or leaders[0] not in finest, (shares, finest, text)
        elif focus == "place":
            assert check_geography(text, truth) >= (1 if context.place else 0)
    assert TemplateCaptioner(seed=seed).caption([context], n) == [captions]


def test_image_dates_periods_and_windows() -> None:
    from geosample.captions._sources import image_time
    from geosample.captions.template import when_words

    day = pd.Timestamp("2021-05-12T10:31:00Z")
    assert image_time(day, None, None) == (dt.date(2021, 5, 12), None)
    # A range (or a mosaic's span) is a period, never a date, even with a datetime set.
    assert image_time(day, pd.Timestamp("1999-04-15", tz="UTC"), pd.Timestamp("2025-06-04", tz="UTC")) == (
        None, (dt.date(1999, 4, 15), dt.date(2025, 6, 4)))  # fmt: skip
    assert image_time(day, day, day + pd.Timedelta(hours=2)) == (dt.date(2021, 5, 12), None)  # one day: a date
    base = {"sample_id": "s", "lon": 10.0, "lat": 50.0, "chip_size_m": 2560.0}
    assert when_words(SampleContext(**base, date=dt.date(2021, 5, 12))) == "imaged on 12 May 2021"
    period = SampleContext(**base, period=(dt.date(1999, 4, 15), dt.date(2025, 6, 4)))
    assert when_words(period) == "from imagery of the period 15 April 1999 to 4 June 2025" and period.season is None
    assert when_words(SampleContext(**base, start_date=dt.date(2021, 1, 1), end_date=dt.date(2021, 12, 31))) == (
        "for 2021"
    )
    july = SampleContext(**base, start_date=dt.date(2021, 7, 1), end_date=dt.date(2021, 7, 31))
    assert when_words(july) == "for July 2021" and july.season == "summer"


def test_country_articles_and_verb_agreement() -> None:
    from geosample.captions import _words
    from geosample.captions.template import _with_article

    assert [_with_article(c) for c in ("Netherlands", "United Kingdom", "Cayman Is.", "Poland", "Isle of Man")] == [
        "the Netherlands", "the United Kingdom", "the Cayman Is.", "Poland", "Isle of Man"]  # fmt: skip
    assert _words.verbs("wetlands")["covers"] == "cover" and _words.verbs("mixed forest")["covers"] == "covers"
    assert _words.verbs("all four quadrants")["is"] == "are" and _words.verbs("the north")["is"] == "is"
    assert _words.opposite("north-east") == "south-west"
    assert _words.km(2560) == "2.56 km" and _words.metres(10.0) == "10 m" and _words.metres(0.6) == "0.6 m"

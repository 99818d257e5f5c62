"""Change captions: pairs of a site's samples, true statements of direction and size, the table contract."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from captions.openai_server import OpenAIServer
from hypothesis import given, settings
from hypothesis import strategies as st
from scenes import synthetic
from untrusted import run_cli as run

from geosample.captions.change import CHANGE_MIN, ChangeContext, change_context, pairs
from geosample.captions.change_template import CHANGE_FOCUSES, change_captions
from geosample.captions.context import QUADRANTS, REGIONS, ClassShare, SampleContext

NAMES = {"2": "agricultural areas", "3": "forest and woodland", "6": "bare and sparsely vegetated land",
         "8": "water bodies"}  # fmt: skip
CODES = tuple(NAMES)
_SHARE = r"(almost none|about \d+%)"
_CLAIM = re.compile(rf"({'|'.join(NAMES.values())}) (\w+) from {_SHARE} to {_SHARE}", re.I)
_UP, _DOWN = {"rose", "grew", "increased", "expanded"}, {"fell", "shrank", "declined", "decreased"}
pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")


# --- pairs ------------------------------------------------------------------------------------------------------


def test_event_pairs_are_before_after_within_a_chip_size() -> None:
    plan = pd.DataFrame(
        {
            "sample_id": ["a-b-1", "a-a-1", "a-b-2", "a-a-2", "c-a", "c-b", "d-b"],
            "site_id": ["a", "a", "a", "a", "c", "c", "d"],
            "chip_size_m": [1000.0, 1000.0, 2000.0, 2000.0, 1000.0, 1000.0, 1000.0],
            "phase": ["before", "after", "before", "after", "after", "before", "before"],
        }
    )
    got = pairs(plan)
    assert got[["site_id", "sample_id_before", "sample_id_after"]].values.tolist() == [
        ["a", "a-b-1", "a-a-1"],
        ["a", "a-b-2", "a-a-2"],
        ["c", "c-b", "c-a"],
    ]  # plan order of the later sample; a site without its after row has no pair
    assert set(got["kind"]) == {"event"}


def test_revisit_pairs_are_consecutive() -> None:
    rows = [(f"s{s}", k, f"s{s}-r{k}") for s in range(4) for k in range(3)]
    plan = pd.DataFrame(rows, columns=["site_id", "revisit_index", "sample_id"]).sample(frac=1, random_state=1)
    plan["chip_size_m"] = 2560.0
    got = pairs(plan.reset_index(drop=True))
    expected = {(f"s{s}-r{k - 1}", f"s{s}-r{k}") for s in range(4) for k in (1, 2)}
    assert set(zip(got["sample_id_before"], got["sample_id_after"], strict=True)) == expected
    assert len(got) == 8 and set(got["kind"]) == {"revisit"}
    assert pairs(plan.drop(columns="revisit_index")).empty


# --- direction and size on synthetic fractions -------------------------------------------------------------------


def _context(sample_id: str, whole: dict[str, float], regions: dict[str, dict[str, float]]) -> SampleContext:
    def shares(values: dict[str, float]) -> tuple[ClassShare, ...]:
        return tuple(ClassShare(c, NAMES[c], v) for c, v in sorted(values.items(), key=lambda kv: -kv[1]) if v > 0)

    levels = ("l1", "l3")
    by_region = types.MappingProxyType({r: shares(regions[r]) for r in REGIONS})
    return SampleContext(
        sample_id=sample_id,
        lon=23.3,
        lat=38.9,
        chip_size_m=2560.0,
        country="Greece",
        continent="Europe",
        start_date=dt.date(2021, 5, 1) if sample_id.endswith("b") else dt.date(2021, 8, 1),
        # Time-matched labels: a 10 m map of each sample's own year, so the labels can show change.
        label_source="esa-worldcover@stac",
        map_resolution_m=10.0,
        map_year=2020 if sample_id.endswith("b") else 2021,
        levels=levels,
        classes={level: tuple(s for s in shares(whole) if s.fraction >= 0.05) for level in levels},
        shares={level: dict(whole) for level in levels},
        regions={level: by_region for level in levels},
    )


def _split(values: list[float]) -> dict[str, float]:
    total = sum(values)
    return {c: v / total for c, v in zip(CODES, values, strict=True)}


fractions = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 0.1)


def _pair(before: dict[str, float], after: dict[str, float], quadrants: list[dict[str, float]]) -> ChangeContext:
    # The whole chip is the mean of the quadrants; the centre is the mean of all four.
    def regions(scale: dict[str, float], qs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        out = {q: {c: scale[c] * qs[i][c] for c in CODES} for i, q in enumerate(QUADRANTS)}
        out["centre"] = {c: float(np.mean([out[q][c] for q in QUADRANTS])) for c in CODES}
        return out

    flat = [dict.fromkeys(CODES, 1.0)] * 4
    first = _context("s-b", before, regions(before, flat))
    last = _context("s-a", after, regions(after, quadrants))
    row = {"site_id": "s", "kind": "event"}
    return change_context(first, last, row, {"event_type": "wildfire", "event_date": "2021-07-15"})


def _value(text: str) -> float:
    return 0.0 if text == "almost none" else float(text[6:-1]) / 100


@settings(max_examples=150, deadline=None)
@given(fractions, fractions, st.integers(0, 3), st.integers(1, 12))
def test_template_states_the_direction_and_size_of_every_change(
    before: list[float], after: list[float], seed: int, n: int
) -> None:
    first, last = _split(before), _split(after)
    # The later image concentrates each class's change in one quadrant pattern (weights averaging 1).
    weights = [dict.fromkeys(CODES, w) for w in (1.6, 1.2, 0.8, 0.4)]
    context = _pair(first, last, weights)
    result = change_captions(context, n, seed)
    captions, focus = result.captions, result.focus
    assert len(captions) == n and focus == [CHANGE_FOCUSES[k % 5] for k in range(n)]
    assert result.evidence == ["map"] * n and context.observable
    assert len(set(captions)) == n
    moved = max(abs(last[c] - first[c]) for c in CODES)
    claims = 0
    for text in captions:
        for name, verb, a, b in _CLAIM.findall(text):
            code = next(c for c, v in NAMES.items() if v == name.lower())
            claims += 1
            delta = last[code] - first[code]
            assert abs(_value(a) - first[code]) <= 0.025 + 1e-9 and abs(_value(b) - last[code]) <= 0.025 + 1e-9, text
            assert (verb in _UP and delta > 0) or (verb in _DOWN and delta < 0) or verb == "went", text
            assert abs(delta) >= CHANGE_MIN, text  # only real changes are stated as changes
            assert _value(a) != _value(b), text
        stable = "little changed" in text or "changed little" in text or "little change" in text
        assert not stable or moved < CHANGE_MIN, text
    if moved >= CHANGE_MIN and n >= 1:
        assert claims >= 1  # the main change is always stated with its numbers
    if moved < CHANGE_MIN:
        assert claims == 0


def test_a_wildfire_pair_reads_as_the_issue_asks() -> None:
    before = {"3": 0.7, "2": 0.2, "8": 0.1, "6": 0.0}
    after = {"3": 0.2, "2": 0.2, "8": 0.1, "6": 0.5}
    # The burn scar (bare ground) lies in the east: north-east and south-east gain it, the west keeps its trees.
    east = [{"3": 1.0, "2": 1.0, "8": 1.0, "6": 0.0}, {"3": 1.0, "2": 1.0, "8": 1.0, "6": 2.0},
            {"3": 1.0, "2": 1.0, "8": 1.0, "6": 0.0}, {"3": 1.0, "2": 1.0, "8": 1.0, "6": 2.0}]  # fmt: skip
    context = _pair(before, after, east)
    captions = change_captions(context, 5, 0).captions
    text = " ".join(captions)
    assert re.search(r"forest and woodland (fell|shrank|declined|decreased) from about 70% to about 20%", text)
    assert re.search(r"bare and sparsely vegetated land (rose|grew|increased|expanded) from almost none to about 50%",
                     text)  # fmt: skip
    assert "after the wildfire of 15 July 2021" in text
    gain = captions[CHANGE_FOCUSES.index("gain")]
    assert "the east" in gain and "about 100%" in gain  # the eastern half went from none to all bare ground
    facts = context.to_facts()
    bare = next(c for c in facts["land_cover_change"]["l1"] if c["name"].startswith("bare"))
    assert bare["change"] == 0.5 and bare["most_in"] == "ne+se" and facts["event"]["type"] == "wildfire"


def test_little_changed_only_from_labels_that_can_show_change() -> None:
    same = {"3": 0.52, "2": 0.3, "8": 0.18, "6": 0.0}
    near = {"3": 0.5, "2": 0.32, "8": 0.18, "6": 0.0}
    captions = change_captions(_pair(same, near, [dict.fromkeys(CODES, 1.0)] * 4), 5, 0).captions
    assert sum(bool(re.search("little changed|changed little|little change", c)) for c in captions) >= 1
    assert not _CLAIM.search(" ".join(captions))


_STABILITY = re.compile(r"little chang|changed little|unchanged|stayed|remains|no change|no gain|no loss|"
                        r"rose|grew|fell|shrank|increased|decreased|declined|expanded", re.I)  # fmt: skip


@pytest.mark.parametrize(
    ("resolution", "years", "reason"),
    [
        (5566.0, (2019, 2019), "coarser than the chip"),  # the embedded MODIS layer for both phases
        (10.0, (2021, 2021), "same 2021 map"),  # one static map year for both phases
        (10.0, (None, None), "which map year"),
        (None, (2020, 2021), "resolution is unknown"),
    ],
)
def test_static_or_coarse_labels_claim_neither_stability_nor_change(
    resolution: float | None, years: tuple, reason: str
) -> None:
    same = {"3": 0.52, "2": 0.3, "8": 0.18, "6": 0.0}
    other = {"3": 0.1, "2": 0.3, "8": 0.1, "6": 0.5}
    context = _pair(same, other, [dict.fromkeys(CODES, 1.0)] * 4)
    context = change_context(
        dataclasses.replace(context.before, map_resolution_m=resolution, map_year=years[0]),
        dataclasses.replace(context.after, map_resolution_m=resolution, map_year=years[1]),
        {"site_id": "s", "kind": "event"}, {"event_type": "wildfire", "event_date": "2021-07-15"},
    )  # fmt: skip
    assert not context.observable and reason in context.unobservable and context.evidence == "unobservable"
    assert "land_cover_change" not in context.to_facts() and reason in context.to_facts()["change_not_observable"]
    result = change_captions(context, 5, 0)
    assert result.evidence == ["unobservable"] * 5 and len(set(result.captions)) == 5
    for text in result.captions:
        assert not _STABILITY.search(text) and not _CLAIM.search(text), text
    assert sum(reason in text for text in result.captions) >= 3
    bare = SampleContext("x-b", 1.0, 2.0, 1000.0, start_date=dt.date(2020, 1, 1))
    later = SampleContext("x-a", 1.0, 2.0, 1000.0, start_date=dt.date(2022, 1, 1))
    context = change_context(bare, later, {"site_id": "x", "kind": "revisit"}, {"revisit_index": 1})
    assert not context.observable and "no land-cover labels" in context.unobservable


def _observed_pair(row: dict) -> ChangeContext:
    before = _context("s-b", {"3": 1.0}, {r: {"3": 1.0} for r in REGIONS})
    after = _context("s-a", {"3": 1.0}, {r: {"3": 1.0} for r in REGIONS})
    before = dataclasses.replace(before, date=dt.date(2021, 5, 2), map_resolution_m=5566.0)
    after = dataclasses.replace(after, date=dt.date(2021, 5, 22), map_resolution_m=5566.0)
    return change_context(before, after, {"site_id": "s", "kind": "event"},
                          {"event_type": "flood", "event_date": "2021-05-12"}, row)  # fmt: skip


CHANGE_WORDS = {"open water appeared on": "water_gain", "open water receded from": "water_loss",
                "vegetation was lost on": "vegetation_loss", "vegetation grew on": "vegetation_gain",
                "snow and ice changed on": "snow_ice_change"}  # fmt: skip
_OBSERVED = re.compile(r"(open water appeared on|open water receded from|vegetation was lost on|vegetation grew on|"
                       r"snow and ice changed on) (almost none|about (\d+)%) of the clear pixels"
                       r"(?:, mostly in ([a-z -]+?))?(?=[,.;]| after| between|$)")  # fmt: skip
_BURNED = re.compile(r"(almost none|about (\d+)%) of the clear pixels burned")
change_share = st.floats(0.0, 0.7) | st.just(0.0)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries({k: change_share for k in CHANGE_WORDS.values()}),
    st.none() | st.floats(0.0, 0.5),
    st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    st.integers(1, 10),
    st.integers(0, 5),
)
def test_observed_change_captions_parse_back(
    shares: dict, burned: float | None, weights: list[float], n: int, seed: int
) -> None:
    """Captions made from a change.parquet row (the contract's columns) state its shares, places and event."""
    total = sum(weights) or 1.0
    # Each change's quadrant shares: the whole-chip share spread by the weights (mean of the quadrants = the chip).
    quadrants = {q: {k: min(1.0, v * 4 * weights[i] / total) for k, v in shares.items()}
                 for i, q in enumerate(QUADRANTS)}  # fmt: skip
    row = {"site_id": "s", "sample_id_before": "s-b", "sample_id_after": "s-a", "kind": "event", **shares,
           "burned": burned, "valid_fraction": 0.9, "mask": "change/s/s-b__s-a.tif",
           "quadrants": json.dumps(quadrants)}  # fmt: skip
    context = _observed_pair(row)
    assert context.observable and context.evidence == "change"
    result = change_captions(context, n, seed)
    assert result.evidence == ["change"] * n and len(result.captions) == n
    values = {**shares, "burned": burned}
    for text in result.captions:
        assert "little chang" not in text and not _CLAIM.search(text), text
        assert "9 May" not in text and "the flood of 12 May 2021" in text or "the flood" not in text, text
        for m in _OBSERVED.finditer(text):
            column = CHANGE_WORDS[m.group(1)]
            stated = 0.0 if m.group(2) == "almost none" else int(m.group(3)) / 100
            assert abs(stated - values[column]) <= 0.025 + 1e-9, (column, stated, values[column], text)
            if m.group(4):
                where = {"the north": {"nw", "ne"}, "the south": {"sw", "se"}, "the west": {"nw", "sw"},
                         "the east": {"ne", "se"}, "the northern half": {"nw", "ne"}, "the southern half": {"sw", "se"},
                         "the western half": {"nw", "sw"}, "the eastern half": {"ne", "se"}}  # fmt: skip
                region = where.get(m.group(4)) or next(
                    ({q} for q, name in zip(QUADRANTS, ("north-west", "north-east", "south-west", "south-east"),
                                            strict=True) if m.group(4) in (f"the {name}", f"the {name} quadrant")),
                    None)  # fmt: skip
                if region is None and m.group(4).startswith("all but the "):
                    missing = m.group(4).removeprefix("all but the ")
                    names = dict(zip(("north-west", "north-east", "south-west", "south-east"), QUADRANTS, strict=True))
                    region = set(QUADRANTS) - {names[missing]}
                if region is None and m.group(4) in ("the north-west and south-east quadrants",):
                    region = {"nw", "se"}
                if region is None and m.group(4) in ("the north-east and south-west quadrants",):
                    region = {"ne", "sw"}
                assert region, m.group(4)
                per_q = {q: quadrants[q][column] for q in QUADRANTS}
                best = max(per_q.values())
                # The named quadrants hold the change most: each at least half the largest quadrant's share.
                assert best >= 0.10 and all(per_q[q] >= best / 2 - 1e-9 for q in region), (per_q, text)
        for m in _BURNED.finditer(text):
            stated = 0.0 if m.group(1) == "almost none" else int(m.group(2)) / 100
            assert burned is not None and abs(stated - burned) <= 0.025 + 1e-9, text
    moved = [k for k, v in values.items() if v is not None and v >= CHANGE_MIN]
    first = result.captions[0]
    if moved:
        assert _OBSERVED.search(first) or _BURNED.search(first), first
    else:
        assert "No change covering 5%" in first or "no change on 5%" in first or "no measured change" in first


def test_a_burn_signal_after_an_eruption_may_be_lava() -> None:
    """dNBR cannot tell char from fresh lava or ash: after an eruption the caption says both, with the share."""
    row = {"site_id": "s", "sample_id_before": "s-b", "sample_id_after": "s-a", "kind": "event",
           **dict.fromkeys(CHANGE_WORDS.values(), 0.0), "burned": 0.42, "valid_fraction": 0.9,
           "mask": "change/s/s-b__s-a.tif", "quadrants": None}  # fmt: skip
    before, after = (dataclasses.replace(_context(s, {"3": 1.0}, {r: {"3": 1.0} for r in REGIONS}),
                                         date=dt.date(2021, 5, d), map_resolution_m=5566.0)
                     for s, d in (("s-b", 2), ("s-a", 22)))  # fmt: skip
    for event_type, lava in (("volcano", True), ("wildfire", False)):
        context = change_context(before, after, {"site_id": "s", "kind": "event"},
                                 {"event_type": event_type, "event_date": "2021-05-12"}, row)  # fmt: skip
        texts = change_captions(context, 5, 0).captions
        stated = [int(m.group(2)) / 100 for t in texts for m in _BURNED.finditer(t)]
        assert stated and all(abs(v - 0.42) <= 0.025 for v in stated), texts
        assert any("lava or ash" in t for t in texts) is lava, texts


# --- the stage, offline, end to end ------------------------------------------------------------------------------


def _dataset(tmp_path: Path, **plan_settings: object) -> Path:
    from geosample import LabelConfig, PlanConfig, fetch, label, plan

    ds = tmp_path / "DS"
    plan(ds, config=PlanConfig.from_mapping(plan_settings), progress=False)
    catalog = synthetic().build(ds, tmp_path / "stac", collections=("synthetic-rgb", "synthetic-landcover"))
    fetch(ds, stac=str(catalog), collection="synthetic-rgb", resolution=20, progress=False)
    label(ds, LabelConfig(source="stac:synthetic-landcover", stac=str(catalog), scheme="esa-worldcover"),
          progress=False)  # fmt: skip
    time_matched_labels(ds)
    return ds


def time_matched_labels(ds: Path) -> None:
    """The contract's label columns (wt-fidelity adds them to ``label``): a 20 m map of each sample's own year.

    Before an event the year before the event's; a revisit i the first year plus i.
    """
    plan = pd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    labels = pd.read_parquet(ds / "labels.parquet")
    year = pd.Series(2021, index=plan.index)
    if "phase" in plan:
        year[plan["phase"] == "before"] = 2020
    if "revisit_index" in plan:
        year = 2020 + plan["revisit_index"].fillna(0).astype(int)
    labels["label_year"] = labels["sample_id"].map(year).astype("int64")
    labels["source_resolution_m"] = 20.0
    labels.to_parquet(ds / "labels.parquet", index=False)


@pytest.fixture(scope="module")
def _events_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("events")
    events = tmp / "events.csv"
    events.write_text(
        "event_id,type,date,lon,lat\nfire,wildfire,2021-07-15,23.3,38.9\nflood,flood,2021-07-14,7.1,50.53\n"
    )
    return _dataset(tmp, events=str(events), samples=4, event_radius_m=8000)  # room for 2 spaced sites per event


@pytest.fixture
def events_ds(_events_ds: Path, tmp_path: Path) -> Path:
    import shutil

    ds = tmp_path / "DS"
    shutil.copytree(_events_ds, ds)
    return ds


def test_event_plan_gets_change_captions_naming_the_events_change(
    events_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["caption", str(events_ds), "--no-progress"], capsys)
    assert code == 0, err
    plan = pd.read_parquet(events_ds / "plan.parquet")
    labels = pd.read_parquet(events_ds / "labels.parquet").set_index("sample_id")
    table = pd.read_parquet(events_ds / "captions.parquet")
    scene, change = table[table["kind"] == "scene"], table[table["kind"] == "change"]
    assert len(scene) == 5 * len(plan) and scene[["site_id", "sample_id_before", "sample_id_after"]].isna().all().all()
    phase = plan.set_index("sample_id")["phase"]
    site = plan.set_index("sample_id")["site_id"]
    assert len(change) == 5 * (len(plan) // 2) and "change captions: 4 pairs captioned" in out
    for (first, last), rows in change.groupby(["sample_id_before", "sample_id_after"]):
        assert phase[first] == "before" and phase[last] == "after" and site[first] == site[last]
        assert (rows["sample_id"] == last).all() and (rows["site_id"] == site[last]).all()
        assert sorted(rows["caption_index"]) == list(range(5)) and rows["caption"].nunique() == 5
        kind = plan.set_index("sample_id").loc[last, "event_type"]
        code, words = ("6", "bare and sparsely vegetated land") if kind == "wildfire" else ("8", "water bodies")
        grew = json.loads(labels.loc[last, "fractions"]).get(code, 0) - json.loads(labels.loc[first, "fractions"]).get(
            code, 0
        )
        assert grew > CHANGE_MIN  # independent of the captions: the labels show the event's change
        text = " ".join(rows["caption"])
        assert re.search(rf"{words} (rose|grew|increased|expanded) from", text), text
        assert re.search(f"the {'wildfire' if kind == 'wildfire' else 'flood'} of 1[45] July 2021", text), text
        assert set(rows["evidence"]) == {"map"}
    report = json.loads((events_ds / "report" / "captions.json").read_text())
    assert report["n_captions"] == len(scene) and report["change"]["n_pairs"] == 4
    direction = report["change"]["direction"]
    assert direction["checked"] >= 8 and direction["disagree"] == 0
    assert direction["magnitude"]["within_tolerance"] == direction["magnitude"]["checked"] > 0
    # Re-running does nothing; --overwrite rewrites the same captions; --no-change on a fresh run writes none.
    code, out, err = run(["caption", str(events_ds), "--no-progress"], capsys)
    assert code == 0 and "nothing to do" in out, err
    pd.testing.assert_frame_equal(table, pd.read_parquet(events_ds / "captions.parquet"))
    code, out, err = run(["caption", str(events_ds), "--no-progress", "--overwrite"], capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(table, pd.read_parquet(events_ds / "captions.parquet"))
    code, out, err = run(["caption", str(events_ds), "--no-progress", "--seed", "3"], capsys)
    assert code == 2 and "other settings" in err and len(err.strip().splitlines()) == 1
    (events_ds / "captions.parquet").unlink()
    code, out, err = run(["caption", str(events_ds), "--no-progress", "--no-change"], capsys)
    assert code == 0, err
    assert set(pd.read_parquet(events_ds / "captions.parquet")["kind"]) == {"scene"}
    code, out, err = run(["caption", str(events_ds), "--no-progress", "-n", "3", "--overwrite"], capsys)
    assert code == 0, err
    table = pd.read_parquet(events_ds / "captions.parquet")
    assert table.groupby(["kind", "sample_id"]).size().eq(3).all() and (table["kind"] == "change").sum() == 12


def test_resume_after_a_limit_captions_only_the_new_pairs(events_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = pd.read_parquet(events_ds / "plan.parquet")
    pair_table = pairs(plan)
    # The first pair whose two samples come first in the plan: a limit that covers exactly some pairs.
    rank = {s: i for i, s in enumerate(plan["sample_id"])}
    ends = sorted(max(rank[b], rank[a]) + 1 for b, a in zip(pair_table["sample_id_before"],
                                                            pair_table["sample_id_after"], strict=True))  # fmt: skip
    limit = ends[0]
    code, _, err = run(["caption", str(events_ds), "--no-progress", "--limit", str(limit)], capsys)
    assert code == 0, err
    first = pd.read_parquet(events_ds / "captions.parquet")
    done = first[first["kind"] == "change"].drop_duplicates(["sample_id_before", "sample_id_after"])
    assert len(done) == sum(e <= limit for e in ends)
    code, out, err = run(["caption", str(events_ds), "--no-progress"], capsys)
    assert code == 0, err
    assert f"{len(pair_table) - len(done)} pairs captioned ({len(done)} already done" in out
    final = pd.read_parquet(events_ds / "captions.parquet")
    kept = final.merge(first, how="inner")
    assert len(kept) == len(first)  # earlier captions kept unchanged


def test_revisit_series_pair_consecutive_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = _dataset(tmp_path, samples=3, revisits=3, aoi="bbox:5,45,15,52", start="2020-01-01", end="2024-12-31",
                  strata="continent")  # fmt: skip
    code, _, err = run(["caption", str(ds), "--no-progress", "-n", "2"], capsys)
    assert code == 0, err
    plan = pd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    change = pd.read_parquet(ds / "captions.parquet").query("kind == 'change'")
    got = set(zip(change["sample_id_before"], change["sample_id_after"], strict=True))
    expected = {
        (a, b)
        for _, rows in plan.reset_index().groupby("site_id")
        for a, b in zip(
            rows.sort_values("revisit_index")["sample_id"][:-1],
            rows.sort_values("revisit_index")["sample_id"][1:],
            strict=True,
        )  # fmt: skip
    }
    assert got == expected and len(change) == 2 * len(expected) == 2 * 2 * plan["site_id"].nunique()
    for first, last in got:
        assert plan.loc[last, "revisit_index"] == plan.loc[first, "revisit_index"] + 1
    # The synthetic series grows built-up land at each step; the captions say so where they name it.
    text = " ".join(change["caption"])
    assert re.search(r"artificial surfaces (rose|grew|increased|expanded)", text), text
    assert not re.search(r"artificial surfaces (fell|shrank|declined|decreased)", text)
    report = json.loads((ds / "report" / "captions.json").read_text())
    assert report["change"]["direction"]["disagree"] == 0


def test_evaluate_ignores_change_captions(planned_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from retrieval.conftest import build_eval_dataset

    data = build_eval_dataset(planned_ds)
    f = data.files
    args = ["evaluate", str(data.ds), "--image-embeddings", str(f["image_npy"]), "--image-ids", str(f["image_ids"]),
            "--text-embeddings", str(f["text_npy"]), "--text-ids", str(f["text_ids"]), "--level", "l2"]  # fmt: skip
    code, _, err = run(args, capsys)
    assert code == 0, err
    alone = json.loads((data.ds / "eval" / "metrics.json").read_text())
    scene = pd.read_parquet(data.ds / "captions.parquet").assign(kind="scene")
    # Change rows reuse the later sample's id and caption indexes, with no embeddings: evaluate must skip them.
    change = scene.drop_duplicates("sample_id").assign(kind="change", caption="forest fell", caption_index=0)
    pd.concat([scene, change]).to_parquet(data.ds / "captions.parquet", index=False)
    code, _, err = run(args, capsys)
    assert code == 0, err
    with_change = json.loads((data.ds / "eval" / "metrics.json").read_text())
    assert with_change["n_texts"] == alone["n_texts"] == len(scene)
    assert with_change["image_to_text"] == alone["image_to_text"]


def test_openai_sends_both_images_with_the_change_prompt(
    events_ds: Path, openai_server: OpenAIServer, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["caption", str(events_ds), "--backend", "openai", "--endpoint", openai_server.endpoint, "--model",
            "test-vision", "--no-progress", "-n", "4", "--concurrency", "2"]  # fmt: skip
    code, _, err = run(args, capsys)
    assert code == 0, err
    plan = pd.read_parquet(events_ds / "plan.parquet")
    table = pd.read_parquet(events_ds / "captions.parquet")
    change = table[table["kind"] == "change"]
    prompts = Path(__file__).parents[2] / "geosample" / "captions" / "prompts"
    md, schema = (prompts / "openai-change-v1.md").read_bytes(), (prompts / "openai-change-v1.json").read_bytes()
    assert set(change["prompt_sha256"]) == {hashlib.sha256(md + b"\0" + schema).hexdigest()}
    assert set(table.loc[table["kind"] == "scene", "prompt_sha256"]) != set(change["prompt_sha256"])
    scene_requests = [r for r in openai_server.requests if "before" not in r.facts]
    pair_requests = [r for r in openai_server.requests if "before" in r.facts]
    assert len(scene_requests) == len(plan) and len(pair_requests) == len(pairs(plan)) == 4
    image_of = {}
    for request in scene_requests:
        (image,) = request.images
        image_of[(request.facts["location"]["lat"], request.facts["time"]["planned_window"][0])] = image
    for request in pair_requests:
        facts = request.facts
        assert "describing change between two" in request.body["messages"][0]["content"]
        assert request.body["response_format"]["json_schema"]["name"] == "geosample_change_captions"
        first, last = request.images
        # The earlier image first: each equals the image sent for that sample's own scene captions.
        assert first == image_of[(facts["before"]["location"]["lat"], facts["before"]["time"]["planned_window"][0])]
        assert last == image_of[(facts["after"]["location"]["lat"], facts["after"]["time"]["planned_window"][0])]
        assert first != last and facts["event"]["type"] in {"wildfire", "flood"}
        assert facts["land_cover_change"]["l1"] and "change: the main change" in request.user_text
    assert change.groupby("sample_id").size().eq(4).all() and change["caption"].str.startswith("Change caption").all()
    assert change["usage_prompt_tokens"].notna().all()
    # A re-run is answered from nothing; a cleared table is rebuilt from the cache without requests.
    sent = len(openai_server.requests)
    (events_ds / "captions.parquet").unlink()
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert len(openai_server.requests) == sent
    pd.testing.assert_frame_equal(
        change.drop(columns="cache_hit"),
        pd.read_parquet(events_ds / "captions.parquet").query("kind == 'change'").drop(columns="cache_hit"),
    )


def _change_table(ds: Path) -> pd.DataFrame:
    """A change.parquet with exactly the contract's columns: a planted flood and burn for each event pair."""
    plan = pd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    rows = []
    for k, rec in enumerate(pairs(plan.reset_index()).itertuples(index=False)):
        flood = plan.loc[rec.sample_id_after, "event_type"] == "flood"
        shares = {"water_gain": 0.47 if flood else 0.0, "water_loss": 0.0, "vegetation_loss": 0.44 if flood else 0.3,
                  "vegetation_gain": 0.01, "burned": None if flood else 0.28, "snow_ice_change": 0.0}  # fmt: skip
        west = {c: (2 * v if c in ("water_gain", "vegetation_loss") else v) if v is not None else None
                for c, v in shares.items()}  # fmt: skip
        east = {c: (0.0 if c in ("water_gain", "vegetation_loss") else v) for c, v in shares.items()}
        quadrants = {"nw": west, "sw": west, "ne": east, "se": east}
        rows.append({"site_id": rec.site_id, "sample_id_before": rec.sample_id_before,
                     "sample_id_after": rec.sample_id_after, "kind": "event", **shares,
                     "valid_fraction": 0.93 - k / 100,
                     "mask": f"change/{rec.site_id}/{rec.sample_id_before}__{rec.sample_id_after}.tif",
                     "quadrants": json.dumps({q: {c: v for c, v in d.items() if v is not None}
                                              for q, d in quadrants.items()})})  # fmt: skip
    table = pd.DataFrame(rows)
    table["burned"] = table["burned"].astype("float64")
    table.to_parquet(ds / "change.parquet", index=False)
    return table


def test_stage_writes_change_captions_from_change_parquet(events_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    observed = _change_table(events_ds).set_index(["sample_id_before", "sample_id_after"])
    code, out, err = run(["caption", str(events_ds), "--no-progress", "--check"], capsys)
    assert code == 0, err
    table = pd.read_parquet(events_ds / "captions.parquet")
    change = table[table["kind"] == "change"]
    assert len(change) == 5 * len(observed) and set(change["evidence"]) == {"change"}
    plan = pd.read_parquet(events_ds / "plan.parquet").set_index("sample_id")
    for (first, last), rows in change.groupby(["sample_id_before", "sample_id_after"]):
        row = observed.loc[(first, last)]
        text = " ".join(rows["caption"])
        if plan.loc[last, "event_type"] == "flood":
            # The issue's example: water appeared on about half of the chip, mostly in the west, after the flood.
            assert re.search(r"open water appeared on about 45% of the clear pixels, mostly in the (west|western half)",
                             text), text  # fmt: skip
            assert "burned" not in text  # no swir22/nir: burned is null, so nothing is said about it
        else:
            assert "about 30% of the clear pixels burned" in text and "open water appeared on about" not in text
        assert "little chang" not in text and " 9 May 2012" not in text
        for m in re.finditer(r"(\d+)% of the pixels (?:were )?clear in both", text):
            assert abs(int(m.group(1)) / 100 - row["valid_fraction"]) <= 0.025 + 1e-9, text
    report = json.loads((events_ds / "report" / "captions.json").read_text())["change"]
    assert report["evidence"] == {"change": len(change)}
    assert report["observed"]["checked"] >= 8 and report["observed"]["disagree"] == 0
    assert "change captions: 4 pairs (change 20)" in out


def test_stage_writes_nothing_for_unobservable_pairs_and_counts_them(
    events_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both phases labelled from one static map year: the labels cannot show change, and there is no change.parquet.
    labels = pd.read_parquet(events_ds / "labels.parquet").assign(label_year=2021)
    labels.to_parquet(events_ds / "labels.parquet", index=False)
    code, out, err = run(["caption", str(events_ds), "--no-progress"], capsys)
    assert code == 0, err
    table = pd.read_parquet(events_ds / "captions.parquet")
    assert set(table["kind"]) == {"scene"}
    report = json.loads((events_ds / "report" / "captions.json").read_text())["change"]
    assert report["unobservable_pairs"]["not_written"] == 4
    assert report["unobservable_pairs"]["reasons"] == {"both samples are labelled from the same 2021 map": 4}
    code, out, err = run(["caption", str(events_ds), "--no-progress"], capsys)
    assert code == 0 and "nothing to do" in out, err

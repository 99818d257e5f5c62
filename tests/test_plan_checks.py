"""The plan validator: every stage refuses a plan no stage can use, with one line, before it writes anything."""

from __future__ import annotations

import math
import os
import string
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from untrusted import assert_refused, assert_untouched, run_cli, tree

from geosample._dataset import read_plan
from geosample._plan_checks import MAX_CHIP_PIXELS, check_pixel_budget, plan_problems, valid_h3_cells
from geosample.errors import ConfigError, DataQualityWarning

Edit = Callable[[gpd.GeoDataFrame], gpd.GeoDataFrame]


def _set(column: str, value: object, row: int = 0) -> Edit:
    def edit(plan: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        plan[column] = plan[column].astype(object)
        plan.at[row, column] = value
        return plan

    return edit


def _duplicate(plan: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    plan.at[1, "sample_id"] = plan.at[0, "sample_id"]
    return plan


BAD_PLANS: list[tuple[str, Edit, tuple[str, ...]]] = [
    ("traversal id", _set("sample_id", "../../../ESCAPED"), ("row 0", "path separator", "A-Z a-z 0-9")),
    ("absolute id", _set("sample_id", "/tmp/ESCAPED"), ("path separator",)),
    ("hidden id", _set("sample_id", ".chips.parquet.x.tmp"), ("starts with '.'",)),
    ("long id", _set("sample_id", "x" * 300), ("300 characters", "at most 128")),
    ("odd character", _set("sample_id", "a b"), ("contains ' '",)),
    ("null id", _set("sample_id", None), ("sample_id is missing",)),
    ("duplicated id", _duplicate, ("row 1", "repeats row 0")),
    ("NaN lon", _set("lon", float("nan")), ("lon", "not a finite number")),
    ("lat out of range", _set("lat", 95.0), ("lat 95.0 is outside -90..90",)),
    ("unknown EPSG", _set("epsg", 999999), ("epsg 999999",)),
    ("geographic EPSG", _set("epsg", 4326), ("not a projected CRS",)),
    ("negative chip", _set("chip_size_m", -5.0), ("chip_size_m -5",)),
    ("huge chip", _set("chip_size_m", 1e9), ("chip_size_m 1e+09",)),
    ("invalid h3", _set("h3", "zzz"), ("not a valid H3 cell",)),
    ("start after end", _set("start_datetime", pd.Timestamp("2090-01-01", tz="UTC")), ("is after end_datetime",)),
    ("no rows", lambda p: p.iloc[:0], ("holds no samples",)),
    ("missing column", lambda p: p.drop(columns="epsg"), ("lacks column(s) epsg",)),
]
STAGES = [
    ["fetch", "{ds}", "--stac", "http://127.0.0.1:9", "--collection", "c"],
    ["label", "{ds}", "--no-progress"],
    ["caption", "{ds}", "--no-progress"],
    ["export", "{ds}", "-f", "webdataset"],
    ["evaluate", "{ds}"],
    ["stats", "{ds}"],
]


def _write(ds: Path, edit: Edit) -> None:
    plan = gpd.read_parquet(ds / "plan.parquet")
    edit(plan).to_parquet(ds / "plan.parquet", index=False)


@pytest.mark.parametrize(
    ("edit", "words", "stage"),
    [(edit, words, STAGES[i % len(STAGES)]) for i, (_, edit, words) in enumerate(BAD_PLANS)],  # each stage meets some
    ids=[c[0] for c in BAD_PLANS],
)
def test_a_bad_plan_is_refused_before_anything_is_written(
    tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Edit, words: tuple[str, ...],
    stage: list[str],
) -> None:  # fmt: skip
    _write(tiny_ds, edit)
    before = tree(tmp_path)
    code, out, err = run_cli([a.format(ds=tiny_ds) for a in stage], capsys)
    line = assert_refused(code, err, f"{tiny_ds}/plan.parquet", *words)
    assert "fix the plan or make a new one" in line
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("stage", STAGES, ids=[s[0] for s in STAGES])
def test_every_stage_validates_the_plan(tiny_ds: Path, capsys: pytest.CaptureFixture[str], stage: list[str]) -> None:
    _write(tiny_ds, _set("sample_id", "a/b", row=2))  # an id with '/' used to crash label
    before = tree(tiny_ds)
    code, _, err = run_cli([a.format(ds=tiny_ds) for a in stage], capsys)
    assert_refused(code, err, "row 2", "'a/b'", "path separator")
    assert tree(tiny_ds) == before


def test_empty_h3_is_recomputed_with_a_warning(tiny_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = gpd.read_parquet(tiny_ds / "plan.parquet")
    original = plan["h3"].copy()
    plan["h3"] = plan["h3"].astype(object)
    plan.loc[[0, 2], "h3"] = ["", None]
    plan.to_parquet(tiny_ds / "plan.parquet", index=False)
    with pytest.warns(DataQualityWarning, match="2 empty h3 value"):
        read = read_plan(tiny_ds)
    centres = zip(plan.lon, plan.lat, plan.h3_res, strict=True)
    expected = [h3.latlng_to_cell(lat, lon, int(r)) for lon, lat, r in centres]
    assert read["h3"].tolist() == expected == original.tolist()  # the plan's cells are those of their centres
    code, _, err = run_cli(["label", tiny_ds, "--no-progress", "-q"], capsys)
    assert code == 0 and "recomputed from lon/lat" in err, err
    assert (tiny_ds / "labels.parquet").exists()


def test_plan_problems_lists_every_problem_for_validate(tiny_ds: Path) -> None:
    plan = gpd.read_parquet(tiny_ds / "plan.parquet")
    plan.loc[0, "lon"] = np.inf
    plan.loc[1, "chip_size_m"] = 0.0
    plan["inclusion_prob"] = 0.5  # columns other engineers add pass through
    plan["replaces"] = None
    problems = plan_problems(plan)
    assert [(p.row, p.column) for p in problems] == [(0, "lon"), (1, "chip_size_m")]
    assert str(problems[0]).startswith(f"row 0 (sample_id {plan.sample_id[0]!r}): lon inf")
    assert plan_problems(plan.iloc[[2]]) == []


def test_many_rows_breaking_one_rule_are_counted(tiny_ds: Path) -> None:
    plan = gpd.read_parquet(tiny_ds / "plan.parquet")
    big = pd.concat([plan] * 20, ignore_index=True)  # 60 rows, every id three times ... twenty times
    problems = plan_problems(big, rows_shown=5)
    assert len(problems) == 6 and problems[-1].message == "57 rows in all break the rule above on sample_id"


def _independently_safe(text: str) -> bool:
    """The documented rule, written out without the regex under test."""
    allowed = set(string.ascii_letters + string.digits + "._+-")
    return 1 <= len(text) <= 128 and text[0] in string.ascii_letters + string.digits and set(text) <= allowed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("aZ09._+-/\\ é\x00:"), min_size=0, max_size=140), min_size=3,
                max_size=3, unique=True))  # fmt: skip
def test_ids_are_refused_exactly_when_the_rule_says(ids: list[str]) -> None:
    plan = pd.DataFrame({
        "sample_id": ids, "lon": [1.0] * 3, "lat": [1.0] * 3, "epsg": [32631] * 3, "chip_size_m": [100.0] * 3,
        "start_datetime": pd.Timestamp("2020-01-01", tz="UTC"), "end_datetime": pd.Timestamp("2020-02-01", tz="UTC"),
    })  # fmt: skip
    flagged = {p.row for p in plan_problems(plan) if p.column == "sample_id"}
    folded = [i.lower() for i in ids]
    case_clash = {i for i in range(3) if folded[i] in folded[:i] and _independently_safe(ids[i])}
    assert flagged == {i for i in range(3) if not _independently_safe(ids[i])} | case_clash


def test_the_pixel_budget_is_checked_before_any_request(
    tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(tmp_path)
    code, _, err = run_cli(["fetch", tiny_ds, "--stac", "http://127.0.0.1:9", "--collection", "c",
                            "--resolution", "0.001"], capsys)  # fmt: skip
    line = assert_refused(code, err, "2560000 × 2560000 pixels", "--resolution 0.32 or coarser")
    assert "127.0.0.1" not in line  # refused before the (unreachable) catalogue was asked
    assert_untouched(tmp_path, before)
    side = math.isqrt(MAX_CHIP_PIXELS)
    plan = gpd.read_parquet(tiny_ds / "plan.parquet")
    check_pixel_budget(plan, 2560 / side)  # exactly the limit: fine
    with pytest.raises(ConfigError):
        check_pixel_budget(plan, 2560 / (side + 1))


def _h3_says(text: str) -> bool:
    try:
        return bool(text) and bool(h3.is_valid_cell(text))
    except (ValueError, TypeError, OverflowError):
        return False


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-89.9, 89.9), st.floats(-180, 180), st.integers(0, 15), st.integers(-1, 63)),
        min_size=1, max_size=50,
    ),
    st.lists(st.text(alphabet="0123456789abcdefABCDEFxé", max_size=18), max_size=10),
)  # fmt: skip
def test_vectorised_h3_validity_agrees_with_h3(points: list[tuple[float, float, int, int]], junk: list[str]) -> None:
    """Cells with one bit flipped (or none, -1) at every resolution, and junk text: the same verdict as h3-py's."""
    cells = []
    for lat, lon, res, bit in points:
        index = h3.str_to_int(h3.latlng_to_cell(lat, lon, res))
        cells.append(f"{index ^ (1 << bit) if bit >= 0 else index:x}")
    cells += junk
    assert valid_h3_cells(np.array(cells, dtype=object)).tolist() == [_h3_says(c) for c in cells]


@pytest.mark.parametrize("chips_link_out", [False, True])
def test_folder_test_agrees_with_resolving_both_folders_per_path(tmp_path: Path, chips_link_out: bool) -> None:
    """The one-pass checker answers as ``is_inside`` of DS and of DS/chips, path by path."""
    from geosample._paths import folder_test, in_folder, is_inside

    ds, outside = tmp_path / "DS", tmp_path / "elsewhere"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "a.tif").write_bytes(b"")
    ds.mkdir()
    if chips_link_out:
        (ds / "chips").symlink_to(outside)
    else:
        (ds / "chips" / "x").mkdir(parents=True)
        (ds / "chips" / "x" / "a.tif").write_bytes(b"")
        (ds / "chips" / "out").symlink_to(outside / "x")
        (ds / "chips" / "x" / "loop").symlink_to(ds / "chips" / "x" / "loop")
        (ds / "chips" / "x" / "away.tif").symlink_to(outside / "x" / "a.tif")  # a file link out of DS
        (ds / "chips" / "x" / "same.tif").symlink_to(ds / "chips" / "x" / "a.tif")  # and one that stays
        (ds / "chips" / "x" / "up").symlink_to(ds / "labels")  # a folder link to DS/labels
    (ds / "labels").mkdir()
    candidates = [
        "chips", "chips/x/a.tif", "chips/x/../x/a.tif", "chips/out/a.tif", "chips/missing/b.tif",
        "chips/../labels", "labels/a.tif", "../elsewhere/x/a.tif", str(outside / "x" / "a.tif"),
        "chips/x/loop", "chips/x/a\x00.tif", "", None, 3,
        # paths sharing folders (each resolved once), file links, and names that are not plain
        "chips/x/away.tif", "chips/x/same.tif", "chips/x/a.tif", "chips/x/up/a.tif", "chips/x/up", "chips/x/",
        "chips/x/.", "chips/x/..", "chips/x/loop/a.tif", "chips/out/", "chips/out/b.tif", "chips/x\x00/a.tif",
    ]  # fmt: skip
    test = folder_test(ds, "chips")
    for relative in candidates:
        expected = (
            isinstance(relative, str) and bool(relative) and not os.path.isabs(relative)
            and is_inside(ds, ds / relative) and is_inside(ds / "chips", ds / relative)
        )  # fmt: skip
        assert test(relative) == in_folder(ds, relative, "chips") == expected, relative

"""Splits: spatially disjoint by H3 parent cell, whole sites, stratified, deterministic."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.errors import ConfigError, DatasetError
from geosample.export.splits import SPLITS, h3_parents, parse_fractions, split_cells, split_samples

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


def _synthetic_plan(rng: np.random.Generator, n_strata: int = 4, sites: int = 30, per_parent: int = 3) -> pd.DataFrame:
    """Sites in distinct res-5 parents (``per_parent`` sites share one), two chip sizes per site."""
    rows = []
    parents = set()
    while len(parents) < n_strata * sites // per_parent:
        cell = h3.latlng_to_cell(rng.uniform(-50, 60), rng.uniform(-170, 170), 5)
        parents.add(cell)
    for p_index, parent in enumerate(sorted(parents)):
        stratum = f"S{p_index % n_strata}"
        for child in sorted(h3.cell_to_children(parent, 9))[:per_parent]:
            for size in (1000, 2000):
                rows.append({"sample_id": f"{child}-{size}m", "site_id": child, "h3": child, "stratum": stratum})
    return pd.DataFrame(rows)


def test_split_samples_keeps_parent_cells_and_sites_whole_and_stratifies() -> None:
    plan = _synthetic_plan(np.random.default_rng(3))
    split = split_samples(plan, (0.7, 0.2, 0.1), res=5, seed=11)
    parents = plan["h3"].map(lambda c: h3.cell_to_parent(c, 5))
    assert (split.groupby(parents).nunique() == 1).all()
    assert (split.groupby(plan["site_id"]).nunique() == 1).all()
    cell_size = 6  # three sites of two samples in every parent cell
    for _, group in split.groupby(plan["stratum"]):
        counts = group.value_counts().reindex(SPLITS, fill_value=0).to_numpy()
        assert np.abs(counts - np.array([0.7, 0.2, 0.1]) * len(group)).max() < 1.5 * cell_size
    assert split.equals(split_samples(plan, (0.7, 0.2, 0.1), res=5, seed=11))
    assert len({tuple(split_samples(plan, (0.7, 0.2, 0.1), res=5, seed=s)) for s in range(5)}) > 1


def test_split_samples_at_a_coarser_resolution_merges_cells() -> None:
    plan = _synthetic_plan(np.random.default_rng(4), per_parent=1)
    split = split_samples(plan, (0.5, 0.25, 0.25), res=2, seed=0)
    coarse = plan["h3"].map(lambda c: h3.cell_to_parent(c, 2))
    assert (split.groupby(coarse).nunique() == 1).all()


def test_split_of_the_real_plan(planned_ds: Path) -> None:
    plan = gpd.read_parquet(planned_ds / "plan.parquet")
    split = split_samples(plan, res=5, seed=0)
    assert split.index.equals(plan.index) and set(split) <= set(SPLITS)
    counts = split.value_counts()
    assert abs(counts.get("train", 0) - 0.8 * len(plan)) < 1.5
    assert abs(counts.get("test", 0) - 0.1 * len(plan)) < 1.5


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

"""Apportionment and allocation rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.errors import ConfigError
from geosample.sampling.allocation import apportion, stratum_weights
from geosample.sampling.plan import apportion_preferring


@settings(max_examples=200, deadline=None, database=None)
@given(
    total=st.integers(0, 10_000),
    weights=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60),
    seed=st.integers(0, 1000),
)
def test_apportion_sums_and_stays_within_one_of_the_exact_share(total: int, weights: list[float], seed: int) -> None:
    w = np.array(weights)
    out = apportion(total, w, np.random.default_rng(seed))
    if w.sum() <= 0:
        assert out.sum() == 0
        return
    assert out.sum() == total
    exact = total * w / w.sum()
    assert (np.abs(out - exact) < 1 + 1e-9).all()
    assert (out[w == 0] == 0).all()


@settings(max_examples=100, deadline=None, database=None)
@given(total=st.integers(0, 5000), n=st.integers(1, 400), seed=st.integers(0, 1000))
def test_equal_weights_differ_by_at_most_one(total: int, n: int, seed: int) -> None:
    out = apportion(total, np.ones(n), np.random.default_rng(seed))
    assert out.max() - out.min() <= 1 and out.sum() == total


@settings(max_examples=100, deadline=None, database=None)
@given(total=st.integers(10, 5000), n=st.integers(2, 50), seed=st.integers(0, 1000))
def test_preferring_keeps_what_strata_already_have(total: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    have = apportion(total // 2, np.ones(n), rng)
    out = apportion_preferring(total, np.ones(n), have, rng)
    assert out.sum() == total and (out >= have).all() and out.max() - out.min() <= 1


def test_rules() -> None:
    area = np.array([100.0, 400.0, 0.0])
    labels = [("a",), ("b",), ("c",)]
    np.testing.assert_array_equal(stratum_weights("equal", labels, ["x"], area), [1, 1, 0])
    np.testing.assert_array_equal(stratum_weights("proportional", labels, ["x"], area), area)
    np.testing.assert_array_equal(stratum_weights("sqrt", labels, ["x"], area), [10, 20, 0])


def test_csv_weights(tmp_path) -> None:  # noqa: ANN001
    labels = [("Asia", "B"), ("Asia", "C"), ("Europe", "C")]
    (tmp_path / "w.csv").write_text("continent,weight\nAsia,2\nEurope,0.5\n")
    w = stratum_weights(str(tmp_path / "w.csv"), labels, ["continent", "climate"], np.ones(3))
    np.testing.assert_array_equal(w, [2, 2, 0.5])
    (tmp_path / "s.csv").write_text("stratum,weight\nAsia/C,3\n")
    w = stratum_weights(str(tmp_path / "s.csv"), labels, ["continent", "climate"], np.ones(3))
    np.testing.assert_array_equal(w, [0, 3, 0])
    (tmp_path / "bad.csv").write_text("continent,weight\nAsia,-1\n")
    with pytest.raises(ConfigError, match="non-negative"):
        stratum_weights(str(tmp_path / "bad.csv"), labels, ["continent", "climate"], np.ones(3))

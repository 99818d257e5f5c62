"""The draw's bookkeeping of taken cells and parent-cell counts, against numpy's set operations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.sampling import _h3, sampler

# H3-like values: a shared high part and random low bits, as site cells of one region are.
cells = st.lists(st.integers(0, 2**20), max_size=300).map(
    lambda v: np.uint64(0x8928308280FFFFF) - np.asarray(v, dtype=np.uint64) * np.uint64(8)
)


@settings(max_examples=60, deadline=None, database=None)
@given(rounds=st.lists(cells, min_size=1, max_size=8), query=cells)
def test_taken_cells_and_parent_counts_match_numpy(rounds: list[np.ndarray], query: np.ndarray) -> None:
    """Round after round of new cells: the sorted set and the counts equal np.union1d / np.unique's."""
    taken = sampler._sorted_unique(np.empty(0, dtype=np.uint64))
    keys, counts = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    everything = np.empty(0, dtype=np.uint64)
    for values in rounds:
        new = np.setdiff1d(np.unique(values), everything)  # _insert_sorted takes cells not yet taken
        taken = sampler._insert_sorted(taken, new[::-1])
        everything = np.union1d(everything, new)
        keys, counts = sampler._add_counts(keys, counts, values)
        np.testing.assert_array_equal(taken, everything)
    expected_keys, expected_counts = np.unique(np.concatenate(rounds), return_counts=True)
    np.testing.assert_array_equal(keys, expected_keys)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(sampler._in_sorted(taken, query), np.isin(query, everything))
    np.testing.assert_array_equal(sampler._sorted_unique(np.concatenate([query, query])), np.unique(query))


def test_sites_refuse_a_taken_cell_and_a_full_parent() -> None:
    """A candidate is fresh only in an untaken cell whose parent has room; accepted ones are then taken."""
    rng = np.random.default_rng(0)
    parent = np.array([0x85283473FFFFFFF], dtype=np.uint64)  # a res-5 cell
    children = np.unique(_h3.random_descendants(np.repeat(parent, 50), 7, rng))[:6]
    used = (children[:1], np.zeros(1, dtype=np.int64))
    sites = sampler._Sites(5, 3, np.array([10]), used)
    fresh, kept = sites.offer(children, np.zeros(children.size, dtype=np.int64), rng)
    assert not fresh[0] and not kept[0]  # already taken
    assert kept.sum() == 2  # the parent holds 3 sites, one of them used
    assert sites.parent_counts.tolist() == [3]
    np.testing.assert_array_equal(sites.taken, np.sort(np.concatenate([children[:1], children[kept]])))
    again, _ = sites.offer(children, np.zeros(children.size, dtype=np.int64), rng)
    assert not again.any()  # every cell taken or its parent full

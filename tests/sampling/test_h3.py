"""The vectorised H3 index arithmetic agrees with h3-py."""

from __future__ import annotations

import h3
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.sampling import _h3

RES0 = sorted(h3.get_res0_cells())
PENTAGONS = {res: sorted(h3.get_pentagons(res)) for res in range(16)}


@settings(max_examples=60, deadline=None, database=None)
@given(
    start=st.integers(0, 8),
    depth=st.integers(0, 7),
    seed=st.integers(0, 2**32 - 1),
    pentagon=st.booleans(),
)
def test_random_descendants_are_valid_children(start: int, depth: int, seed: int, pentagon: bool) -> None:
    rng = np.random.default_rng(seed)
    pool = PENTAGONS[start] if pentagon else [h3.cell_to_center_child(c, start) for c in RES0]
    parents = np.array([h3.str_to_int(c) for c in rng.choice(pool, 50)], dtype=np.uint64)
    children = _h3.random_descendants(parents, start + depth, rng)
    for p, c in zip(parents.tolist(), children.tolist(), strict=True):
        assert h3.api.basic_int.is_valid_cell(c)
        assert h3.api.basic_int.get_resolution(c) == start + depth
        assert h3.api.basic_int.cell_to_parent(c, start) == p
    np.testing.assert_array_equal(_h3.parent(children, start), parents)


def test_every_child_of_a_pentagon_is_reachable_and_none_is_deleted() -> None:
    rng = np.random.default_rng(0)
    for pentagon in PENTAGONS[3]:
        cells = _h3.random_descendants(np.full(600, h3.str_to_int(pentagon), dtype=np.uint64), 4, rng)
        expected = {h3.str_to_int(c) for c in h3.cell_to_children(pentagon, 4)}
        assert set(cells.tolist()) == expected


def test_children_are_drawn_evenly() -> None:
    rng = np.random.default_rng(1)
    parent = h3.str_to_int(h3.latlng_to_cell(10, 20, 4))
    cells = _h3.random_descendants(np.full(70_000, parent, dtype=np.uint64), 5, rng)
    counts = np.unique(cells, return_counts=True)[1]
    assert counts.size == 7
    assert counts.min() > 9_500 and counts.max() < 10_500


def test_centres_and_points_round_trip() -> None:
    cells = np.array(
        [h3.str_to_int(h3.latlng_to_cell(lat, lon, 9)) for lat, lon in [(0, 0), (-45, 170), (80, -10)]], dtype=np.uint64
    )
    lon, lat = _h3.centres(cells)
    np.testing.assert_array_equal(_h3.cells_from_points(lon, lat, 9), cells)
    assert list(_h3.to_hex(cells)) == [h3.int_to_str(int(c)) for c in cells]

"""The vectorised H3 index arithmetic agrees with h3-py."""

from __future__ import annotations

import itertools

import h3
import mpmath
import numpy as np
import pytest
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


def _h3_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.array([h3.api.basic_int.cell_to_latlng(c) for c in cells.tolist()]).reshape(-1, 2)
    return ref[:, 1], ref[:, 0]


def _assert_same_points(lon: np.ndarray, lat: np.ndarray, ref_lon: np.ndarray, ref_lat: np.ndarray) -> None:
    # 1e-10 degrees is about 11 µm; the two differ by a few 1e-12 (rounding in a different order).
    np.testing.assert_allclose(lat, ref_lat, rtol=0, atol=1e-10)
    east = ((lon - ref_lon + 180) % 360 - 180) * np.cos(np.radians(ref_lat))
    np.testing.assert_allclose(east, 0, rtol=0, atol=1e-10)


@settings(max_examples=40, deadline=None, database=None)
@given(res=st.integers(0, 15), seed=st.integers(0, 2**32 - 1))
def test_centres_agree_with_h3_at_every_resolution(res: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Every base cell, so every face, every face edge the descendants overrun, and the pentagons.
    parents = np.repeat(np.array([h3.str_to_int(c) for c in RES0], dtype=np.uint64), 20)
    cells = _h3.random_descendants(parents, res, rng)
    _assert_same_points(*_h3.centres(cells), *_h3_centres(cells))


def test_centres_of_every_cell_below_the_pentagons() -> None:
    # Pentagons' descendants are rotated (leading digit 5), turned about the pentagon (leading
    # digit 4) and may overrun two faces: all of them, down to resolution 4 (Class II) and 5 (III).
    for pentagon in PENTAGONS[0]:
        for res in (1, 2, 3, 4, 5):
            cells = np.array([h3.str_to_int(c) for c in h3.cell_to_children(pentagon, res)], dtype=np.uint64)
            _assert_same_points(*_h3.centres(cells), *_h3_centres(cells))


def test_centres_of_mixed_resolutions_across_blocks(monkeypatch) -> None:
    monkeypatch.setattr(_h3, "_BLOCK", 64)
    rng = np.random.default_rng(3)
    parents = np.array([h3.str_to_int(c) for c in rng.choice(RES0, 500)], dtype=np.uint64)
    cells = np.concatenate([_h3.random_descendants(parents[i::5], res, rng) for i, res in enumerate((0, 4, 9, 12, 15))])
    cells = cells[rng.permutation(cells.size)]
    lon, lat = _h3.centres(cells)
    _assert_same_points(lon, lat, *_h3_centres(cells))
    empty = _h3.centres(np.empty(0, dtype=np.uint64))
    assert empty[0].shape == empty[1].shape == (0,)


def _spherical_area_km2(boundary: list[tuple[float, float]]) -> float:
    """Area of the geodesic polygon through ``boundary`` (lat, lng degrees) on H3's sphere, to 40 digits."""
    with mpmath.workdps(40):
        points = []
        for lat, lng in boundary:
            phi, lam = mpmath.radians(lat), mpmath.radians(lng)
            points.append(
                mpmath.matrix([mpmath.cos(phi) * mpmath.cos(lam), mpmath.cos(phi) * mpmath.sin(lam), mpmath.sin(phi)])
            )
        # A fan of triangles from the first vertex (Eriksson's formula for each one's excess).
        total = mpmath.mpf(0)
        o = points[0]
        for p, q in itertools.pairwise(points[1:]):
            det = mpmath.det(mpmath.matrix([[o[i], p[i], q[i]] for i in range(3)]))
            dots = 1 + sum(o[i] * p[i] + p[i] * q[i] + q[i] * o[i] for i in range(3))
            total += 2 * mpmath.atan2(det, dots)
        return float(abs(total) * mpmath.mpf("6371.007180918475") ** 2)


@pytest.mark.parametrize("res", [1, 4, 9, 12, 15])
def test_cell_areas_match_a_40_digit_computation_from_h3s_boundaries(res: int) -> None:
    rng = np.random.default_rng(res)
    cells = _h3.random_descendants(
        np.array([h3.str_to_int(c) for c in rng.choice(RES0, 12)], dtype=np.uint64), res, rng
    )
    cells = np.concatenate([cells, np.array([h3.str_to_int(PENTAGONS[res][0])], dtype=np.uint64)])
    got = _h3.cell_areas_km2(cells)
    exact = np.array([_spherical_area_km2(h3.cell_to_boundary(h3.int_to_str(c))) for c in cells.tolist()])
    # The boundary's degrees are rounded to 1e-16 radians: 3e-9 of the area of a 0.9 m² cell at res 15.
    np.testing.assert_allclose(got, exact, rtol=2e-8)


@settings(max_examples=30, deadline=None, database=None)
@given(res=st.integers(0, 15), seed=st.integers(0, 2**32 - 1))
def test_cell_areas_agree_with_h3_everywhere(res: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    parents = np.repeat(np.array([h3.str_to_int(c) for c in RES0], dtype=np.uint64), 10)
    pentagons = np.array([h3.str_to_int(p) for p in PENTAGONS[res]], dtype=np.uint64)
    cells = np.concatenate([_h3.random_descendants(parents, res, rng), pentagons])
    ref = np.array([h3.api.basic_int.cell_area(c, "km^2") for c in cells.tolist()])
    got = _h3.cell_areas_km2(cells)
    # h3's own sum drifts by up to 4e-7 of a res-15 cell's area (see the 40-digit test above).
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # Cells beside a face's edge, and pentagons, are h3's own figures.
    left = np.isnan(_h3._hexagon_areas(cells, res))
    np.testing.assert_array_equal(got[left], ref[left])


def test_the_tables_pentagons_are_h3s() -> None:
    expected = sorted({h3.get_base_cell_number(p) for p in h3.get_pentagons(0)})
    assert _h3._PENTAGON_BASE_CELLS.tolist() == expected

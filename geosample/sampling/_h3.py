"""Vectorised H3 index arithmetic on uint64 arrays.

The sampler never enumerates fine cells: it walks down from a coarse cell to
a random descendant by writing random digits into the index bits, which costs
the same at resolution 9 as at 15. Bit layout (H3 v4 spec): bits 52–55 hold
the resolution, 45–51 the base cell, and each resolution r in 1..15 has a
3-bit digit at bit 3·(15 − r); digits below the resolution are 7.
"""

from __future__ import annotations

import itertools

import h3
import numpy as np
from h3 import _cy

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT
_BASE_SHIFT = np.uint64(45)
_BASE_MASK = np.uint64(0x7F)
_PENTAGON_BASE_CELLS = np.array(sorted({h3.get_base_cell_number(p) for p in h3.get_pentagons(0)}))


def _digit_shift(res: int) -> np.uint64:
    return np.uint64(3 * (15 - res))


def resolution(cells: np.ndarray) -> np.ndarray:
    """Resolution of each cell."""
    return ((cells & _RES_MASK) >> _RES_SHIFT).astype(np.int8)


def parent(cells: np.ndarray, res: int) -> np.ndarray:
    """Ancestor of each cell at ``res`` (cells must be at ``res`` or finer)."""
    cells = np.asarray(cells, dtype=np.uint64)
    unused = np.uint64((1 << (3 * (15 - res))) - 1)  # digits res+1..15 set to 7
    return (cells & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT) | unused


def random_descendants(cells: np.ndarray, res: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random descendant at ``res`` for each cell.

    Each child digit is drawn uniformly from the valid ones, so a descendant
    is chosen with probability close to its share of the parent's area (H3
    children have near-equal areas). Below a pentagon, digit 1 is the deleted
    K-axis sub-sequence and is never drawn.
    """
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size == 0:
        return cells
    start = resolution(cells)
    if np.any(start > res):
        raise ValueError(f"cells finer than resolution {res}")
    base = ((cells >> _BASE_SHIFT) & _BASE_MASK).astype(np.int64)
    # A cell is still "on the pentagon" while every digit so far is 0.
    on_pentagon = np.isin(base, _PENTAGON_BASE_CELLS)
    for r in range(1, int(start.max()) + 1):
        digit = (cells >> _digit_shift(r)) & np.uint64(7)
        on_pentagon &= (r > start) | (digit == 0)
    out = (cells & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT)
    uniform_start = bool((start == start[0]).all())  # then every digit below it is drawn (the usual case)
    if uniform_start:  # digits below the start all ones (7, as in a valid index), so that xor can set them
        out |= np.uint64((1 << (3 * (15 - int(start[0])))) - 1)
    for r in range(int(start.min()) + 1, res + 1):
        active = start < r
        digit = rng.integers(0, 7, size=cells.size, dtype=np.uint64)
        # Below a pentagon draw from {0, 2, 3, 4, 5, 6}: shift 1..5 up by one.
        pent_digit = rng.integers(0, 6, size=cells.size, dtype=np.uint64)
        pentagon = np.flatnonzero(on_pentagon)
        if pentagon.size:
            on_pent = pent_digit[pentagon]
            digit[pentagon] = np.where(on_pent == 0, on_pent, on_pent + np.uint64(1))
        shift = _digit_shift(r)
        if uniform_start:  # the digit is all ones (7) below the cell's resolution: xor in its complement
            out ^= (np.uint64(7) ^ digit) << shift
        else:
            cleared = out & ~(np.uint64(7) << shift)
            out = np.where(active, cleared | (digit << shift), out)
        if pentagon.size:
            on_pentagon &= ~active | (digit == 0)
    return out


def centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre longitude and latitude (degrees) of each cell."""
    # h3's Cython entry point, without the Python wrapper's argument checks.
    flat = np.fromiter(
        itertools.chain.from_iterable(map(_cy.cell_to_latlng, cells.tolist())), dtype=np.float64, count=2 * len(cells)
    ).reshape(-1, 2)
    return flat[:, 1].copy(), flat[:, 0].copy()


def cells_from_points(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """The cell at ``res`` that holds each point."""
    to_cell = h3.api.basic_int.latlng_to_cell
    return np.fromiter(
        (to_cell(y, x, res) for x, y in zip(lon.tolist(), lat.tolist(), strict=True)),
        dtype=np.uint64,
        count=len(lon),
    )


def to_hex(cells: np.ndarray) -> np.ndarray:
    """H3 hex strings (object array)."""
    return np.array([format(c, "x") for c in cells.tolist()], dtype=object)


def cell_areas_km2(cells: np.ndarray) -> np.ndarray:
    """Exact area of each cell in km²."""
    area = h3.api.basic_int.cell_area
    return np.fromiter((area(c, "km^2") for c in cells.tolist()), dtype=np.float64, count=len(cells))


def mean_cell_area_km2(res: int) -> float:
    """Average area of a cell at ``res`` in km² (H3's published figure)."""
    return float(h3.average_hexagon_area(res, "km^2"))

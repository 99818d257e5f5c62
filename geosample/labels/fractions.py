"""Counting source classes on a chip grid: whole chip and layout regions in one pass.

The hot path of ``geosample label``: one ``numpy.bincount`` per chip over
``value + block * n_values``, where ``block`` numbers a 4 x 4 cut of the chip
at a quarter, half and three quarters of each side. Those 16 blocks add up to
the four quadrants (``nw``, ``ne``, ``sw``, ``se``, which tile the chip) and
to the central square (``centre``, the middle half of each side); the whole
chip's counts are the sum of the quadrants'. This costs about one plain
``bincount`` of the chip.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

REGIONS = ("nw", "ne", "sw", "se", "centre")
"""Layout regions, in the order of the rows of :func:`count_regions`'s result."""


@lru_cache(maxsize=32)
def _block_keys(height: int, width: int, n_values: int) -> np.ndarray:
    """``block * n_values`` per pixel, for the 4 x 4 blocks cut at 1/4, 1/2 and 3/4 of each side (integer cuts)."""
    rows = np.searchsorted([height // 4, height // 2, height - height // 4], np.arange(height), side="right")
    cols = np.searchsorted([width // 4, width // 2, width - width // 4], np.arange(width), side="right")
    keys = ((rows[:, None] * 4 + cols[None, :]) * n_values).astype(np.uint16)
    keys.setflags(write=False)
    return keys


def count_regions(values: np.ndarray, n_values: int) -> np.ndarray:
    """Pixel counts of every value per region.

    Args:
        values: A 2-D array of non-negative integer values below ``n_values``.
        n_values: One more than the largest possible value.

    Returns:
        int64 array of shape (5, n_values): rows ``nw``, ``ne``, ``sw``,
        ``se``, ``centre`` (see :data:`REGIONS`). The four quadrants tile the
        chip (rows split at ``h // 2``, columns at ``w // 2``); the centre is
        the middle half of each side (``h // 4`` to ``h - h // 4``).
    """
    height, width = values.shape
    out = np.empty((5, n_values), dtype=np.int64)
    if 16 * n_values <= 1 << 16:
        # One bincount over (block, value) keys; the 16 blocks add up to every region exactly.
        keys = np.add(values, _block_keys(height, width, n_values), dtype=np.uint16, casting="unsafe")
        blocks = np.bincount(keys.ravel(), minlength=16 * n_values).reshape(4, 4, n_values)
        out[0] = blocks[:2, :2].sum(axis=(0, 1))
        out[1] = blocks[:2, 2:].sum(axis=(0, 1))
        out[2] = blocks[2:, :2].sum(axis=(0, 1))
        out[3] = blocks[2:, 2:].sum(axis=(0, 1))
        out[4] = blocks[1:3, 1:3].sum(axis=(0, 1))
        return out
    h2, w2, h4, w4 = height // 2, width // 2, height // 4, width // 4
    out[0] = np.bincount(values[:h2, :w2].ravel(), minlength=n_values)
    out[1] = np.bincount(values[:h2, w2:].ravel(), minlength=n_values)
    out[2] = np.bincount(values[h2:, :w2].ravel(), minlength=n_values)
    out[3] = np.bincount(values[h2:, w2:].ravel(), minlength=n_values)
    out[4] = np.bincount(values[h4 : height - h4, w4 : width - w4].ravel(), minlength=n_values)
    return out

"""Chips as 8-bit RGB pictures for image encoders: the RGB bands, stretched per band between percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from geosample.errors import DatasetError

STRETCH_PERCENTILES = (2.0, 98.0)
# Band names that mean red, green, blue: STAC eo common names and Sentinel-2 band ids.
RGB_NAMES = (("red", "r", "b04"), ("green", "g", "b03"), ("blue", "b", "b02"))


def rgb_band_indexes(bands: Sequence[str], wanted: Sequence[str] | None, chip: str) -> list[int]:
    """1-based indexes of the red, green and blue bands among ``bands`` (names in file order).

    ``wanted`` names them explicitly; otherwise they are found by name, a
    3-band chip is taken as RGB in order, and a 1-band chip as grey.
    """
    lowered = [str(b).lower() for b in bands]
    if wanted is not None:
        missing = [w for w in wanted if w.lower() not in lowered]
        if missing:
            raise DatasetError(f"chip {chip} has no band(s) {', '.join(missing)} (it has {', '.join(bands)})")
        return [lowered.index(w.lower()) + 1 for w in wanted]
    found = [next((lowered.index(n) + 1 for n in names if n in lowered), None) for names in RGB_NAMES]
    if all(i is not None for i in found):
        return found  # type: ignore[return-value]
    if len(bands) == 3:
        return [1, 2, 3]
    if len(bands) == 1:
        return [1, 1, 1]
    raise DatasetError(
        f"chip {chip} has bands {', '.join(bands)}, none recognisably red, green, blue; "
        "name them with --rgb-bands R,G,B"
    )


def stretch_to_uint8(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3, h, w) values to (h, w, 3) uint8, each band linearly from its 2nd–98th percentile of valid pixels to 0–255.

    Invalid (nodata) pixels become 0; a band with no spread maps to 0.
    """
    out = np.zeros(data.shape[1:] + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    for band in range(3):
        values = data[band][valid].astype(np.float64)
        low, high = np.percentile(values, STRETCH_PERCENTILES)
        if high <= low:
            continue
        scaled = (data[band].astype(np.float64) - low) / (high - low) * 255.0
        out[..., band] = np.where(valid, np.clip(np.round(scaled), 0, 255), 0).astype(np.uint8)
    return out


def read_chip_rgb(path: Path, bands: Sequence[str] | None, wanted: Sequence[str] | None) -> np.ndarray:
    """A chip GeoTIFF as a (h, w, 3) uint8 RGB picture."""
    try:
        with rasterio.open(path) as src:
            names = list(bands) if bands is not None and len(bands) else list(src.descriptions)
            names = [n if n else f"band{i + 1}" for i, n in enumerate(names)]
            indexes = rgb_band_indexes(names, wanted, str(path))
            data = src.read(indexes, masked=True)
    except rasterio.errors.RasterioIOError as exc:
        raise DatasetError(f"chip {path} cannot be read ({exc}); re-run 'geosample fetch'") from None
    mask = np.ma.getmaskarray(data).any(axis=0)
    valid = ~mask & np.isfinite(np.ma.getdata(data)).all(axis=0)
    return stretch_to_uint8(np.ma.getdata(data), valid)

"""The image a model backend sees: the chip's PNG preview, or one rendered in memory from its GeoTIFF."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from geosample.captions.context import SampleContext

MAX_SIDE = 768
"""Longest side, in pixels, of a rendered preview (larger chips are averaged down)."""
_RGB_NAMES = (("red", "green", "blue"), ("b04", "b03", "b02"), ("sr_b4", "sr_b3", "sr_b2"))


def chip_png(context: SampleContext, max_side: int = MAX_SIDE) -> bytes | None:
    """PNG bytes of the sample's image: its preview file, else its chip rendered as RGB; None without a chip."""
    if context.preview_path is not None:
        return Path(context.preview_path).read_bytes()
    if context.chip_path is not None:
        return render_png(context.chip_path, max_side=max_side)
    return None


def rgb_bands(names: Sequence[str | None]) -> list[int]:
    """0-based positions of the red, green and blue bands among ``names`` (else the first three, or one grey band)."""
    lowered = [(n or "").lower() for n in names]
    for triple in _RGB_NAMES:
        found = []
        for colour in triple:
            hits = [i for i, n in enumerate(lowered) if n == colour or n.endswith(f"_{colour}")]
            if not hits:
                break
            found.append(hits[0])
        if len(found) == 3:
            return found
    return [0, 1, 2] if len(names) >= 3 else [0]


def stretch(band: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """A band scaled to 0–255 between its percentiles over the valid pixels."""
    band = np.asarray(band, dtype=np.float64)
    values = band[valid & np.isfinite(band)]
    lo, hi = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.round((band - lo) * scale), 0, 255).astype(np.uint8)


def render_png(path: str | Path, *, max_side: int = MAX_SIDE) -> bytes:
    """An RGB PNG of a GeoTIFF: red, green and blue bands (by name, else the first three), 2–98 % stretch.

    No-data pixels are transparent. Chips larger than ``max_side`` are read
    at a reduced size (average resampling).
    """
    import rasterio
    from PIL import Image  # Pillow comes with matplotlib
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        indexes = [i + 1 for i in rgb_bands(list(src.descriptions))]
        factor = max(src.width, src.height) / max_side
        shape = (max(1, round(src.height / factor)), max(1, round(src.width / factor))) if factor > 1 else None
        data = src.read(
            indexes,
            masked=True,
            out_shape=(len(indexes), *shape) if shape else None,
            resampling=Resampling.average,
        )
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    planes = [stretch(np.ma.getdata(data[i]), valid) for i in range(len(indexes))]
    if len(planes) == 1:
        planes = planes * 3
    rgba = np.dstack([*planes, np.where(valid, 255, 0).astype(np.uint8)])
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()

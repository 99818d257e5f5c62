"""PNG pictures of chips, for formats and pages that show images (HF image column, the report's gallery).

A chip's own preview (written by ``fetch --preview``) is used when there is
one; otherwise the GeoTIFF is rendered: red, green and blue bands when the
band names say which they are, else the first three (or the first as grey),
each stretched between its 2nd and 98th percentile, no data transparent.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.enums import Resampling

from geosample.export._rasters import open_raster

__all__ = ["png_bytes", "render_png", "rgb_band_indexes", "thumbnail"]

_RGB_NAMES = (
    ("red", "green", "blue"),
    ("b04", "b03", "b02"),
    ("b4", "b3", "b2"),
    ("sr_b4", "sr_b3", "sr_b2"),
    ("sr_b3", "sr_b2", "sr_b1"),
)


def rgb_band_indexes(names: Sequence[str]) -> list[int]:
    """1-based indexes of the bands to show as red, green, blue (or one band as grey)."""
    lowered = [str(n).lower() for n in names]
    for triple in _RGB_NAMES:
        if all(t in lowered for t in triple):
            return [lowered.index(t) + 1 for t in triple]
    # Prefixed names, e.g. ``rgb_red`` or ``sr_red``.
    suffixed = [next((i for i, n in enumerate(lowered) if n.endswith(f"_{t}")), None) for t in _RGB_NAMES[0]]
    if all(i is not None for i in suffixed):
        return [i + 1 for i in suffixed]  # type: ignore[operator]
    if len(names) >= 3:
        return [1, 2, 3]
    return [1]


def render_png(path: str | Path, max_size: int | None = None) -> bytes:
    """The chip GeoTIFF at ``path`` as an RGBA PNG, at most ``max_size`` pixels on a side."""
    with open_raster(path) as src:
        names = [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        bands = rgb_band_indexes(names)
        scale = 1.0 if max_size is None else min(1.0, max_size / max(src.width, src.height))
        shape = (len(bands), max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        data = src.read(bands, out_shape=shape, resampling=Resampling.average, masked=True)
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    values = np.ma.getdata(data).astype(np.float64)
    rgb = np.zeros(values.shape, dtype=np.uint8)
    for i, band in enumerate(values):
        good = band[valid & np.isfinite(band)]
        if good.size == 0:
            continue
        low, high = np.percentile(good, [2, 98])
        stretched = (band - low) / (high - low) if high > low else np.full_like(band, 0.5)
        rgb[i] = np.round(np.clip(np.nan_to_num(stretched), 0, 1) * 255).astype(np.uint8)
    if rgb.shape[0] == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    alpha = np.where(valid, 255, 0).astype(np.uint8)[None]
    return png_bytes(np.concatenate([rgb, alpha]).transpose(1, 2, 0))


def png_bytes(pixels: np.ndarray) -> bytes:
    """An (rows, cols, 3 or 4) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(png: bytes | Path, max_size: int) -> bytes:
    """A PNG (bytes or file) scaled down to at most ``max_size`` pixels on a side."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        image.load()
        picture = image.convert("RGBA")
    picture.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()

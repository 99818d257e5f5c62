"""Chips for the image-encoder tests: windows of the real Landsat 7 scene written as chip GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from PIL import Image
from rasterio.windows import Window

SCENE = Path(__file__).parents[1] / "data" / "imagery" / "landsat7_rgb_utm18n_300m.tif"
SIZE = 48


def write_chips(ds: Path, samples: list[str], *, failed: int = 1, previews: bool = False) -> pd.DataFrame:
    """One chip per sample (the last ``failed`` marked failed), per DESIGN's chips.parquet; optional PNG previews."""
    (ds / "chips").mkdir(exist_ok=True)
    rows = []
    with rasterio.open(SCENE) as src:
        data = src.read()
        profile = src.profile | {"width": SIZE, "height": SIZE, "tiled": True, "blockxsize": 16, "blockysize": 16}
        rng = np.random.default_rng(5)
        for i, sample in enumerate(samples):
            ok = i < len(samples) - failed
            row = {"sample_id": sample, "status": "ok" if ok else "failed", "error": None if ok else "boom",
                   "path": f"chips/{sample}.tif" if ok else None, "bands": ["blue", "green", "red"],
                   "width": SIZE, "height": SIZE}  # fmt: skip
            if ok:
                y, x = int(rng.integers(150, 550)), int(rng.integers(150, 650))
                window = Window(x, y, SIZE, SIZE)
                # Band order blue, green, red: the encoder must find red/green/blue by name.
                chip = data[::-1, y : y + SIZE, x : x + SIZE]
                with rasterio.open(
                    ds / row["path"], "w", **(profile | {"transform": src.window_transform(window)})
                ) as dst:
                    dst.write(chip)
                    dst.descriptions = ("blue", "green", "red")
                if previews:
                    row["preview"] = f"chips/{sample}.png"
                    Image.fromarray(np.moveaxis(chip[::-1], 0, -1)).save(ds / row["preview"])
            rows.append(row)
    table = pd.DataFrame(rows)
    table.to_parquet(ds / "chips.parquet", index=False)
    return table


def independent_rgb(path: Path) -> np.ndarray:
    """The chip as 8-bit RGB, from rasterio and numpy directly: bands by description, 2–98 % stretch per band."""
    with rasterio.open(path) as src:
        order = [src.descriptions.index(name) + 1 for name in ("red", "green", "blue")]
        data = src.read(order).astype(np.float64)
        valid = (src.read_masks(order) > 0).all(axis=0)
    out = np.zeros((*data.shape[1:], 3), dtype=np.uint8)
    for band in range(3):
        low, high = np.percentile(data[band][valid], [2, 98])
        scaled = np.clip(np.round((data[band] - low) / (high - low) * 255), 0, 255)
        out[..., band] = np.where(valid, scaled, 0)
    return out

"""Builders of the datasets to export: chips and captions made here, the CLI run in-process.

Chips are small Cloud-Optimized GeoTIFFs written per the DESIGN contract (in
the sample's UTM zone, centred on it, ``chip_size_m`` on a side, band
descriptions set) with a PNG preview, listed in ``chips.parquet`` with the
fetch stage's columns; captions follow the ``captions.parquet`` contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from click.testing import CliRunner, Result
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin
from untrusted import run_cli as run_main  # noqa: F401  (re-exported for the export and stac tests)

from geosample.cli import cli
from geosample.stac.journal import SCHEMA as CHIPS_MANIFEST_SCHEMA

CHIP_PX = 32
BANDS = ("red", "green", "blue")
CHIPS_SCHEMA = CHIPS_MANIFEST_SCHEMA  # the fetch stage's own manifest schema


def write_chips(
    ds: Path, collections: Sequence[str] = ("sentinel-2-l2a",), *, no_item: int = 2, preview: bool = True
) -> pd.DataFrame:
    """Write one chip per sample and collection (the last ``no_item`` samples get none) and ``chips.parquet``."""
    plan = gpd.read_parquet(ds / "plan.parquet").sort_values("sample_id")
    rng = np.random.default_rng(7)
    nested = len(collections) > 1
    rows = []
    for c_index, collection in enumerate(collections):
        for i, sample in enumerate(plan.itertuples()):
            if i >= len(plan) - no_item:
                rows.append({"sample_id": sample.sample_id, "status": "no_item", "collection": collection})
                continue
            folder = f"chips/{collection}" if nested else "chips"
            path = f"{folder}/{sample.sample_id}.tif"
            x, y = Transformer.from_crs(4326, int(sample.epsg), always_xy=True).transform(sample.lon, sample.lat)
            pixel = sample.chip_size_m / CHIP_PX
            transform = from_origin(x - sample.chip_size_m / 2, y + sample.chip_size_m / 2, pixel, pixel)
            data = rng.integers(200, 4000, size=(3, CHIP_PX, CHIP_PX), dtype=np.uint16)
            data[:, :4, :4] = 0  # a corner of no data
            (ds / folder).mkdir(parents=True, exist_ok=True)
            with rasterio.open(
                ds / path, "w", driver="COG", width=CHIP_PX, height=CHIP_PX, count=3, dtype="uint16",
                crs=f"EPSG:{sample.epsg}", transform=transform, nodata=0, compress="deflate",
            ) as dst:  # fmt: skip
                dst.write(data)
                dst.descriptions = BANDS
            row = {
                "sample_id": sample.sample_id, "status": "ok", "collection": collection,
                "item_id": f"{collection}-item-{i}", "cloud_cover": float(i % 30),
                "item_datetime": sample.start_datetime + pd.Timedelta(days=30 + c_index), "path": path,
                "width": CHIP_PX, "height": CHIP_PX, "bands": list(BANDS),
                "sha256": hashlib.sha256((ds / path).read_bytes()).hexdigest(), "resolution": pixel,
            }  # fmt: skip
            if preview:
                picture = (data.transpose(1, 2, 0) // 16).clip(0, 255).astype(np.uint8)
                Image.fromarray(picture).save(ds / path.replace(".tif", ".png"))
                row["preview"] = path.replace(".tif", ".png")
            rows.append(row)
    table = pa.Table.from_pylist(rows, schema=CHIPS_SCHEMA)
    pq.write_table(table, ds / "chips.parquet")
    return table.to_pandas()


def write_captions(ds: Path, per_sample: int = 2, *, skip: int = 1) -> pd.DataFrame:
    """Write ``captions.parquet``: ``per_sample`` captions per sample but the first ``skip`` ones."""
    plan = gpd.read_parquet(ds / "plan.parquet").sort_values("sample_id")
    rows = []
    for sample in plan.iloc[skip:].itertuples():
        texts = [
            f"A satellite image of {sample.landcover.replace('_', ' ')} in {sample.continent}, {sample.time_bin}.",
            f"Climate zone {sample.climate}:\nan {sample.landcover} scene near {sample.lat:.2f}, {sample.lon:.2f}.",
            "Fields, roads and a river seen from orbit.",
        ][:per_sample]
        for i, text in enumerate(texts):
            rows.append({"sample_id": sample.sample_id, "caption_index": i, "caption": text, "backend": "template",
                         "model": None, "prompt_sha256": hashlib.sha256(b"template").hexdigest()})  # fmt: skip
    table = pd.DataFrame(rows)
    table["caption_index"] = table["caption_index"].astype("int64")
    table.to_parquet(ds / "captions.parquet", index=False)
    return table


def invoke(*args: object) -> Result:
    """Run the CLI in-process through click's runner (a user error surfaces as ``result.exception``)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def python_snippets(readme: Path) -> list[str]:
    """The ```python blocks of a README, as a reader would copy them."""
    import re

    return re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.DOTALL)

"""Fixtures for the caption tests: a labelled copy of the small real plan, chips cut from the real Landsat scene."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
from captions.openai_server import OpenAIServer
from PIL import Image
from rasterio.transform import from_origin
from validation import assert_valid

LANDSAT = Path(__file__).parents[1] / "data" / "imagery" / "landsat7_rgb_utm18n_300m.tif"
SECRET = "sk-test-GEOSAMPLE-0123456789abcdefSECRET"


@pytest.fixture(scope="session")
def _labelled(_small_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small plan, labelled once from the embedded MODIS layer (``geosample label`` defaults)."""
    from geosample.labels.label import label

    ds = tmp_path_factory.mktemp("captions") / "DS"
    shutil.copytree(_small_plan, ds)
    label(ds, progress=False)
    assert_valid(ds)
    return ds


@pytest.fixture
def labelled_ds(_labelled: Path, tmp_path: Path) -> Path:
    """A private copy of the labelled small dataset."""
    ds = tmp_path / "DS"
    shutil.copytree(_labelled, ds)
    return ds


@pytest.fixture
def chipped_ds(labelled_ds: Path) -> Path:
    """The labelled dataset with a real RGB chip per sample, half of them with a PNG preview."""
    write_chips(labelled_ds, previews="half")
    return labelled_ds


def write_chips(
    ds: Path,
    *,
    previews: str = "none",
    resolution: float = 30.0,
    collection: str = "landsat-c2-l2",
    extra_failed_collection: bool = False,
) -> pd.DataFrame:
    """Chips as ``geosample fetch`` writes them: a GeoTIFF in the sample's UTM zone, cut from the real Landsat scene.

    ``previews``: ``none``, ``half`` (every other sample) or ``all`` get a PNG preview file.
    ``extra_failed_collection``: each sample first gets a ``failed`` row of another collection.
    """
    plan = gpd.read_parquet(ds / "plan.parquet")
    with rasterio.open(LANDSAT) as src:
        scene = src.read()
    (ds / "chips").mkdir(exist_ok=True)
    rows = []
    for i, rec in enumerate(plan.itertuples(index=False)):
        size = max(8, round(rec.chip_size_m / resolution))
        r0, c0 = 250 + (i * 7) % 200, 250 + (i * 13) % 200
        data = scene[:, r0 : r0 + size, c0 : c0 + size]
        x, y = pyproj.Transformer.from_crs(4326, int(rec.epsg), always_xy=True).transform(rec.lon, rec.lat)
        half = size * resolution / 2
        path = Path("chips") / f"{rec.sample_id}.tif"
        profile = {
            "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "nodata": 0,
            "crs": f"EPSG:{int(rec.epsg)}", "transform": from_origin(x - half, y + half, resolution, resolution),
            "tiled": True, "blockxsize": 16, "blockysize": 16, "compress": "deflate",
        }  # fmt: skip
        with rasterio.open(ds / path, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = ("red", "green", "blue")
        preview = None
        if previews == "all" or (previews == "half" and i % 2 == 0):
            preview = Path("chips") / f"{rec.sample_id}.png"
            # Bands reversed: a picture distinct from a rendering of the chip, so tests can tell them apart.
            Image.fromarray(np.ascontiguousarray(data[::-1].transpose(1, 2, 0))).save(ds / preview, format="PNG")
        start = pd.Timestamp(rec.start_datetime)
        when = (start + pd.Timedelta(days=40 + 11 * i)).to_pydatetime().replace(tzinfo=dt.UTC)
        base = {"sample_id": rec.sample_id, "error": None, "cloud_cover": 3.5 + i, "resolution": resolution}
        if extra_failed_collection:
            rows.append({**base, "status": "failed", "error": "read failed", "collection": "sentinel-2-l2a",
                         "item_id": None, "item_datetime": None, "path": None, "width": None, "height": None,
                         "bands": None, "sha256": None, "preview": None})  # fmt: skip
        rows.append(
            {
                **base,
                "status": "ok",
                "collection": collection,
                "item_id": f"LC08_L2SP_{i:03d}_{when:%Y%m%d}",
                "item_datetime": when,
                "path": str(path),
                "width": size,
                "height": size,
                "bands": ["red", "green", "blue"],
                "sha256": hashlib.sha256((ds / path).read_bytes()).hexdigest(),
                "preview": None if preview is None else str(preview),
            }
        )
    table = pd.DataFrame(rows)
    table["item_datetime"] = pd.to_datetime(table["item_datetime"], utc=True)
    table.to_parquet(ds / "chips.parquet", index=False)
    return table


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """An OpenAI-protocol chat server on loopback that expects the key :data:`SECRET`."""
    server = OpenAIServer(api_key=SECRET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return SECRET


def all_bytes_under(folder: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under ``folder`` with its contents (hidden ones included)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()

"""Presets, offline: fixture items shaped like Earth Search's and Planetary Computer's real responses."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml
from rasterio.enums import Resampling
from rasterio.warp import reproject

from geosample.errors import ConfigError
from geosample.stac import chip_grid, fetch
from geosample.stac.fetch import make_signer
from geosample.stac.presets import PRESETS, apply_preset, get_preset, needs_harmonize

UTC = dt.UTC


class CountingSigner:
    """Stands in for planetary_computer.sign_url on loopback URLs (which it would leave unchanged anyway)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, href: str) -> str:
        with self.lock:
            self.calls += 1
        return href


def independent(path: Path, grid, resampling: Resampling = Resampling.nearest) -> np.ndarray:
    with rasterio.open(path) as src:
        out = np.zeros((src.count, grid.height, grid.width), dtype=np.float64)
        for b in range(src.count):
            reproject(rasterio.band(src, b + 1), out[b], src_nodata=src.nodata, dst_transform=grid.transform,
                      dst_crs=grid.crs, dst_nodata=0, resampling=resampling)  # fmt: skip
    return out


def grid_for(ds: Path, sample_id: str, res: float):
    s = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id").loc[sample_id]
    return chip_grid(s.lon, s.lat, int(s.epsg), float(s.chip_size_m), res)


def test_every_preset_is_complete() -> None:
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.stac.startswith("https://") and preset.assets
        filled = apply_preset({"preset": name})
        assert filled["stac"] == preset.stac and filled["collection"] == (preset.collection,)
        assert filled["assets"] == preset.assets
    # What the user gives wins over the preset.
    filled = apply_preset({"preset": "pc-s2", "stac": "http://mirror", "assets": ("B08",), "sign": "none"})
    assert filled["stac"] == "http://mirror" and filled["assets"] == ("B08",) and filled["sign"] == "none"
    with pytest.raises(ConfigError, match="known presets: earth-search-s2, pc-s2, pc-landsat"):
        get_preset("landsat")


@pytest.mark.parametrize(
    ("props", "when", "expected"),
    [
        ({"s2:processing_baseline": "05.10"}, None, True),
        ({"s2:processing_baseline": "04.00"}, None, True),
        ({"s2:processing_baseline": "03.01"}, dt.datetime(2023, 1, 1, tzinfo=UTC), False),
        ({"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}, None, False),
        ({"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": False}, None, True),
        ({}, dt.datetime(2022, 1, 26, tzinfo=UTC), True),
        ({}, dt.datetime(2021, 12, 1, tzinfo=UTC), False),
    ],
)
def test_needs_harmonize(props: dict, when: dt.datetime | None, expected: bool) -> None:
    assert needs_harmonize(props, when) is expected


def test_pc_s2(pc_ds: Path, stac_api: str, files_root: Path) -> None:
    signer = CountingSigner()
    raw = fetch(pc_ds, preset="pc-s2", stac=stac_api, signer=signer, progress=False, harmonize=False)
    assert (raw["status"] == "ok").all() and signer.calls >= 4 * len(raw)
    assert all(list(b) == ["B04", "B03", "B02", "B08"] for b in raw["bands"])
    assert raw["item_id"].str.endswith("N03.00").all()  # least cloud
    assert set(raw["resolution"]) == {10.0} and set(raw["width"]) == {30}
    # Nearest the middle of the year: the baseline 05.10 scene, harmonised by the preset's default.
    new = fetch(pc_ds, preset="pc-s2", stac=stac_api, signer=signer, sort="time", overwrite=True, progress=False)
    assert new["item_id"].str.endswith("N05.10").all()
    for row in new.itertuples():
        grid = grid_for(pc_ds, row.sample_id, 10.0)
        with rasterio.open(pc_ds / row.path) as src:
            got = src.read()
        for i, key in enumerate(["B04", "B03", "B02", "B08"]):
            want = independent(files_root / "sentinel-2-l2a" / row.item_id / f"{key}.tif", grid)[0]
            np.testing.assert_array_equal(got[i], np.where(want == 0, 0, np.maximum(want, 1001) - 1000))
    section = yaml.safe_load((pc_ds / "geosample.yaml").read_text())["fetch"]
    assert section["preset"] == "pc-s2" and section["sign"] == "planetary-computer" and section["harmonize"] is True


def test_pc_landsat_scaled(pc_ds: Path, stac_api: str, files_root: Path) -> None:
    table = fetch(pc_ds, preset="pc-landsat", stac=stac_api, signer=CountingSigner(), scale=True, progress=False)
    assert (table["status"] == "ok").all() and set(table["resolution"]) == {30.0}
    for row in table.itertuples():
        assert list(row.bands) == ["red", "green", "blue", "nir08"]
        grid = grid_for(pc_ds, row.sample_id, 30.0)
        with rasterio.open(pc_ds / row.path) as src:
            assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
            got = src.read()
        for i, key in enumerate(["red", "green", "blue", "nir08"]):
            dn = independent(files_root / "landsat-c2-l2" / row.item_id / f"{key}.tif", grid)[0]
            np.testing.assert_allclose(got[i], dn * 2.75e-5 - 0.2, rtol=0, atol=1e-6)  # float32 arithmetic
    # With the categorical QA band, the classes survive untouched (nearest resampling).
    qa = fetch(pc_ds, preset="pc-landsat", stac=stac_api, signer=CountingSigner(), assets="qa_pixel",
               resolution=45, overwrite=True, progress=False)  # fmt: skip
    for row in qa.itertuples():
        with rasterio.open(pc_ds / row.path) as src:
            assert set(np.unique(src.read(1))) <= {1, 21824, 21952, 22080, 23888}


def test_pc_naip(pc_ds: Path, stac_api: str, files_root: Path) -> None:
    table = fetch(pc_ds, preset="pc-naip", stac=stac_api, signer=CountingSigner(), progress=False)
    assert (table["status"] == "ok").all() and set(table["resolution"]) == {0.6}
    for row in table.itertuples():
        assert list(row.bands) == ["image_red", "image_green", "image_blue", "image_nir"]
        assert row.width == row.height == 500
        grid = grid_for(pc_ds, row.sample_id, 0.6)
        with rasterio.open(pc_ds / row.path) as src:
            assert src.nodata is None and src.count == 4
            np.testing.assert_array_equal(
                src.read(), independent(files_root / "naip" / row.item_id / "image.tif", grid)
            )


def test_pc_worldcover(pc_ds: Path, stac_api: str, files_root: Path) -> None:
    table = fetch(pc_ds, preset="pc-worldcover", stac=stac_api, signer=CountingSigner(), resampling="bilinear",
                  progress=False)  # fmt: skip
    assert (table["status"] == "ok").all() and set(table["resolution"]) == {10.0}
    assert table["cloud_cover"].isna().all()
    for row in table.itertuples():
        grid = grid_for(pc_ds, row.sample_id, 10.0)
        with rasterio.open(pc_ds / row.path) as src:
            got = src.read(1)
        # Categorical: nearest whatever --resampling says, so only real classes appear.
        want = independent(files_root / "esa-worldcover" / row.item_id / "map.tif", grid)[0]
        np.testing.assert_array_equal(got, want)
        assert set(np.unique(got)) <= {10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}


def test_earth_search_s2(planned_ds: Path, stac_api: str) -> None:
    table = fetch(planned_ds, preset="earth-search-s2", stac=stac_api, limit=6, progress=False)
    ok = table[table["status"] == "ok"]
    assert len(ok) == 4 and all(list(b) == ["red", "green", "blue", "nir"] for b in ok["bands"])
    section = yaml.safe_load((planned_ds / "geosample.yaml").read_text())["fetch"]
    assert section["harmonize"] is True and section["sign"] is None


def test_signers() -> None:
    assert make_signer(None) is None and make_signer("none") is None
    pc = pytest.importorskip("planetary_computer")
    assert make_signer("planetary-computer") is pc.sign_url

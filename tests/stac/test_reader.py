"""Reads onto the chip grid, checked against independent rasterio reprojections of the same files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.warp import reproject
from stac.servers import FileServer

from geosample.stac.grid import ChipGrid, chip_grid
from geosample.stac.reader import DatasetCache, ReadError, gdal_options, preview_png, read_onto_grid, write_cog

COLL = "sentinel-2-l2a"


def expected(
    path: Path | str, grid: ChipGrid, band: int = 1, resampling: Resampling = Resampling.nearest
) -> np.ndarray:
    """The independent answer: rasterio.warp.reproject of one band onto the grid, -1 where no data."""
    with rasterio.open(path) as src:
        out = np.full((grid.height, grid.width), -1, dtype=np.float64)
        reproject(
            rasterio.band(src, band), out, src_nodata=src.nodata, dst_transform=grid.transform, dst_crs=grid.crs,
            dst_nodata=-1, resampling=resampling,
        )  # fmt: skip
    return out


def sample_with_role(s2: dict[str, Any], plan: gpd.GeoDataFrame, role: str) -> Any:
    sid = next(s for s, r in s2["roles"].items() if r == role)
    return plan.set_index("sample_id").loc[sid], sid


def grid_of(row: Any, res: float = 10.0) -> ChipGrid:
    return chip_grid(row.lon, row.lat, int(row.epsg), float(row.chip_size_m), res)


def as_expected(data: np.ma.MaskedArray) -> np.ndarray:
    return np.where(np.ma.getmaskarray(data), -1.0, data.data.astype(np.float64))


@pytest.mark.parametrize("role", ["plain", "other_zone", "geographic"])
def test_read_equals_independent_reprojection(
    role: str, s2: dict, small_plan: gpd.GeoDataFrame, files_root: Path
) -> None:
    row, sid = sample_with_role(s2, small_plan, role)
    item = s2["expect"][sid]["cloud"][0]
    grid = grid_of(row)
    for asset in ("red", "scl"):
        path = files_root / COLL / item / f"{asset}.tif"
        got = read_onto_grid([str(path)], grid)
        assert got.shape == (1, grid.height, grid.width)
        want = expected(path, grid)
        np.testing.assert_array_equal(as_expected(got[0]), want)
        assert (want >= 0).all()  # the scene covers the whole chip
    if role != "plain":
        return
    # The windowed read's bilinear agrees with GDAL's warper to within a digital number or two.
    path = files_root / COLL / item / "red.tif"
    got = read_onto_grid([str(path)], grid, resampling="bilinear")
    want = expected(path, grid, resampling=Resampling.bilinear)
    assert np.abs(as_expected(got[0]) - want).max() <= 2


def test_read_over_http_equals_local(s2: dict, small_plan: gpd.GeoDataFrame, files_root: Path, file_server: FileServer):
    row, sid = sample_with_role(s2, small_plan, "other_zone")
    item = s2["expect"][sid]["cloud"][0]
    grid = grid_of(row)
    local = read_onto_grid([str(files_root / COLL / item / "red.tif")], grid)
    remote = read_onto_grid([f"{file_server.url}/{COLL}/{item}/red.tif"], grid)
    np.testing.assert_array_equal(local.data, remote.data)
    np.testing.assert_array_equal(local.mask, remote.mask)


def test_partial_source_is_masked_outside(s2: dict, small_plan: gpd.GeoDataFrame, files_root: Path) -> None:
    row, sid = sample_with_role(s2, small_plan, "ranked")
    path = files_root / COLL / f"S2_{sid}_C" / "red.tif"  # covers the western half of the chip
    grid = grid_of(row)
    got = read_onto_grid([str(path)], grid)
    want = expected(path, grid)
    np.testing.assert_array_equal(as_expected(got[0]), want)
    assert 0.3 < got.mask.mean() < 0.7
    assert got.fill_value == 0


def test_mosaic_first_valid_pixel_wins(s2: dict, small_plan: gpd.GeoDataFrame, files_root: Path) -> None:
    row, sid = sample_with_role(s2, small_plan, "mosaic")
    west, east = (str(files_root / COLL / f"S2_{sid}_{k}" / "red.tif") for k in "WE")
    grid = grid_of(row)
    got = read_onto_grid([west, east], grid)
    w, e = expected(west, grid), expected(east, grid)
    want = np.where(w >= 0, w, e)
    np.testing.assert_array_equal(as_expected(got[0]), want)
    assert not got.mask.any()
    assert ((w >= 0) & (e >= 0)).any()  # the halves overlap, and the first one won there


def test_overview_is_used_for_coarse_chips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "big.tif"
    data = rng.integers(1, 1000, (1, 1024, 1024), dtype=np.uint16)
    profile = {"driver": "COG", "width": 1024, "height": 1024, "count": 1, "dtype": "uint16", "crs": "EPSG:32633",
               "transform": from_origin(500_000, 5_000_000, 10, 10), "nodata": 0, "overview_resampling": "average",
               "blocksize": 128}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    lon, lat = rasterio.warp.transform("EPSG:32633", "EPSG:4326", [505_120.0], [4_994_880.0])
    grid = chip_grid(lon[0], lat[0], 32633, 5000.0, 40.0)
    with DatasetCache() as cache:
        got = read_onto_grid([str(path)], grid, cache=cache)
        assert cache.opens == 2  # the file, then its overview level
    with rasterio.open(path, overview_level=1) as ovr:  # 4x: 40 m pixels
        want = np.full((grid.height, grid.width), -1.0)
        reproject(rasterio.band(ovr, 1), want, src_nodata=0, dst_transform=grid.transform, dst_crs=grid.crs,
                  dst_nodata=-1, resampling=Resampling.nearest)  # fmt: skip
    np.testing.assert_array_equal(as_expected(got[0]), want)


def test_missing_file_fails_at_once(file_server: FileServer) -> None:
    grid = chip_grid(15.0, 45.0, 32633, 100.0, 10.0)
    started = time.perf_counter()
    with pytest.raises(ReadError, match="404"):
        read_onto_grid([f"{file_server.url}/nothing/here.tif"], grid, retries=3)
    assert time.perf_counter() - started < 2.0
    assert file_server.hits()["paths"]["nothing/here.tif"] <= 2  # no retry loop on a 404


def test_transient_errors_are_retried_past_gdal_cache(
    files_root: Path, file_server: FileServer, s2: dict, small_plan: gpd.GeoDataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL gives up after its own retries and remembers the failure; read_onto_grid reopens afresh."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.01")
    row, sid = sample_with_role(s2, small_plan, "ranked")
    rel = f"{COLL}/S2_{sid}_C/nir.tif"  # a file no other test reads: GDAL's cache of remote bytes lasts a process
    file_server.control(fail={"pattern": rel, "status": 503, "count": 3})
    try:
        grid = grid_of(row)
        got = read_onto_grid([f"{file_server.url}/{rel}"], grid, retries=3)
        requests = file_server.hits()["paths"][rel]
    finally:
        file_server.reset()
    assert requests >= 4  # three 503s (GDAL's own two tries, then a fresh open), then the data
    np.testing.assert_array_equal(as_expected(got[0]), expected(files_root / rel, grid))


def write_source(path: Path, grid: ChipGrid) -> None:
    """A small COG under ``grid`` (twice its extent), written where no other test reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    west, north = grid.transform.c - grid.width * 5.0, grid.transform.f + grid.height * 5.0
    values = np.arange(4 * grid.width * grid.height, dtype=np.uint16).reshape(1, 2 * grid.height, 2 * grid.width)
    profile = {"driver": "COG", "width": 2 * grid.width, "height": 2 * grid.height, "count": 1, "dtype": "uint16",
               "crs": grid.crs, "transform": from_origin(west, north, 10.0, 10.0), "blocksize": 256}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)


def test_header_lost_after_the_first_request_is_read_again(
    files_root: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL calls a remote file it could not read the header of "not recognized": a fault, read again."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.01")
    grid = chip_grid(15.0, 45.0, 32633, 640.0, 10.0)
    rel = "reader-tests/header-lost.tif"
    write_source(files_root / rel, grid)
    # The first request answers; the next two (the header's range, and GDAL's own retry of it) fail.
    file_server.control(fail={"pattern": rel, "status": 500, "count": 2, "skip": 1})
    try:
        got = read_onto_grid([f"{file_server.url}/{rel}"], grid, retries=3)
    finally:
        file_server.reset()
    np.testing.assert_array_equal(as_expected(got[0]), expected(files_root / rel, grid))


def test_a_file_that_is_not_a_raster_fails_without_a_retry_loop(files_root: Path, file_server: FileServer) -> None:
    grid = chip_grid(15.0, 45.0, 32633, 100.0, 10.0)
    rel = "reader-tests/not-a-raster.tif"
    (files_root / rel).parent.mkdir(parents=True, exist_ok=True)
    (files_root / rel).write_text("<html>an error page saved as a .tif</html>\n" * 100)
    with pytest.raises(ReadError, match="not recognized"):
        read_onto_grid([str(files_root / rel)], grid, retries=3)  # a local file: at once
    with pytest.raises(ReadError, match="not recognized"):
        read_onto_grid([f"{file_server.url}/{rel}"], grid, retries=3)  # a remote one: read once more
    assert file_server.hits()["paths"][rel] <= 4  # two opens of two requests; three retries make ten


def test_write_cog_is_a_valid_deterministic_cog() -> None:
    grid = chip_grid(15.0, 45.0, 32633, 5120.0, 10.0)
    rng = np.random.default_rng(0)
    values = rng.integers(1, 5000, (3, grid.height, grid.width), dtype=np.uint16)
    mask = np.zeros_like(values, dtype=bool)
    mask[:, :10, :] = True
    data = np.ma.MaskedArray(values, mask=mask)
    blob = write_cog(data, grid, ["red", "green", "blue"], nodata=0)
    assert blob == write_cog(data, grid, ["red", "green", "blue"], nodata=0)
    with MemoryFile(blob) as mem, mem.open() as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] or src.block_shapes[0] == (256, 256)
        assert src.overviews(1) == [2]
        assert src.descriptions == ("red", "green", "blue")
        assert src.nodata == 0
        assert src.crs.to_epsg() == 32633
        assert src.transform == grid.transform
        out = src.read()
    np.testing.assert_array_equal(out, np.where(mask, 0, values))
    # Without a nodata value, an internal mask marks the missing pixels.
    blob = write_cog(data, grid, ["red", "green", "blue"], nodata=None)
    with MemoryFile(blob) as mem, mem.open() as src:
        assert src.nodata is None
        np.testing.assert_array_equal(src.read_masks(1) == 0, mask[0])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_preview_png() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 10_000, (4, 32, 40)).astype(np.uint16)
    mask = np.zeros_like(values, dtype=bool)
    mask[:, 0, :] = True
    blob = preview_png(np.ma.MaskedArray(values, mask=mask), (2, 1, 0))
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    with MemoryFile(blob) as mem, mem.open() as src:
        img = src.read()
    assert img.shape == (4, 32, 40)
    assert (img[3, 0] == 0).all() and (img[3, 1:] == 255).all()
    red = values[2, 1:].astype(float)
    lo, hi = np.percentile(red, [2, 98])
    want = np.clip((red - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img[0, 1:], want)


def test_gdal_options_respect_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    options = gdal_options(["http://x/a.tif", "http://x/b.TIF?token=1"])
    assert "GDAL_HTTP_MAX_RETRY" not in options
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert options["GDAL_HTTP_MULTIPLEX"] == "YES" and options["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
    assert ".TIF" in options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"].split(",")
    assert "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in gdal_options(["http://x/download?id=3"])

"""Class counting on chip grids, checked against independent counts."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from geosample.labels.fractions import REGIONS, count_regions
from geosample.labels.grids import LabelGrid, chip_label_grids, label_resolution
from geosample.labels.sources import RasterSource, VectorSource


def _regions_by_slicing(values: np.ndarray, n: int) -> np.ndarray:
    h, w = values.shape
    parts = {
        "nw": values[: h // 2, : w // 2],
        "ne": values[: h // 2, w // 2 :],
        "sw": values[h // 2 :, : w // 2],
        "se": values[h // 2 :, w // 2 :],
        "centre": values[h // 4 : h - h // 4, w // 4 : w - w // 4],
    }
    return np.stack([np.bincount(parts[r].ravel(), minlength=n) for r in REGIONS])


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), n=st.sampled_from([1, 3, 12, 257, 5000]), seed=st.integers(0, 2**31))
def test_count_regions_matches_slicing(h: int, w: int, n: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, n, size=(h, w))
    got = count_regions(values, n)
    assert np.array_equal(got, _regions_by_slicing(values, n))
    assert got[:4].sum() == h * w  # the quadrants tile the chip


def test_label_resolution_bounds() -> None:
    assert label_resolution(2560, 10) == (10.0, 256)
    assert label_resolution(2560, 5566) == (80.0, 32)  # coarse sources still give quadrants
    assert label_resolution(100_000, 10) == (100_000 / 2048, 2048)
    res, n = label_resolution(2560, 30)
    assert res * n == pytest.approx(2560)


def _utm_raster(path, values: np.ndarray, x0: float, y0: float, res: float, epsg: int = 32633, nodata=None):
    profile = dict(
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=values.dtype.name,
        crs=f"EPSG:{epsg}",
        transform=from_origin(x0, y0, res, res),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)
    return path


def test_aligned_grid_is_a_plain_window(tmp_path) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 7, size=(1024, 1024)).astype(np.uint8)
    path = _utm_raster(tmp_path / "lc.tif", values, 500_000.0, 5_000_000.0, 10.0)
    reader = RasterSource(path, name="lc", scheme="x").reader()
    grid = LabelGrid(32633, 500_000.0 + 10 * 100, 5_000_000.0 - 10 * 50, 10.0, 256)
    assert reader._aligned_window(grid) is not None
    got = reader.counts(grid)
    expected = _regions_by_slicing(values[50:306, 100:356], 257)
    assert np.array_equal(got, expected)


def test_window_partly_outside_counts_no_data(tmp_path) -> None:
    values = np.full((100, 100), 3, dtype=np.uint8)
    path = _utm_raster(tmp_path / "lc.tif", values, 0.0, 1000.0, 10.0)
    reader = RasterSource(path, name="lc", scheme="x").reader()
    grid = LabelGrid(32633, -500.0, 1000.0, 10.0, 100)  # the western half is off the raster
    counts = reader.counts(grid)[:4].sum(axis=0)
    assert counts[3] == 50 * 100
    assert counts[256] == 50 * 100  # the no-data slot


def test_nodata_value_goes_to_the_no_data_slot(tmp_path) -> None:
    values = np.zeros((64, 64), dtype=np.uint8)
    values[:, 32:] = 255
    path = _utm_raster(tmp_path / "lc.tif", values, 0.0, 640.0, 10.0, nodata=255)
    reader = RasterSource(path, name="lc", scheme="x").reader()
    counts = reader.counts(LabelGrid(32633, 0.0, 640.0, 10.0, 64))[:4].sum(axis=0)
    assert counts[0] == 64 * 32 and counts[256] == 64 * 32 and counts[255] == 0


def test_warped_grid_matches_point_sampling(tmp_path) -> None:
    """A lon/lat source read onto a UTM chip grid picks, for each label pixel, the source pixel under its centre."""
    rng = np.random.default_rng(1)
    res_deg = 0.002
    values = rng.integers(0, 5, size=(400, 400)).astype(np.uint8)
    path = tmp_path / "lc_4326.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=400,
        height=400,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(14.0, 46.0, res_deg, res_deg),
    ) as dst:
        dst.write(values, 1)
    import pandas as pd

    samples = pd.DataFrame({"lon": [14.4], "lat": [45.6], "epsg": [32633], "chip_size_m": [2560.0]})
    (grid,) = chip_label_grids(samples, source_res_m=40.0)
    reader = RasterSource(path, name="lc", scheme="x").reader()
    assert reader._aligned_window(grid) is None
    got = reader.read(grid)
    # Independent: project every label pixel centre to lon/lat and index the array.
    cols, rows = np.meshgrid(np.arange(grid.size) + 0.5, np.arange(grid.size) + 0.5)
    x = grid.x0 + cols * grid.res
    y = grid.y0 - rows * grid.res
    lon, lat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(x, y)
    r = np.floor((46.0 - lat) / res_deg).astype(int)
    c = np.floor((lon - 14.0) / res_deg).astype(int)
    expected = values[r, c]
    assert (got == expected).mean() > 0.995  # GDAL may round a centre on a pixel edge the other way


def test_vector_source_rasterises_smaller_polygons_on_top(tmp_path) -> None:
    import geopandas as gpd
    import shapely

    to_lonlat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True)
    x0, y0 = 500_000.0, 5_000_000.0

    def square(xmin, ymin, xmax, ymax):
        xs = np.array([xmin, xmax, xmax, xmin, xmin])
        ys = np.array([ymin, ymin, ymax, ymax, ymin])
        lon, lat = to_lonlat.transform(xs, ys)
        return shapely.Polygon(np.column_stack([lon, lat]))

    # A 1 km field covering the whole chip, with a 250 m x 500 m wood in its north-west corner.
    field = square(x0, y0 - 1000, x0 + 1000, y0)
    wood = square(x0, y0 - 500, x0 + 250, y0)
    gdf = gpd.GeoDataFrame({"landuse": ["farmland", "forest"]}, geometry=[field, wood], crs=4326)
    gdf.to_file(tmp_path / "osm.gpkg")
    source = VectorSource(tmp_path / "osm.gpkg", "landuse", scheme="osm", resolution_m=10.0)
    assert source.slots.values == ("landuse=farmland", "landuse=forest", "<nodata>")
    counts = source.reader().counts(LabelGrid(32633, x0, y0, 10.0, 100))
    whole = counts[:4].sum(axis=0)
    assert whole[1] == pytest.approx(25 * 50, abs=60)  # the wood: 25 x 50 pixels, edges from reprojection
    assert whole[0] + whole[1] == 100 * 100
    nw = counts[0]
    assert nw[1] == pytest.approx(25 * 50, abs=60) and counts[1][1] == 0  # all of the wood is in the north-west

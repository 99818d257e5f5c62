"""Time-matched map labels: each sample from the annual map of its own year, the year and resolution recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from export.builders import run_main as run
from rasterio.transform import from_origin
from scenes import static_catalog

from geosample.errors import CoarseSourceWarning

TAXONOMY = yaml.safe_load((Path(__file__).parents[2] / "taxonomy" / "geosample-lulc.yaml").read_text())
IO_LULC = {str(k): v for k, v in TAXONOMY["mappings"]["io-lulc"].items()}
YEAR_CLASS = {2017: 2, 2018: 5, 2019: 11, 2020: 7, 2021: 1, 2022: 8, 2023: 9}
"""Each annual map is one class all over (plus a cloud patch), so the year used shows in the labels."""
POINTS = [(14.50, 46.05), (14.53, 46.06), (14.56, 46.07), (14.52, 46.03)]


def year_plan(ds: Path, years: list[int]) -> gpd.GeoDataFrame:
    """One 1,280 m sample per point, each with a window in the given year."""
    import h3

    from geosample.sampling._geometry import chip_footprints

    rows = []
    for (lon, lat), year in zip(POINTS, years, strict=False):
        cell = h3.latlng_to_cell(lat, lon, 9)
        start, end = pd.Timestamp(f"{year}-03-01", tz="UTC"), pd.Timestamp(f"{year}-08-31", tz="UTC")
        rows.append({"sample_id": f"{cell}-{year}", "site_id": cell, "h3": cell, "h3_res": 9, "lon": lon, "lat": lat,
                     "stratum": "x", "time_bin": str(year), "start_datetime": start, "end_datetime": end,
                     "chip_size_m": 1280.0, "epsg": 32633})  # fmt: skip
    frame = pd.DataFrame(rows)
    plan = gpd.GeoDataFrame(
        frame, geometry=chip_footprints(frame["lon"], frame["lat"], frame["epsg"], 1280.0), crs="EPSG:4326"
    )
    ds.mkdir(parents=True)
    plan.to_parquet(ds / "plan.parquet", index=False)
    return plan


@pytest.fixture(scope="module")
def io_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static catalog shaped like Planetary Computer's io-lulc-annual-v02: one 10 m map per year, 2017-2023."""
    import pyproj
    import shapely
    from rasterio.warp import transform_bounds

    root = tmp_path_factory.mktemp("io")
    xs, ys = pyproj.Transformer.from_crs(4326, 32633, always_xy=True).transform(*zip(*POINTS, strict=True))
    x0, y0 = np.floor(min(xs) / 10) * 10 - 2000, np.ceil(max(ys) / 10) * 10 + 2000
    width, height = int((max(xs) - x0 + 2000) / 10), int((y0 - min(ys) + 2000) / 10)
    items = []
    for year, value in YEAR_CLASS.items():
        data = np.full((1, height, width), value, dtype=np.uint8)
        data[0, : height // 3, : width // 3] = 10  # clouds: no land cover seen there
        path = root / "files" / f"io-{year}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="COG", width=width, height=height, count=1, dtype="uint8",
                           crs="EPSG:32633", transform=from_origin(x0, y0, 10, 10), nodata=0) as dst:  # fmt: skip
            dst.write(data)
        bbox = transform_bounds(32633, 4326, x0, y0 - 10 * height, x0 + 10 * width, y0)
        items.append({
            "type": "Feature", "stac_version": "1.1.0", "id": f"io-{year}", "collection": "io-lulc-annual-v02",
            "geometry": shapely.geometry.mapping(shapely.box(*bbox)), "bbox": list(bbox), "links": [],
            "properties": {"datetime": None, "start_datetime": f"{year}-01-01T00:00:00Z",
                           "end_datetime": f"{year}-12-31T23:59:59Z", "proj:code": "EPSG:32633"},
            "assets": {"data": {"href": str(path), "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                                "roles": ["data"]}},
        })  # fmt: skip
    return static_catalog(root, items, collection="io-lulc-annual-v02")


def test_each_sample_gets_the_map_of_its_own_year(io_catalog: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ds = tmp_path / "DS"
    plan = year_plan(ds, [2019, 2021, 2025, 2016])
    code, _, err = run(["label", ds, "--preset", "io-lulc-annual-v02", "--stac", io_catalog, "--sign", "none", "-q",
                        "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    used = {2019: 2019, 2021: 2021, 2025: 2023, 2016: 2017}  # own year, else the nearest map
    for sample, year in zip(plan["sample_id"], [2019, 2021, 2025, 2016], strict=True):
        row = labels.loc[sample]
        assert row.label_year == used[year] and row.source_resolution_m == 10.0
        assert json.loads(row.fractions) == {IO_LULC[str(YEAR_CLASS[used[year]])]: 1.0}
        assert row.label_source == "io-lulc-annual-v02@stac"
    assert labels["label_year"].dtype == "Int64"
    recorded = yaml.safe_load((ds / "geosample.yaml").read_text())["label"]
    assert (
        recorded["scheme"] == "io-lulc" and recorded["asset"] == "data" and recorded["preset"] == "io-lulc-annual-v02"
    )


def test_annual_product_out_of_reach_is_refused(io_catalog: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ds = tmp_path / "DS"
    year_plan(ds, [2021, 2026])
    before = sorted(p.name for p in ds.iterdir())
    code, _, err = run(["label", ds, "--preset", "io-lulc-annual-v02", "--stac", io_catalog, "--sign", "none"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "1 sample(s) lie more than 2 year(s) from every io-lulc-annual-v02 map" in err
    assert "nearest map 2023; maps: 2017-2023" in err and "--max-year-gap" in err
    # The same through a plain stac: source, where the years are only known from the items found.
    code, _, err = run(["label", ds, "--source", "stac:io-lulc-annual-v02", "--stac", io_catalog, "--scheme",
                        "io-lulc", "--asset", "data"], capsys)  # fmt: skip
    assert code == 2 and "have no io-lulc-annual-v02 map within 2 year(s)" in err and "2026, nearest map 2023" in err
    assert sorted(p.name for p in ds.iterdir()) == before
    code, _, err = run(["label", ds, "--preset", "io-lulc-annual-v02", "--stac", io_catalog, "--sign", "none",
                        "--max-year-gap", "3", "-q", "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    assert pd.read_parquet(ds / "labels.parquet")["label_year"].tolist() == [2021, 2023]


def test_coarse_embedded_layer_warns_once_with_the_count(planned_ds: Path) -> None:
    from geosample import label

    shutil.rmtree(planned_ds / "report", ignore_errors=True)
    with pytest.warns(CoarseSourceWarning) as caught:
        table = label(planned_ds, progress=False)
    coarse = [w for w in caught if issubclass(w.category, CoarseSourceWarning)]
    n = len(table)
    assert len(coarse) == 1 and f"{n} of {n} samples are labelled from modis-igbp@embedded" in str(coarse[0].message)
    assert "not the chip" in str(coarse[0].message)
    assert (table["label_year"] == 2019).all()
    assert table["source_resolution_m"].iloc[0] == pytest.approx(0.05 * 111_320)

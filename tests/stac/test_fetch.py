"""geosample.fetch end to end against a real STAC API (rustac serve) and COGs over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pystac
import pytest
import rasterio
import shapely
import yaml
from rasterio.enums import Resampling
from rasterio.warp import reproject
from validation import assert_valid

from geosample.stac import FetchConfig, chip_grid, fetch
from geosample.stac.journal import SCHEMA

COLL = "sentinel-2-l2a"
ASSETS = ("red", "green", "blue", "nir", "scl")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def independent_chip(
    files_root: Path, collection: str, item_ids: list[str], assets: tuple[str, ...], grid: Any
) -> np.ndarray:
    """Reproject each asset of each item onto the grid (nearest) in the test; first valid pixel wins; -1 = none."""
    bands = []
    for asset in assets:
        out = np.full((grid.height, grid.width), -1.0)
        for item in item_ids:
            with rasterio.open(files_root / collection / item / f"{asset}.tif") as src:
                part = np.full((src.count, grid.height, grid.width), -1.0)
                for b in range(src.count):
                    reproject(rasterio.band(src, b + 1), part[b], src_nodata=src.nodata, dst_transform=grid.transform,
                              dst_crs=grid.crs, dst_nodata=-1, resampling=Resampling.nearest)  # fmt: skip
            if src.count > 1:
                return part
            out = np.where(out >= 0, out, part[0])
        bands.append(out)
    return np.stack(bands)


def chip_as_expected(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        data = src.read(masked=True)
    return np.where(np.ma.getmaskarray(data), -1.0, data.data.astype(np.float64))


def copy_ds(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def fetched(_small_plan: Path, tmp_path_factory: pytest.TempPathFactory, stac_api: str) -> tuple[Path, pd.DataFrame]:
    """The 24-sample plan fetched once: five assets, previews, four threads."""
    ds = copy_ds(_small_plan, tmp_path_factory.mktemp("fetched") / "DS")
    table = fetch(ds, stac=stac_api, collection=COLL, assets=",".join(ASSETS), preview=True, progress=False)
    assert_valid(ds)
    return ds, table


def test_statuses_follow_the_scenarios(fetched: tuple[Path, pd.DataFrame], s2: dict) -> None:
    ds, table = fetched
    assert table.attrs["summary"]["ok"] == 22
    assert table["sample_id"].is_unique and len(table) == 24
    rows = table.set_index("sample_id")
    for sid, role in s2["roles"].items():
        row = rows.loc[sid]
        if role == "no_item":
            assert row.status == "no_item" and pd.isna(row.item_id) and pd.isna(row.path)
        elif role == "missing_asset":
            assert row.status == "failed"
            assert "404" in row.error and "nir.tif" in row.error and "\n" not in row.error
            assert pd.isna(row.item_id) and pd.isna(row.sha256)
        else:
            assert row.status == "ok", row.error
            assert row.item_id == ",".join(s2["expect"][sid]["cloud"])
            assert pd.isna(row.error)


def test_manifest_columns_and_files(fetched: tuple[Path, pd.DataFrame], small_plan: gpd.GeoDataFrame) -> None:
    ds, table = fetched
    schema = pq.read_schema(ds / "chips.parquet")
    assert schema.names == SCHEMA.names
    for field in SCHEMA:
        assert schema.field(field.name).type == field.type, field.name
    on_disk = pd.read_parquet(ds / "chips.parquet")
    assert on_disk["sample_id"].tolist() == table["sample_id"].tolist()
    assert not (ds / ".chips.journal").exists()  # folded into the Parquet file at the end
    plan = small_plan.set_index("sample_id")
    for row in table[table["status"] == "ok"].itertuples():
        assert row.path == f"chips/{row.sample_id}.tif"
        assert sha256(ds / row.path) == row.sha256
        assert list(row.bands) == list(ASSETS)
        assert row.width == row.height == 256 and row.resolution == 10.0
        assert row.preview == f"chips/{row.sample_id}.png"
        assert (ds / row.preview).read_bytes()[:4] == b"\x89PNG"
        assert row.item_datetime.tzinfo is not None
        start, end = plan.loc[row.sample_id, ["start_datetime", "end_datetime"]]
        assert start <= row.item_datetime <= end
        assert 0 <= row.cloud_cover <= 100


def test_chips_equal_independent_reads(fetched: tuple[Path, pd.DataFrame], small_plan: gpd.GeoDataFrame,
                                       files_root: Path) -> None:  # fmt: skip
    ds, table = fetched
    plan = small_plan.set_index("sample_id")
    for row in table[table["status"] == "ok"].itertuples():
        s = plan.loc[row.sample_id]
        grid = chip_grid(s.lon, s.lat, int(s.epsg), float(s.chip_size_m), 10.0)
        with rasterio.open(ds / row.path) as src:
            assert src.crs.to_epsg() == int(s.epsg)
            assert src.transform == grid.transform and (src.width, src.height) == (256, 256)
            assert src.descriptions == ASSETS
            assert src.nodata == 0 and src.dtypes[0] == "uint16"
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        want = independent_chip(files_root, COLL, row.item_id.split(","), ASSETS, grid)
        np.testing.assert_array_equal(chip_as_expected(ds / row.path), want)


def test_catalog(fetched: tuple[Path, pd.DataFrame], small_plan: gpd.GeoDataFrame, stac_api: str) -> None:
    ds, table = fetched
    root = pystac.Catalog.from_file(str(ds / "stac" / "catalog.json"))
    items = {i.id: i for i in root.get_items(recursive=True)}
    ok = table[table["status"] == "ok"]
    assert set(items) == set(ok["sample_id"])
    plan = small_plan.set_index("sample_id")
    for row in ok.itertuples():
        item = items[row.sample_id]
        s = plan.loc[row.sample_id]
        grid = chip_grid(s.lon, s.lat, int(s.epsg), float(s.chip_size_m), 10.0)
        assert item.properties["proj:code"] == f"EPSG:{int(s.epsg)}"
        assert item.properties["proj:shape"] == [256, 256]
        assert item.properties["proj:transform"] == pytest.approx(list(grid.transform)[:6])
        assert "https://stac-extensions.github.io/projection/v2.0.0/schema.json" in item.stac_extensions
        links = [link.href for link in item.links if link.rel == "derived_from"]
        assert links == [f"{stac_api}/collections/{COLL}/items/{i}" for i in row.item_id.split(",")]
        href = Path(item.assets["image"].get_absolute_href())
        assert href == (ds / row.path).resolve() and sha256(href) == row.sha256
        assert item.assets["image"].extra_fields["file:checksum"] == "1220" + row.sha256
        assert shapely.equals_exact(shapely.geometry.shape(item.geometry), s.geometry, 1e-9)
        assert item.datetime == row.item_datetime.to_pydatetime()


def test_run_parameters_are_recorded(fetched: tuple[Path, pd.DataFrame], stac_api: str) -> None:
    ds, _ = fetched
    section = yaml.safe_load((ds / "geosample.yaml").read_text())["fetch"]
    assert section["stac"] == stac_api and section["collection"] == [COLL]
    assert section["assets"] == list(ASSETS) and section["preview"] is True
    recorded = dict(section["collections"][COLL])
    observations = recorded.pop("observations")
    assert recorded == {
        "assets": list(ASSETS), "bands": list(ASSETS), "resolution": 10.0, "resampling": "nearest",
        "harmonize": False, "scale": False, "mosaic": False, "cloud_mask": None,
    }  # fmt: skip
    # scl is one of the chip's bands, so it screens the clouds; without swir16 there is no snow test
    assert observations["cloud_method"] == "mask:scl"
    assert observations["bands"] == {"red": 0, "green": 1, "blue": 2, "nir": 3}
    assert observations["classes"] == ["water", "vegetation", "bare"]
    assert set(observations["not_observable"]) == {"snow_ice", "built"}
    assert "plan" in yaml.safe_load((ds / "geosample.yaml").read_text())


def test_rerun_skips_good_chips_and_refetches_bad_ones(fetched: tuple[Path, pd.DataFrame], tmp_path: Path,
                                                       stac_api: str) -> None:  # fmt: skip
    ds = copy_ds(fetched[0], tmp_path / "DS")
    table = fetched[1]
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    corrupt, deleted = ok.loc[0], ok.loc[1]
    (ds / corrupt.path).write_bytes(b"not a tiff")
    (ds / deleted.path).unlink()
    mtimes = {p: (ds / p).stat().st_mtime_ns for p in ok["path"][2:]}
    # A run killed between a chip and its STAC item: the rerun writes the missing item, the same as before.
    lost_item = ds / "stac" / COLL / f"{ok.loc[2].sample_id}.json"
    lost_text = lost_item.read_text()
    lost_item.unlink()
    kept_item = ds / "stac" / COLL / f"{ok.loc[3].sample_id}.json"
    kept_mtime = kept_item.stat().st_mtime_ns
    again = fetch(ds, progress=False)  # no settings: resume the recorded run
    assert json.loads(lost_item.read_text()) == json.loads(lost_text)
    assert kept_item.stat().st_mtime_ns == kept_mtime
    summary = again.attrs["summary"]
    assert summary["ok"] == 2 and summary["skipped"] == 22 and summary["failed"] == summary["no_item"] == 0
    assert sha256(ds / corrupt.path) == corrupt.sha256 and sha256(ds / deleted.path) == deleted.sha256
    assert {p: (ds / p).stat().st_mtime_ns for p in ok["path"][2:]} == mtimes
    pd.testing.assert_frame_equal(again, table)
    # --retry-failed tries the failed and no_item samples again (they fail the same way).
    retried = fetch(ds, progress=False, retry_failed=True)
    assert retried.attrs["summary"]["failed"] == 1 and retried.attrs["summary"]["no_item"] == 1
    assert retried.attrs["summary"]["skipped"] == 22


def test_changed_settings_need_overwrite(fetched: tuple[Path, pd.DataFrame], tmp_path: Path, stac_api: str) -> None:
    from geosample.errors import DatasetError

    ds = copy_ds(fetched[0], tmp_path / "DS")
    with pytest.raises(DatasetError, match="--overwrite"):
        fetch(ds, stac=stac_api, collection=COLL, assets="red,green", progress=False)
    table = fetch(ds, stac=stac_api, collection=COLL, assets="red,green", limit=3, progress=False, overwrite=True)
    first, rest = table.iloc[:3], table.iloc[3:]
    assert first["status"].tolist() == ["no_item", "ok", "ok"]  # the missing nir no longer matters
    assert all(list(b) == ["red", "green"] for b in first["bands"].dropna())
    pd.testing.assert_frame_equal(rest, fetched[1].iloc[3:])


def test_sort_by_time_and_max_cloud(planned_ds: Path, stac_api: str, s2: dict) -> None:
    ranked = [sid for sid, role in s2["roles"].items() if role == "ranked"]
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red", sort="time", limit=8, progress=False)
    rows = table.set_index("sample_id")
    for sid in ranked:
        assert rows.loc[sid, "item_id"] == s2["expect"][sid]["time"][0]
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red", sort="time", max_cloud=50, limit=8,
                  progress=False, overwrite=True)  # fmt: skip
    rows = table.set_index("sample_id")
    for sid in ranked:
        assert rows.loc[sid, "item_id"] == s2["expect"][sid]["max_cloud_50_time"][0]
        assert rows.loc[sid, "cloud_cover"] <= 50


def test_mosaic_fills_the_chip(planned_ds: Path, stac_api: str, s2: dict, small_plan: gpd.GeoDataFrame,
                               files_root: Path) -> None:  # fmt: skip
    sid = next(s for s, r in s2["roles"].items() if r == "mosaic")
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red,scl", mosaic=True, limit=3, progress=False)
    row = table.set_index("sample_id").loc[sid]
    assert row.status == "ok" and row.item_id.split(",") == s2["expect"][sid]["mosaic"]
    s = small_plan.set_index("sample_id").loc[sid]
    grid = chip_grid(s.lon, s.lat, int(s.epsg), float(s.chip_size_m), 10.0)
    got = chip_as_expected(planned_ds / row.path)
    assert (got >= 0).all()  # no hole left
    np.testing.assert_array_equal(got, independent_chip(files_root, COLL, row.item_id.split(","), ("red", "scl"), grid))


def test_harmonize_removes_the_baseline_offset(planned_ds: Path, stac_api: str, files_root: Path,
                                               all_items: list[dict]) -> None:  # fmt: skip
    raw = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red,scl", progress=False)
    harmonized = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red,scl", harmonize=True,
                       progress=False, overwrite=True)  # fmt: skip
    props = {i["id"]: i["properties"] for i in all_items}
    shifted = kept = 0
    for before, after in zip(raw.itertuples(), harmonized.itertuples(), strict=True):
        if before.status != "ok":
            continue
        assert before.item_id == after.item_id
        p = props[before.item_id]
        needs = float(p["s2:processing_baseline"]) >= 4 and p.get("earthsearch:boa_offset_applied") is not True
        with rasterio.open(planned_ds / after.path) as src:
            red, scl = src.read(1), src.read(2)
        raw_red, raw_scl = independent_values(files_root, before.item_id, planned_ds, after)
        np.testing.assert_array_equal(scl, raw_scl)  # classes are never shifted
        if needs:
            np.testing.assert_array_equal(red, np.where(raw_red == 0, 0, np.maximum(raw_red, 1001) - 1000))
            shifted += 1
        else:
            np.testing.assert_array_equal(red, raw_red)
            kept += 1
    assert shifted and kept


def independent_values(files_root: Path, item_id: str, ds: Path, row: Any) -> tuple[np.ndarray, np.ndarray]:
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    s = plan.loc[row.sample_id]
    grid = chip_grid(s.lon, s.lat, int(s.epsg), float(s.chip_size_m), 10.0)
    chip = np.maximum(independent_chip(files_root, COLL, [item_id], ("red", "scl"), grid), 0)  # nodata: 0
    return chip[0].astype(np.uint16), chip[1].astype(np.uint16)


def test_default_assets_and_resolution(planned_ds: Path, stac_api: str) -> None:
    table = fetch(planned_ds, stac=stac_api, collection=COLL, limit=3, resolution=20, progress=False)
    ok = table[table["status"] == "ok"]
    assert len(ok) == 1
    row = ok.iloc[0]
    assert list(row.bands) == list(ASSETS)  # every raster data asset, in item order
    assert row.width == row.height == 128 and row.resolution == 20.0


def test_static_catalog_and_geoparquet_match_the_api(
    planned_ds: Path, tmp_path: Path, stac_api: str, s2: dict, files_root: Path, pc: dict, landsat: dict, gen: Any
) -> None:
    import rustac

    local = gen.finalize([*s2["items"], *pc["items"], *landsat["items"]], str(files_root))
    catalog = gen.write_static_catalog(tmp_path / "catalog", local)
    parquet = tmp_path / "items.parquet"
    rustac.write_sync(str(parquet), local)
    results = []
    for source in (stac_api, str(catalog), str(parquet)):
        ds = copy_ds(planned_ds, tmp_path / f"DS{len(results)}")
        # The imagery lies outside the local catalogues' folders: reading it needs the user's consent.
        table = fetch(ds, stac=source, collection=COLL, assets="red,scl", limit=8, progress=False,
                      allow_local_assets=source != stac_api)  # fmt: skip
        results.append(table[["sample_id", "status", "item_id", "sha256"]])
    pd.testing.assert_frame_equal(results[0], results[1])
    pd.testing.assert_frame_equal(results[0], results[2])
    assert (results[0]["status"] == "ok").sum() == 7


def test_dask_cluster_gives_the_same_chips(planned_ds: Path, tmp_path: Path, stac_api: str, dask_cluster) -> None:
    """Two worker processes make the same chips, byte for byte, as the thread pool."""
    threads = fetch(copy_ds(planned_ds, tmp_path / "T"), stac=stac_api, collection=COLL, assets="red,green,scl",
                    limit=10, progress=False)  # fmt: skip
    dask, tasks = dask_cluster.tasks_per_worker(
        lambda: fetch(
            copy_ds(planned_ds, tmp_path / "D"),
            stac=stac_api,
            collection=COLL,
            assets="red,green,scl",
            limit=10,
            progress=False,
            dask_scheduler=dask_cluster.address,
        )  # fmt: skip
    )
    pd.testing.assert_frame_equal(threads, dask)
    assert (dask["status"] == "ok").sum() == 9
    assert len(tasks) == 2  # read tasks ran in both worker processes
    for sid, path in dask.loc[dask["status"] == "ok", ["sample_id", "path"]].itertuples(index=False):
        assert (tmp_path / "D" / path).read_bytes() == (tmp_path / "T" / path).read_bytes(), sid


def test_real_landsat_scene(andros_ds: Path, stac_api: str, files_root: Path) -> None:
    table = fetch(andros_ds, stac=stac_api, collection="landsat-7-rgb", progress=False, preview=True)
    assert (table["status"] == "ok").all()
    assert set(table["resolution"]) == {300.0}  # native 300.04 m, rounded
    plan = gpd.read_parquet(andros_ds / "plan.parquet").set_index("sample_id")
    assert sorted(plan["epsg"].unique()) == [32617, 32618]  # one chip is reprojected from zone 18 to 17
    for row in table.itertuples():
        assert list(row.bands) == ["rgb_red", "rgb_green", "rgb_blue"]
        s = plan.loc[row.sample_id]
        grid = chip_grid(s.lon, s.lat, int(s.epsg), 30_000.0, 300.0)
        assert (row.width, row.height) == (100, 100)
        want = independent_chip(files_root, "landsat-7-rgb", [row.item_id], ("rgb",), grid)
        np.testing.assert_array_equal(chip_as_expected(andros_ds / row.path), want)
        assert (want >= 0).mean() > 0.5


def test_config_object_and_mapping_agree(stac_api: str) -> None:
    cfg = FetchConfig.from_mapping({"stac": stac_api, "collections": COLL, "assets": "red, nir", "max-cloud": "20"})
    assert cfg == FetchConfig(stac=stac_api, collection=(COLL,), assets=("red", "nir"), max_cloud=20.0)
    assert FetchConfig.from_mapping(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict()))["assets"] == ["red", "nir"]


def test_half_empty_chips_warn_and_progress_shows_rate(
    planned_ds: Path, stac_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from geosample.errors import DataQualityWarning

    with pytest.warns(DataQualityWarning, match=r"1 chip\(s\) have data in less than half their pixels"):
        table = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red", limit=3, progress=True)
    assert (table["status"] == "ok").sum() == 2
    err = capsys.readouterr().err
    assert "fetch" in err and "chip/s" in err  # tqdm's rate (and ETA) on stderr
